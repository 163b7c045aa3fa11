"""The thin layer that sends what the trainer reports to MLflow (the logging contract in README).

One run costs a handful of calls: ``create_run``, one ``log_batch`` for params and tags, one or
more ``log_batch`` for metrics (1,000 points per call, MLflow's limit), one ``log_artifacts`` for
the whole artifact tree, and ``set_terminated``. Nothing is logged one metric at a time.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from slnn.trainer import HISTORY_COLUMNS, TrainResult

EPOCH_METRICS = ("train_loss", "val_loss", "train_error", "val_error", "grad_cosine", "weight_norm")
TAG_PREFIX = "slnn."


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
        raise TrackingError(_explain(client, e)) from None


def _explain(client, e: Exception) -> str:
    uri = getattr(client, "tracking_uri", None) or getattr(client, "_tracking_client", None)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"MLflow at {uri} failed: {first[:300]}; check the server is up or set "
            "MLFLOW_TRACKING_URI / tracking.uri to a reachable store, e.g. sqlite:///mlflow.db")


def _thin(n: int, max_points: int) -> np.ndarray:
    max_points = max(max_points, 2)  # the first and the last epoch, at least
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def metric_entities(result: TrainResult, max_points: int, timestamp_ms: int) -> list:
    """Per-epoch metrics (``step`` = epoch), thinned to ``max_points``, plus the final figures."""
    from mlflow.entities import Metric

    h = result.history
    out = []
    for i in _thin(len(h["epoch"]), max_points):
        step = int(h["epoch"][i])
        for name in EPOCH_METRICS:
            v = float(h[name][i])
            if not np.isnan(v):  # nan (no validation set, no update yet) is simply absent
                out.append(Metric(name, v, timestamp_ms, step))
    fin = result.final
    finals = {"test_loss": fin["test_loss"], "test_error": fin["test_error"],
              "epochs_run": result.epochs_run, "steps_run": result.steps_run,
              "train_seconds": result.train_seconds}
    last = int(h["epoch"][-1]) if len(h["epoch"]) else 0
    out += [Metric(k, float(v), timestamp_ms, last) for k, v in finals.items() if not np.isnan(v)]
    return out


def history_csv(result: TrainResult) -> str:
    buf = io.StringIO()
    h = result.history
    buf.write(",".join(HISTORY_COLUMNS) + "\n")
    for i in range(len(h["epoch"])):
        buf.write(",".join(repr(float(h[c][i])) if c not in ("epoch", "step") else str(int(h[c][i]))
                           for c in HISTORY_COLUMNS) + "\n")
    return buf.getvalue()


def plot_curves(result: TrainResult, title: str, path: Path) -> None:
    """The guide's plot: loss and classification error on train, validation and test vs epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result.history
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, kind, label in ((axes[0], "loss", "regression error (mean (t - z)^2)"),
                            (axes[1], "error", "classification error")):
        for split, colour in (("train", "C0"), ("val", "C1"), ("test", "C2")):
            y = h[f"{split}_{kind}"]
            if np.isfinite(y).any():
                ax.plot(h["epoch"], y, color=colour, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", frameon=False)
    fig.suptitle(f"{title}: {result.outcome}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


class RunRecorder:
    """One MLflow run: opened RUNNING before training, closed with the result or the failure.

    Every SQLite transaction costs about as much as an empty run, so the run is opened with its
    tags in ``create_run``'s own transaction, and params, metrics and the outcome go together in
    one ``log_batch`` at the end (params also on failure): three store calls in all.
    """

    def __init__(self, client, experiment_id: str, run_name: str, params: dict[str, str],
                 tags: dict[str, str], parent_run_id: str | None = None):
        from mlflow.exceptions import MlflowException

        self.client = client
        self.params = params
        all_tags = {"mlflow.runName": run_name, **tags}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        try:
            run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        except MlflowException as e:
            raise TrackingError(_explain(client, e)) from None
        self.run_id = run.info.run_id

    def _log(self, metrics: list, tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, v[:6000]) for k, v in self.params.items()]
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        # MLflow's limits per batch: 1,000 metrics, 100 params, 100 tags
        p_chunks = [params[i:i + 100] for i in range(0, len(params), 100)] or [[]]
        m_chunks = [metrics[i:i + 1000] for i in range(0, len(metrics), 1000)] or [[]]
        for i in range(max(len(p_chunks), len(m_chunks))):
            self.client.log_batch(self.run_id,
                                  metrics=m_chunks[i] if i < len(m_chunks) else [],
                                  params=p_chunks[i] if i < len(p_chunks) else [],
                                  tags=tag_list if i == 0 else [])

    def finish(self, result: TrainResult, config_yaml: str, *, plot: bool, title: str,
               max_metric_points: int = 12, model: tuple | None = None) -> None:
        """Log params, metrics, artifacts and the outcome, then mark the run FINISHED.

        ``model=(activation, dataset)`` also logs the network as an MLflow pyfunc model under
        ``model/`` (not for a run without finite trained weights).
        """
        now = int(time.time() * 1000)
        with tempfile.TemporaryDirectory(prefix="slnn-run-") as tmp:
            root = Path(tmp)
            (root / "weights").mkdir()
            np.save(root / "weights" / "initial.npy", result.W_initial.astype(np.float64))
            if result.outcome != "shape_mismatch":  # it never trained: there is no final W
                np.save(root / "weights" / "final.npy", result.W_final.astype(np.float64))
            for epoch, W in sorted(result.snapshots.items()):
                np.save(root / "weights" / f"epoch_{epoch:05d}.npy", W.astype(np.float64))
            (root / "config.yaml").write_text(config_yaml)
            if len(result.history["epoch"]):
                (root / "history.csv").write_text(history_csv(result))
                if plot:
                    plot_curves(result, title, root / "learning_curves.png")
            if (model is not None and result.outcome not in ("shape_mismatch", "diverged")
                    and np.isfinite(result.W_final).all()):
                from slnn.modelio import write_model

                write_model(root / "model", result.W_final, model[0], model[1])
            # artifacts first: a run marked with an outcome always has its files
            self.client.log_artifacts(self.run_id, str(root))
        self._log(metric_entities(result, max_metric_points, now),
                  {TAG_PREFIX + "outcome": result.outcome, TAG_PREFIX + "reason": result.reason[:5000]})
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, exc: BaseException, status: str = "FAILED") -> None:
        """Record an unexpected failure (or an interruption: ``status="KILLED"``) and close the run."""
        outcome = "killed" if status == "KILLED" else "failed"
        reason = (f"{type(exc).__name__}: {exc}".strip().splitlines() or [type(exc).__name__])[0]
        try:
            self._log([], {TAG_PREFIX + "outcome": outcome, TAG_PREFIX + "reason": reason[:5000]})
        finally:
            self.client.set_terminated(self.run_id, status)
