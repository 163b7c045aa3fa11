"""``python -m slnn ...`` is ``slnn-train ...``."""

from slnn.app.cli import cli

cli()
