"""The garbage collector paused while a command imports its libraries (``pause``), and the
objects they made frozen after (``resume``: the collector no longer walks them). Measured, with
the figures, in docs/development.md ("Speed tricks"); only a pause made here is resumed here."""

from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Turn the collector off until ``resume()``, if it is on."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Freeze every object there is and turn the collector back on (only after ``pause()``)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
