"""The garbage collector paused while a process imports its libraries.

Importing what a run or a sweep worker needs (MLflow and its SQL store, SQLAlchemy, Alembic,
pandas, Hydra, Numba) makes about 300,000 objects that live as long as the process, and the
collector walks them again and again as they are made: 621 young, 56 middle and 5 full
collections in one such import, which took 4.9-5.3 s with the collector on and 3.5-4.1 s with it
off, on this project's 2-core VM. ``pause()`` turns it off before the imports; ``resume()`` turns
it on after them, first freezing what exists (``gc.freeze``: the collector no longer looks at
those objects, so the later collections in every cell are cheaper too). The little garbage the
imports leave in reference cycles is frozen with them: about 2 MB, measured as the peak RSS.

``slnn-train`` pauses it as its console script starts (``slnn.app.entry``) and resumes it once
MLflow is imported (``slnn.app.run.quiet_libraries``); a joblib worker does the same around its
warm-up imports (``slnn.sweep.warm``). Only a pause made here is resumed here: a program that
turned the collector off itself keeps it off.
"""

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
    """After the imports: freeze every object there is, and turn the collector back on (only
    if ``pause()`` turned it off)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
