"""The tracking store: which one (URI), a client for it, its experiment, and one-line errors.

    from slnn.tracking.store import resolve_uri, client_for, ensure_experiment
    client = client_for(resolve_uri("sqlite:///mlflow.db"))
"""

from __future__ import annotations

import os
from pathlib import Path


class TrackingError(RuntimeError):
    """MLflow could not be reached or used; the message says what was tried and what to do."""


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
    return (Path(uri[len(prefix):]).parent / "mlruns" / safe).as_uri()


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when an HTTP tracking server does not answer (MLflow's own
    client retries for minutes first)."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        pass  # something answers (a proxy without /health, an auth wall): let MLflow speak
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(
            f"no MLflow server answers at {uri} ({reason}); start one (mlflow server --host "
            "127.0.0.1 --port 5000 ...) or point MLFLOW_TRACKING_URI at a running one") from None


def _use_wal(uri: str) -> None:
    """Put a local SQLite store in write-ahead-log mode (once; the mode is kept in the file).

    In its default rollback journal every commit syncs the whole journal: ~14 ms here against
    ~1 ms with WAL, and sweep workers writing at once wait far less for each other."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix + ":memory:":
        return
    import sqlite3

    path = uri[len(prefix):]
    if not os.path.exists(path):
        return  # MLflow creates it on first use; the next client_for call switches it
    con = sqlite3.connect(path, timeout=30)
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def client_for(uri: str):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        _use_wal(uri)
        return client
    except MlflowException as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise TrackingError(f"tracking URI {uri!r} is not a store MLflow can use ({first}); use "
                            "e.g. sqlite:///mlflow.db, a folder, or http://host:port") from None


def ensure_experiment(client, name: str) -> str:
    """The id of experiment ``name``, created if missing (tolerating a concurrent creator)."""
    from mlflow.exceptions import MlflowException

    check_reachable(client.tracking_uri)
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return client.create_experiment(
                name, artifact_location=_sqlite_artifact_root(client.tracking_uri, name))
        except MlflowException:
            exp = client.get_experiment_by_name(name)  # another worker created it first
            if exp is None:
                raise
            return exp.experiment_id
    except MlflowException as e:
        raise TrackingError(explain(client, e)) from None


def explain(client, e: Exception) -> str:
    uri = getattr(client, "tracking_uri", None)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"MLflow at {uri} failed: {first[:300]}; check the server is up or set "
            "MLFLOW_TRACKING_URI / tracking.uri to a reachable store, e.g. sqlite:///mlflow.db")
