"""``python -m slnn ...`` is ``slnn-train ...``."""

from slnn.app.entry import slnn_train

slnn_train()
