"""The ``slnn-train`` console script (and ``python -m slnn``): the collector is paused before
``slnn.app.cli`` and its libraries are imported (``slnn.app.gcpause``), then the command runs."""

from __future__ import annotations


def slnn_train() -> None:
    from slnn.app import gcpause

    gcpause.pause()
    from slnn.app.cli import cli

    cli()
