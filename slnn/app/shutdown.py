"""A quick exit: the interpreter's last garbage collections skipped (``gc.freeze`` at exit),
after MLflow's SQLite connections are closed (the last one folds a store's write-ahead log into
its file). Measured, with the figures, in docs/development.md ("Speed tricks")."""

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
    if "mlflow" in sys.modules:
        from slnn._compat import dispose_mlflow_sql_engines

        dispose_mlflow_sql_engines()
    flush_std_streams()
    gc.freeze()


_installed = False


def install() -> None:
    """Register the hook once, at a command's start: ``atexit`` runs it after the hooks
    registered later (MLflow's, Hydra's, loky's)."""
    global _installed
    if not _installed:
        atexit.register(_before_teardown)
        _installed = True
