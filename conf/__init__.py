"""slnn's Hydra config, ``slnn.conf`` once installed: config.yaml and its groups."""
