"""The numerical core: activations, update rules, data sets and the trainer, with plain values
in and plain results out. Nothing here imports Hydra or MLflow; it works from a notebook."""
