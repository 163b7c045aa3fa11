"""The tracking store: which one (URI), a client for it, its experiment, and one-line errors.

    from slnn.tracking.store import resolve_uri, client_for, ensure_experiment
    client = client_for(resolve_uri("sqlite:///mlflow.db"))
"""

from __future__ import annotations

import os
from pathlib import Path

from slnn.tracking.faults import TrackingError, describe, mask, quiet_store_errors
from slnn.tracking.locks import inspect_sqlite, sqlite_path, store_lock

__all__ = ["TrackingError", "check_reachable", "client_for", "ensure_experiment", "explain",
           "resolve_uri"]

# MLflow's own HTTP retries (8 attempts, backoff up to 120 s: ~4 minutes per call by default),
# bounded through its documented settings so that a server that errors fails a call in ~8 s.
# A sweep rides out longer outages itself (slnn.sweep.attempt). A user's own values win.
HTTP_WAITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",   # sleeps 0, 2, 4 s (+ jitter)
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}      # seconds per attempt
_ready: set[str] = set()  # stores this process has opened (and so checked, created, migrated)


def resolve_uri(config_uri: str) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the config's; a relative SQLite path becomes absolute
    so that every worker of a sweep, whatever its working directory, writes to the same file."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str(Path(uri[len(prefix):]).expanduser().resolve())
    elif uri.startswith("file:") and not uri.startswith("file://"):
        uri = Path(uri[len("file:"):]).expanduser().resolve().as_uri()  # file:./mlruns
    elif ":" not in uri.split("/")[0]:
        uri = Path(uri).expanduser().resolve().as_uri()  # a plain folder: MLflow's file store
    return uri


def _sqlite_artifact_root(uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite store's experiment live next to the database file (``mlruns/``),
    not in whatever folder the experiment happened to be created from."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in experiment)
    if safe.startswith("."):  # "..", ".": never a folder outside mlruns/ (nor a hidden one)
        safe = "_" + safe
    return (Path(uri[len(prefix):]).parent / "mlruns" / safe).as_uri()


def bound_http_waits() -> None:
    for var, value in HTTP_WAITS.items():
        os.environ.setdefault(var, value)
    # MLflow prints "View run <url>" lines, password included; slnn prints where to look, masked
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def _split_credentials(uri: str) -> tuple[str, dict[str, str]]:
    """The URI without ``user:password@``, and the Authorization header they (or MLflow's
    MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN) make."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(uri)
    user, password = parts.username, parts.password
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    user = unquote(user) if user else os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = unquote(password) if password else os.environ.get("MLFLOW_TRACKING_PASSWORD")
    headers = {}
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"
    return bare, headers


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, with one line, unless an HTTP tracking server answers an API call healthily:
    a server that does not answer, refuses the credentials or answers errors (its database may
    be down while ``/health`` still says OK) fails here in seconds, not after MLflow's retries."""
    if not uri.startswith(("http://", "https://")):
        return
    import json
    import urllib.error
    import urllib.request

    bare, headers = _split_credentials(uri)
    url = bare.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    try:
        urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout).close()
        return
    except urllib.error.HTTPError as e:
        body = e.read(2000).decode("utf-8", "replace")
        try:
            code = json.loads(body).get("error_code", "")
        except ValueError:
            code = ""
        if e.code == 404 and code == "RESOURCE_DOES_NOT_EXIST":
            return  # a healthy answer: no experiment of that name
        if e.code in (401, 403):
            raise TrackingError(mask(
                f"the MLflow server at {uri} refused the credentials (HTTP {e.code}): check the "
                "user and password in the URI, or MLFLOW_TRACKING_USERNAME / "
                "MLFLOW_TRACKING_PASSWORD")) from None
        what = (body.strip().splitlines() or [e.reason or ""])[0][:200]
        raise TrackingError(mask(
            f"the MLflow server at {uri} is not healthy: it answered HTTP {e.code} ({what}) to an "
            "API call; look at the server's log (its database may be down) or point "
            "MLFLOW_TRACKING_URI at a healthy one")) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(mask(
            f"no MLflow server answers at {uri} ({reason}); start one (mlflow server --host "
            "127.0.0.1 --port 5000 ...) or point MLFLOW_TRACKING_URI at a running one")) from None


def _sqlite_path(uri: str) -> str | None:
    """The file of a local SQLite store's URI; None for anything else (a server, :memory:)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix + ":memory:":
        return None
    return uri[len(prefix):]


def _use_wal(uri: str, created: bool = False) -> None:
    """Put a local SQLite store in write-ahead-log mode (once; the mode is kept in the file).

    In its default rollback journal every commit syncs the whole journal: ~14 ms here against
    ~1 ms with WAL, and sweep workers writing at once wait far less for each other. A store
    this process has just ``created`` (and migrated, in WAL mode already: see
    ``commit_without_waiting_for_the_disk``) has its log checkpointed into the file, so that the
    file alone holds the whole new store, as it did when stores were migrated without WAL."""
    path = _sqlite_path(uri)
    if path is None:
        return
    import sqlite3

    if not os.path.exists(path):
        return  # MLflow creates it on first use; the next client_for call switches it
    con = sqlite3.connect(path, timeout=30)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
        if created:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


SCRATCH_PREFIX = ".creating-"  # <folder>/.creating-<pid>-<name>: a store being made


def remove_dead_scratch_files(path: str) -> None:
    """Remove what killed creators left (``create_sqlite_store``). The caller holds
    ``store_lock``, so no scratch file of this store belongs to a live process."""
    import re

    folder, name = os.path.split(os.path.abspath(path))
    dead = re.compile(rf"{re.escape(SCRATCH_PREFIX)}\d+-{re.escape(name)}(-journal)?")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for stale in names:
        if dead.fullmatch(stale):
            try:
                os.remove(os.path.join(folder, stale))
            except OSError:
                pass


def create_sqlite_store(path: str) -> None:
    """Create and migrate a new SQLite store at ``path`` so that no interruption can leave a
    half-made one there: MLflow migrates a scratch file in the same folder (unsynced: 3 s instead
    of 9), which is synced and then put in place in one step (a hard link, which never replaces
    a store another program made meanwhile; ``os.replace`` where links are not supported).
    Killed at any moment (Ctrl-C, SIGTERM, SIGKILL, a full disk), this leaves either no store
    and a scratch file the next command removes, or a complete store. The caller holds
    ``store_lock``."""
    import errno
    import sqlite3

    from mlflow.tracking import MlflowClient

    from slnn._compat import forget_sql_store_engine

    folder, name = os.path.split(os.path.abspath(path))
    scratch = os.path.join(folder, f"{SCRATCH_PREFIX}{os.getpid()}-{name}")
    scratch_uri = "sqlite:///" + scratch
    _scratch_stores.add(os.path.realpath(scratch))
    _listen_for_sqlite_connections()
    try:
        MlflowClient(tracking_uri=scratch_uri)  # creates and migrates the scratch store
        engine = forget_sql_store_engine(scratch_uri)
        if engine is not None:
            engine.dispose()  # no connection may outlive the file's name
        con = sqlite3.connect(scratch)
        try:
            con.execute("PRAGMA journal_mode=DELETE")
        finally:
            con.close()
        fd = os.open(scratch, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(scratch, path)
        except FileExistsError:
            return  # made meanwhile by a program that does not take store_lock (mlflow ui): used
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                               errno.EMLINK, errno.ENOSYS):
                raise
            os.replace(scratch, path)  # a file system without hard links
        try:
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
    finally:
        _scratch_stores.discard(os.path.realpath(scratch))
        for leftover in (scratch, scratch + "-journal"):
            try:
                os.remove(leftover)
            except OSError:
                pass


_scratch_stores: set[str] = set()  # real paths of stores being made (create_sqlite_store)
_wal_stores: set[str] = set()  # real paths of the SQLite stores this process writes to
_listening = False


def commit_without_waiting_for_the_disk(uri: str) -> None:
    """Every SQLite connection this process opens from now on to the store at ``uri`` (MLflow's
    included: a listener on SQLAlchemy's ``Engine`` class sees each new DBAPI connection) puts
    it in WAL mode if it is not yet (a new store: MLflow's first connection creates the file)
    and commits with ``PRAGMA synchronous=NORMAL``: a commit then writes the log without waiting
    for the disk to confirm it (2.2 ms against 0.09 ms per commit on this project's VM; a run's
    record makes about ten). In WAL mode the store stays consistent whatever happens; what a
    power cut or an operating-system crash (not a killed process) can undo is the last commits
    before it, and a resumed sweep reruns the cells whose runs they held. Other databases keep
    SQLite's defaults."""
    path = _sqlite_path(uri)
    if path is None:
        return
    _wal_stores.add(os.path.realpath(path))
    _listen_for_sqlite_connections()


def _listen_for_sqlite_connections() -> None:
    """One listener on SQLAlchemy's ``Engine`` class for every new SQLite connection: the stores
    this process writes to get WAL and ``synchronous=NORMAL``; a scratch store being made gets
    no syncing at all (it is synced once, before it is moved into place)."""
    global _listening
    if _listening:
        return
    import sqlite3

    from slnn._compat import on_every_sqlalchemy_engine

    def on_connect(dbapi_connection, connection_record):
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        cursor = dbapi_connection.cursor()
        try:
            main = [row[2] for row in cursor.execute("PRAGMA database_list") if row[1] == "main"]
            if not main or not main[0]:
                return
            if os.path.realpath(main[0]) in _scratch_stores:
                cursor.execute("PRAGMA journal_mode=MEMORY")
                cursor.execute("PRAGMA synchronous=OFF")
                return
            if os.path.realpath(main[0]) not in _wal_stores:
                return
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:  # busy, read-only: SQLite's defaults, as without this listener
            pass
        finally:
            cursor.close()

    on_every_sqlalchemy_engine("connect", on_connect)
    _listening = True


def client_for(uri: str, *, write: bool = True):
    """An ``MlflowClient`` for ``uri``, after the store has been checked (a server must answer
    healthily; a SQLite file must be a sound, fully migrated database, writable if ``write``)
    and, for a new SQLite store, created and migrated under a lock every slnn process honours.
    Raises ``TrackingError`` with one line naming the cause."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    bound_http_waits()
    quiet_store_errors()
    if write:
        commit_without_waiting_for_the_disk(uri)
    if uri in _ready:
        return MlflowClient(tracking_uri=uri)
    try:
        check_reachable(uri)
        path = sqlite_path(uri)
        if path is not None:
            path = str(path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with store_lock(uri):
            created = False
            if path is not None:
                remove_dead_scratch_files(path)
                created = not inspect_sqlite(uri, write) and not os.path.exists(path)
                if created:
                    create_sqlite_store(path)
            client = MlflowClient(tracking_uri=uri)
            if write:
                _use_wal(uri, created)
    except TrackingError:
        raise
    except MlflowException as e:
        if "not a database" in str(e) or "out-of-date" in str(e) or "readonly" in str(e):
            raise TrackingError(describe(uri, e, "opening it")) from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise TrackingError(mask(f"tracking URI {uri!r} is not a store MLflow can use ({first}); "
                                 "use e.g. sqlite:///mlflow.db, a folder, or http://host:port")) from None
    except Exception as e:  # noqa: BLE001 - a driver, a file, a database: named by describe
        raise TrackingError(describe(uri, e, "opening it")) from None
    _ready.add(uri)
    return client


# MLflow's experiment kind: the UI opens an experiment of this kind in its "Model training" mode
# (runs, charts, models) instead of the GenAI one (traces, the assistant)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def ensure_experiment(client, name: str) -> str:
    """The id of experiment ``name``, created if missing (tolerating a concurrent creator) and
    marked as a model-training experiment (``EXPERIMENT_KIND``)."""
    from mlflow.exceptions import MlflowException

    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":  # someone deleted it: not undone behind their back
                raise TrackingError(mask(
                    f"experiment {name!r} (id {exp.experiment_id}) in {client.tracking_uri} was "
                    "deleted: restore it (mlflow experiments restore --experiment-id "
                    f"{exp.experiment_id}) or record into another one (tracking.experiment=...)"))
            if EXPERIMENT_KIND[0] not in exp.tags:  # made before slnn marked its experiments
                try:
                    client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
                except Exception:  # noqa: BLE001 - only how the UI opens it: not worth failing
                    pass
            return exp.experiment_id
        try:
            return client.create_experiment(
                name, artifact_location=_sqlite_artifact_root(client.tracking_uri, name),
                tags=dict([EXPERIMENT_KIND]))
        except MlflowException:
            exp = client.get_experiment_by_name(name)  # another worker created it first
            if exp is None:
                raise
            return exp.experiment_id
    except TrackingError:
        raise
    except Exception as e:  # noqa: BLE001 - MLflow, SQLAlchemy, a driver: one line
        raise TrackingError(explain(client, e, f"opening experiment {name!r}")) from None


def explain(client, e: Exception, doing: str = "") -> str:
    """One line for a store call that failed: the real cause (``faults.describe``), masked."""
    return describe(getattr(client, "tracking_uri", "") or "", e, doing)
