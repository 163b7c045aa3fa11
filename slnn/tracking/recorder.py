"""The thin layer that sends what the trainer reports to MLflow (the logging contract in README).

One run costs a handful of calls: ``create_run``, one ``log_batch`` for params and tags, one or
more ``log_batch`` for metrics (1,000 points per call, MLflow's limit), one ``log_artifacts`` for
the whole artifact tree, and ``set_terminated``. Nothing is logged one metric at a time.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np

from slnn.core.outcomes import TRAINED, Outcome
from slnn.core.trainer import HISTORY_COLUMNS, TrainResult
from slnn.tracking import liveness
from slnn.tracking.store import TrackingError, explain

EPOCH_METRICS = ("train_loss", "val_loss", "train_error", "val_error", "grad_cosine", "weight_norm")
TAG_PREFIX = "slnn."


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
            raise TrackingError(explain(client, e, "opening a run")) from None
        self.run_id = run.info.run_id
        liveness.beat(client, self.run_id)  # so no reaper takes the open run for an orphan

    def _log(self, metrics: list, tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, v[:6000]) for k, v in self.params.items()]
        tag_list = [RunTag(k, str(v)) for k, v in tags.items()]
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
        liveness.stop(self.run_id)
        now = int(time.time() * 1000)
        with tempfile.TemporaryDirectory(prefix="slnn-run-") as tmp:
            root = Path(tmp)
            (root / "weights").mkdir()
            np.save(root / "weights" / "initial.npy", result.W_initial.astype(np.float64))
            if result.outcome != Outcome.SHAPE_MISMATCH:  # it never trained: there is no final W
                np.save(root / "weights" / "final.npy", result.W_final.astype(np.float64))
            for epoch, W in sorted(result.snapshots.items()):
                np.save(root / "weights" / f"epoch_{epoch:05d}.npy", W.astype(np.float64))
            (root / "config.yaml").write_text(config_yaml)
            if len(result.history["epoch"]):
                (root / "history.csv").write_text(history_csv(result))
                if plot:
                    from slnn.tracking.plots import plot_curves  # matplotlib only when plotting

                    plot_curves(result, title, root / "learning_curves.png")
            if (model is not None and result.outcome in TRAINED
                    and np.isfinite(result.W_final).all()):
                from slnn.tracking.model import write_model

                write_model(root / "model", result.W_final, model[0], model[1])
            # artifacts first: a run marked with an outcome always has its files
            self.client.log_artifacts(self.run_id, str(root))
        self._log(metric_entities(result, max_metric_points, now),
                  {TAG_PREFIX + "outcome": result.outcome, TAG_PREFIX + "reason": result.reason[:5000]})
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, exc: BaseException, status: str = "FAILED") -> None:
        """Record an unexpected failure (or an interruption: ``status="KILLED"``) and close the run."""
        liveness.stop(self.run_id)
        outcome = Outcome.KILLED if status == "KILLED" else Outcome.FAILED
        reason = (f"{type(exc).__name__}: {exc}".strip().splitlines() or [type(exc).__name__])[0]
        try:
            self._log([], {TAG_PREFIX + "outcome": outcome, TAG_PREFIX + "reason": reason[:5000]})
        finally:
            self.client.set_terminated(self.run_id, status)
