"""A SQLite store opened safely across processes: one ``filelock`` lock on ``<store>.lock``
around creating or upgrading it (``store_lock``), and a look at the file first
(``inspect_sqlite``), so a corrupt, half-migrated or read-only store is one line. What happens to
each kind of store: docs/faults.md ("Store creation")."""

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
    """Look at a SQLite store before MLflow opens it; True if it exists (False: none, or an
    empty half-made one moved aside, so a new one is to be created). Raises ``TrackingError``
    (one line) for a file that is not a database, a store with runs left half-migrated (with
    the commands that repair it), or (``write``) one that cannot be written."""
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
        odd = bool(leftovers) or not {"experiments", "runs"} <= tables
        empty = _holds_nothing(con, tables)
        if (odd or empty) and not _mlflow_accepts(con, tables):
            if empty:
                con.close()
                _move_aside(path)
                return False
            if odd:
                raise TrackingError(_half_migrated(path, tables, leftovers))
            # else an older MLflow's store, with runs: MLflow names ``mlflow db upgrade``
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


def _schema(con) -> str | None:
    try:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def _head() -> str:
    from slnn._compat import mlflow_latest_schema_revision

    return mlflow_latest_schema_revision()


def _mlflow_accepts(con, tables: set[str]) -> bool:
    """What MLflow checks when it opens a store: every table of its schema is there and the
    schema's version is the newest it knows. A store it accepts is used as it is, leftover
    ``_alembic_tmp_*`` tables or not (a plain MLflow client that raced a creation leaves some)."""
    from slnn._compat import mlflow_sql_tables

    return mlflow_sql_tables() <= tables and _schema(con) == _head()


# Rows a new store holds before anyone used it: its schema version, the Default experiment and
# the default workspace
_FRESH = {"alembic_version", "experiments", "workspaces", "sqlite_sequence"}


def _holds_nothing(con, tables: set[str]) -> bool:
    """True if the store holds nothing but what creating it writes (a half-made store left by an
    interrupted first command): it can be made again without losing anything."""
    for table in tables:
        if table.startswith("_alembic_tmp_") or table in _FRESH:
            continue
        if con.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone():
            return False
    if "experiments" in tables:
        names = [r[0] for r in con.execute("SELECT name FROM experiments LIMIT 2")]
        if names not in ([], ["Default"]):
            return False
    return True


def _move_aside(path: Path) -> None:
    """Move an empty half-made store out of the way (kept, not deleted), with one line."""
    import time

    aside = path.with_name(f"{path.name}.half-migrated-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("-wal", "-shm"):
        extra = Path(str(path) + suffix)
        if extra.exists():
            extra.replace(Path(str(aside) + suffix))
    path.replace(aside)
    say(f"slnn: {path} was left half-made by an interrupted first command and held no runs: "
        f"moved it to {aside.name} and creating the store again", sys.stderr)


def _half_migrated(path: Path, tables: set[str], leftovers: list[str]) -> str:
    """One line for a store with runs that an interrupted schema upgrade left unusable: the exact
    commands that repair it when they can (each leftover copy beside its intact original: drop
    the copies, then upgrade again), else how to start over."""
    uri = f"sqlite:///{path}"
    copies_only = leftovers and all(t[len("_alembic_tmp_"):] in tables for t in leftovers)
    what = (f"leftover tables {', '.join(leftovers)}" if leftovers else
            f"schema version {_schema_of(path)} without all of MLflow's tables")
    if copies_only:
        drops = " ".join(f"DROP TABLE {t};" for t in leftovers)
        return (f"the tracking store {path} was left half-migrated by an interrupted MLflow schema "
                f"upgrade ({what}); repair it with: cp '{path}' '{path}.bak' && sqlite3 '{path}' "
                f"'{drops}' && mlflow db upgrade '{uri}'")
    return (f"the tracking store {path} was left half-migrated by an interrupted MLflow schema "
            f"upgrade ({what}); MLflow cannot use it: restore it from a backup, or move it aside "
            "(its runs' artifacts in mlruns/ stay readable) and start a new store")


def _schema_of(path: Path) -> str | None:
    con = sqlite3.connect(path)
    try:
        return _schema(con)
    finally:
        con.close()
