"""A quick exit for slnn's commands: the interpreter's own teardown, skipped where it only costs.

When a Python process that has imported MLflow, SQLAlchemy, pandas, Hydra and Numba ends, the
interpreter's last garbage collections walk every object those imports made: 1.5 s measured
for a process that only imports what a sweep worker imports, and 0.08 s for ``import mlflow``
once the objects are frozen (``gc.freeze``: moved where the collector no longer looks). Every
single run and every sweep paid it after its last line.

``install()`` registers, at the start of a command, an ``atexit`` hook that runs after the
hooks registered later (MLflow's, Hydra's, loky's: ``atexit`` runs them last in, first out, and
joblib's worker shutdown runs before any of them). It closes the SQLite stores' pooled
connections first, as the teardown did (the last one to close folds the write-ahead log into
the database file), then freezes the objects. What the interpreter still does after it:
flush and close every file and stream that is not in a reference cycle, run ``__del__`` of
objects that are not, free the modules. What it no longer does: collect objects left in
cycles at exit, which Python has never promised to finalize (the language reference, on
``__del__``).
"""

from __future__ import annotations

import atexit
import gc
import sys


def flush_std_streams() -> None:
    """Flush stdout and stderr; a closed pipe (``slnn-train ... | head``) is not an error."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _before_teardown() -> None:
    store = sys.modules.get("slnn.tracking.store")  # not imported: nothing was opened
    if store is not None:
        store.close_sqlite_stores()
    flush_std_streams()
    gc.freeze()


_installed = False


def install() -> None:
    """Register the hook (once per process, however often a command's ``main`` is called)."""
    global _installed
    if not _installed:
        atexit.register(_before_teardown)
        _installed = True
