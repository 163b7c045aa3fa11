"""The named studies (``+experiment=<name>``): the config group ``slnn.conf.experiment``."""
