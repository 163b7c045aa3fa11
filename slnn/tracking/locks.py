"""Safe opening of a SQLite store across processes: one lock around creating or upgrading it, and
a look at the file first, so a broken store is explained in one line instead of a traceback.

    with store_lock(uri):              # a no-op for servers and databases other than SQLite
        inspect_sqlite(uri, write=True)  # raises TrackingError: corrupt, half-migrated, read-only
        client = MlflowClient(uri)       # MLflow creates and migrates a new store here

MLflow creates a fresh SQLite store by running its whole chain of schema migrations (~10 s), with
no lock: two processes doing it at once leave one failed and, sometimes, the store
half-migrated (a stale ``alembic_version`` beside leftover ``_alembic_tmp_*`` tables) for good.
Every slnn process (a run, a sweep and each of its workers, a report) opens a SQLite store inside
``store_lock``, a ``filelock.FileLock`` on ``<store>.lock`` beside the database, so one creates and
migrates while the others wait and then find it ready.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path

from slnn.tracking.faults import TrackingError, describe
from slnn.tracking.console import say

LOCK_TIMEOUT = float(os.environ.get("SLNN_STORE_LOCK_TIMEOUT", "600"))


def sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix + ":memory:":
        return None
    return Path(uri[len(prefix):].split("?", 1)[0])


@contextmanager
def store_lock(uri: str, timeout: float = LOCK_TIMEOUT):
    """Hold ``<database>.lock`` while the store is created, upgraded or first opened. Nothing is
    locked for a server, or when the folder cannot hold a lock file (then the store cannot be
    written either, which opening it says)."""
    path = sqlite_path(uri)
    if path is None or not path.parent.is_dir():
        yield
        return
    from filelock import FileLock, Timeout

    lock = FileLock(str(path) + ".lock")
    try:
        try:
            lock.acquire(timeout=10)
        except Timeout:
            say(f"slnn: waiting for another process to finish creating or upgrading {path} "
                f"(at most {timeout:.0f} s)", sys.stderr)
            lock.acquire(timeout=timeout)
    except Timeout:
        raise TrackingError(f"another process has held {path}.lock for {timeout:.0f} s while "
                         "creating or upgrading the store: wait for it, or if no slnn or MLflow "
                         "process is running, delete the lock file") from None
    except OSError:  # a read-only folder: no lock file can be made, and none is needed to read
        yield
        return
    try:
        yield
    finally:
        lock.release()


def inspect_sqlite(uri: str, write: bool) -> bool:
    """Look at a SQLite store before MLflow opens it; True if it exists. Raises ``TrackingError``
    (one line) for a file that is not a database, a store another program left half-migrated,
    or (``write``) one that cannot be written."""
    path = sqlite_path(uri)
    if path is None or not path.exists() or path.stat().st_size == 0:
        return False
    try:
        con = sqlite3.connect(path, timeout=30)
    except sqlite3.Error as e:
        raise TrackingError(describe(uri, e, "opening it")) from None
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        leftovers = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
        if leftovers or ("alembic_version" in tables and not {"experiments", "runs"} <= tables):
            what = (f"leftover tables {', '.join(leftovers)}" if leftovers else
                    "a schema version without the experiments and runs tables")
            raise TrackingError(
                f"the tracking store {path} was left half-migrated by an interrupted MLflow "
                f"schema upgrade ({what}); MLflow cannot use it: restore it from a backup, or "
                "move it aside (its runs' artifacts in mlruns/ stay readable) and start a new "
                "store")
        if write:
            con.execute("BEGIN IMMEDIATE")  # takes the write lock for a moment: can we write?
            con.execute("ROLLBACK")
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            return True  # someone is writing: the store is fine
        raise TrackingError(describe(uri, e, "opening it")) from None
    except sqlite3.Error as e:
        raise TrackingError(describe(uri, e, "opening it")) from None
    finally:
        con.close()
    return True

