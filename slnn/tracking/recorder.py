"""The thin layer that sends what the trainer reports to MLflow (the logging contract:
docs/tracking.md).

One run costs a handful of calls: ``create_run``, one ``log_batch`` for params and tags, one or
more ``log_batch`` for metrics (1,000 points per call, MLflow's limit: the curves by epoch,
as ``curves/<name>``, then the summaries once under ``final/``, ``min/`` and ``max/``), one ``log_artifacts`` for
the whole artifact tree, and ``set_terminated``. Nothing is logged one metric at a time.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from slnn.core.outcomes import TRAINED, Outcome
from slnn.core.trainer import HISTORY_COLUMNS, TrainResult
from slnn.tracking import liveness
from slnn.tracking.store import TrackingError, explain

# sent to MLflow per epoch (step = epoch) as ``curves/<name>``; every epoch up to
# tracking.max_metric_points (test figures only at the end: what a run is judged on is chosen on
# validation, and each metric point costs a row in the store)
EPOCH_METRICS = ("train_loss", "val_loss", "train_error", "val_error", "grad_cosine", "weight_norm")
# MLflow's chart view draws one section per prefix, the prefixes in alphabetical order and the
# unprefixed metrics last ("Model metrics"); so the curves get the prefix that sorts first, and
# a run page leads with them
CURVES = "curves/"
TAG_PREFIX = "slnn."


def thin(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of the finite ``values`` to send: all of them when there are at most
    ``max_points``; otherwise evenly spaced ones plus the first, the last, the minimum and the
    maximum, so that MLflow's Min, Max and Latest are those of the full history."""
    idx = np.flatnonzero(np.isfinite(values))  # nan (no validation set, no update yet) is absent
    if len(idx) <= max_points:
        return idx
    v = values[idx]
    keep = np.array(sorted({0, len(idx) - 1, int(np.argmin(v)), int(np.argmax(v))}))
    chosen = keep
    for n in range(max_points, -1, -1):  # as many evenly spaced points as fit
        chosen = np.union1d(keep, np.linspace(0, len(idx) - 1, n).round().astype(int))
        if len(chosen) <= max(max_points, len(keep)):
            break
    return idx[chosen]


# summaries, logged once (step 0) under prefixes that sort after ``curves/``: each is a section of
# its own after the curves
FINAL, MIN, MAX = "final/", "min/", "max/"
# the final epoch's figures (of ``final_epoch``, the last with finite figures)
FINAL_FIGURES = ("test_error", "test_loss", "val_error", "val_loss", "train_error", "train_loss")
# the run's totals: ``final/<key>`` <- TrainResult attribute
FINAL_TOTALS = {"epoch": "final_epoch", "epochs_run": "epochs_run", "steps_run": "steps_run",
                "train_seconds": "train_seconds"}
# the summaries a logged model carries as its own metrics: its final figures, and its best
# validation loss and error with their epochs
MODEL_METRICS = (FINAL, MIN + "val_")


def summary_values(result: TrainResult) -> dict[str, float]:
    """The run's one-off figures by metric name: ``final/<figure>`` (of ``final_epoch``) and the
    run's totals, and for each curve its exact ``min/<m>`` (for a loss or an error, the best),
    the first epoch reaching it ``min/<m>_epoch``, and ``max/<m>``; nan where there is nothing
    to say (never trained, no validation split)."""
    h = result.history
    epochs = np.asarray(h["epoch"], dtype=int)
    fin = result.final  # the last epoch whose figures are finite (see TrainResult)
    out = {FINAL + m: fin[m] for m in FINAL_FIGURES}
    for key, attr in FINAL_TOTALS.items():
        out[FINAL + key] = float(getattr(result, attr))
    if result.final_epoch < 0:
        out[FINAL + "epoch"] = np.nan
    for m in EPOCH_METRICS:
        v = np.asarray(h[m], dtype=float)
        finite = np.isfinite(v)
        if finite.any():
            i = int(np.nanargmin(np.where(finite, v, np.nan)))  # the first lowest
            out[MIN + m], out[MIN + m + "_epoch"] = float(v[i]), float(epochs[i])
            out[MAX + m] = float(v[finite].max())
    return out


def constant_tags(result: TrainResult) -> dict[str, str]:
    """What does not change during a run, as tags (not one-point metric charts): the number of
    classes and the chance error, answering the training split's majority class (exact: ``repr``
    of the float)."""
    tags = {}
    if result.n_classes:  # 0: not known (a hand-made result)
        tags[TAG_PREFIX + "n_classes"] = str(int(result.n_classes))
    if np.isfinite(result.chance_error):
        tags[TAG_PREFIX + "chance_error"] = repr(float(result.chance_error))
    return tags


def metric_entities(result: TrainResult, max_points: int, timestamp_ms: int,
                    model_id: str | None = None, dataset=None) -> list:
    """Per-epoch metrics (``step`` = epoch), each thinned to ``max_points`` keeping its extremes,
    plus the summaries (``summary_values``) once at step 0. With ``model_id`` (and ``dataset``,
    the run's data set), the ``MODEL_METRICS`` ones are also the logged model's metrics."""
    from mlflow.entities import Metric

    h = result.history
    epochs = h["epoch"].astype(int)
    out = []
    for name in EPOCH_METRICS:
        values = np.asarray(h[name], dtype=float)
        out += [Metric(CURVES + name, float(values[i]), timestamp_ms, int(epochs[i]))
                for i in thin(values, max_points)]
    link = {}
    if model_id:
        link = {"model_id": model_id}
        if dataset is not None:
            link.update(dataset_name=dataset.name, dataset_digest=dataset.digest)
    out += [Metric(k, float(v), timestamp_ms, 0, **(link if k.startswith(MODEL_METRICS) else {}))
            for k, v in summary_values(result).items() if np.isfinite(v)]
    return out


def final_from(result: TrainResult) -> str:
    """Which epoch a diverged run's final figures (test_error, ...) are from, in words."""
    if result.final_epoch < 0:
        return "no epoch has finite figures"
    if result.final_epoch == result.epochs_run:
        return f"epoch {result.final_epoch}, the last (its weights are finite)"
    return (f"epoch {result.final_epoch}, the last finite one (epoch {result.epochs_run} ended "
            "with non-finite weights)")


def history_csv(result: TrainResult) -> str:
    buf = io.StringIO()
    h = result.history
    buf.write(",".join(HISTORY_COLUMNS) + "\n")
    for i in range(len(h["epoch"])):
        buf.write(",".join(repr(float(h[c][i])) if c not in ("epoch", "step") else str(int(h[c][i]))
                           for c in HISTORY_COLUMNS) + "\n")
    return buf.getvalue()


def dataset_input(data):
    """The run's data set as MLflow's dataset input: name, digest, source and split sizes."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    local = data.source.startswith("/")
    profile = {"num_rows": data.n_train + data.n_val + data.n_test, "train_rows": data.n_train,
               "validation_rows": data.n_val, "test_rows": data.n_test,
               "features": data.n_features, "classes": data.n_classes}
    schema = {"mlflow_colspec": [{"name": f, "type": "double"} for f in data.feature_names]}
    entity = Dataset(name=data.name, digest=data.digest, source_type="local" if local else "code",
                     source=json.dumps({"uri": data.source}), schema=json.dumps(schema),
                     profile=json.dumps(profile))
    return DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])


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
        self.experiment_id = experiment_id
        self.params = params
        self.tags = tags
        all_tags = {"mlflow.runName": run_name, **tags}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        try:
            run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        except MlflowException as e:
            raise TrackingError(explain(client, e, "opening a run")) from None
        self.run_id = run.info.run_id
        self.artifact_uri = run.info.artifact_uri
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
               max_metric_points: int = 1000, data=None, model_activation: str | None = None,
               log: Callable[[], str] | None = None) -> None:
        """Log params, metrics, artifacts, the data set and the outcome; mark the run FINISHED.

        ``data`` (the run's ``Dataset``) is logged as the run's input (the UI's Dataset column).
        ``model_activation`` also logs the network as a LoggedModel named for what it is
        (``model.model_name``; only for a run that trained to finite weights; an activation the
        model's code cannot copy is a ``ConfigError``), the run's output, with the run's params and its summary metrics;
        ``log()``, the run's log so far, is saved as ``run.log`` (read last, so it has what
        writing the rest said).
        """
        liveness.stop(self.run_id)
        now = int(time.time() * 1000)
        with tempfile.TemporaryDirectory(prefix="slnn-run-") as tmp:
            root = Path(tmp)
            (root / "weights").mkdir()
            np.save(root / "weights" / "initial.npy", result.W_initial.astype(np.float64))
            if result.outcome != Outcome.SHAPE_MISMATCH:  # it never trained: there is no final W
                np.save(root / "weights" / "final.npy", result.W_final.astype(np.float64))
            if result.snapshots:  # one file: five .npy files took 4 KB of disk each for 0.1 KB
                np.savez(root / "weights" / "snapshots.npz",
                         **{f"epoch_{e:05d}": W.astype(np.float64)
                            for e, W in sorted(result.snapshots.items())})
            (root / "config.yaml").write_text(config_yaml)
            if len(result.history["epoch"]):
                (root / "history.csv").write_text(history_csv(result))
                if plot:
                    from slnn.tracking.plots import plot_curves  # matplotlib only when plotting

                    plot_curves(result, title, root / "learning_curves.png")
            if log is not None:
                (root / "run.log").write_text(log())
            # artifacts first: a run marked with an outcome always has its files
            self._log_artifacts(str(root))
        tags = {TAG_PREFIX + "outcome": result.outcome, TAG_PREFIX + "reason": result.reason[:5000],
                **constant_tags(result)}
        if result.outcome == Outcome.DIVERGED:  # say where its final figures come from
            tags[TAG_PREFIX + "final_from"] = final_from(result)
        model_id = None
        if (model_activation is not None and data is not None and result.outcome in TRAINED
                and np.isfinite(result.W_final).all()):
            from slnn.tracking.model import log_model, model_name

            # an activation the model's code cannot copy raises ConfigError: never a silently
            # missing model
            model_id = tags[TAG_PREFIX + "model_id"] = log_model(
                self.client, self.experiment_id, self.run_id, result.W_final,
                model_activation, data,
                name=model_name(self.tags.get(TAG_PREFIX + "update", "slnn"),
                                model_activation, data.name),
                params=self.params, step=max(result.final_epoch, 0))
        if data is not None:
            self._log_input(data)
        self._log(metric_entities(result, max_metric_points, now, model_id, data), tags)
        self.client.set_terminated(self.run_id, "FINISHED")

    def _log_artifacts(self, folder: str) -> None:
        """``MlflowClient.log_artifacts``, without its first step: it reads the whole run back
        (``get_run``, a query of its own) only to learn the artifact URI ``create_run`` already
        gave. MLflow's artifact-repository registry makes the same repository from that URI
        (local folder, ``mlflow-artifacts:`` through the server, S3, ...)."""
        try:
            from slnn._compat import artifact_repository

            repo = artifact_repository(self.artifact_uri, tracking_uri=self.client.tracking_uri)
        except Exception:  # noqa: BLE001 - MLflow moved it, or a URI only the client resolves
            self.client.log_artifacts(self.run_id, folder)
            return
        repo.log_artifacts(folder)

    def _log_input(self, data) -> None:
        """``log_inputs``, tolerating a concurrent first insert of the same data set: MLflow's SQL
        store looks the data set up, then inserts it, so two workers logging it at once can
        collide on its unique key; the retry finds the row the other one made."""
        from mlflow.exceptions import MlflowException

        for attempt in range(5):
            try:
                self.client.log_inputs(self.run_id, datasets=[dataset_input(data)])
                return
            except MlflowException as e:
                if "UNIQUE constraint" not in str(e) and "duplicate key" not in str(e) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def fail(self, exc: BaseException, status: str = "FAILED",
             log: Callable[[], str] | None = None) -> None:
        """Record an unexpected failure (or an interruption: ``status="KILLED"``) and close the
        run, with ``log()`` as its ``run.log``."""
        liveness.stop(self.run_id)
        outcome = Outcome.KILLED if status == "KILLED" else Outcome.FAILED
        reason = (f"{type(exc).__name__}: {exc}".strip().splitlines() or [type(exc).__name__])[0]
        if log is not None:
            try:
                self.client.log_text(self.run_id, log(), "run.log")
            except Exception:  # noqa: BLE001 - recording the outcome matters more than the log
                pass
        try:
            self._log([], {TAG_PREFIX + "outcome": outcome, TAG_PREFIX + "reason": reason[:5000]})
        finally:
            self.client.set_terminated(self.run_id, status)
