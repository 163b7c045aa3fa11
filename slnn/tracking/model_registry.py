"""Register the best run of a sweep in MLflow's Model Registry.

    slnn-report --parent-run <id> --register            # from the command line
    slnn-train -m +experiment=guide_vs_correct sweep.register=true   # after a sweep

The best run is the one with the lowest final validation loss among the sweep's runs that
trained to a result (converged, max_epochs, early_stopped), ties broken by validation error. It is
registered as ``slnn-<study>`` (or a name you give) and the new version gets the alias ``best``.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slnn.core.outcomes import TRAINED


class RegistryError(RuntimeError):
    """Nothing can be registered; the message says why and what to do."""


@dataclass(frozen=True)
class ChildRun:
    """What choosing a sweep's best run needs of a child run: a few fields, not the whole run
    (a sweep's grid point is ``slnn.sweep.grid.Cell``)."""

    run_id: str
    config_hash: str
    start_time: int
    finished: bool
    outcome: str | None
    update: str | None
    val_loss: float
    val_error: float
    link_to: str | None

    @classmethod
    def of(cls, run) -> "ChildRun":
        t = run.data.tags
        return cls(run.info.run_id, t.get("slnn.config_hash", run.info.run_id),
                   run.info.start_time, run.info.status == "FINISHED", t.get("slnn.outcome"),
                   t.get("slnn.update"), final_metric(run, "val_loss"),
                   final_metric(run, "val_error"), t.get("slnn.link_to"))


def final_metric(run, name: str) -> float:
    """The run's ``final/<name>``; for a run logged before the summaries had their prefix, the
    latest point of its ``<name>`` curve (the same epoch: the last with finite figures)."""
    m = run.data.metrics
    return m.get(f"final/{name}", m.get(name, math.nan))


def keep_newest(newest: dict[str, ChildRun], cell: ChildRun) -> None:
    """A rerun cell counts once, by its newest run."""
    old = newest.get(cell.config_hash)
    if old is None or cell.start_time > old.start_time:
        newest[cell.config_hash] = cell


def choose_best(newest_finished, parent_run_id: str) -> ChildRun:
    """The best of the newest FINISHED run per config: lowest final validation loss, then
    validation error (never test figures), among runs that trained to a result."""
    def key(c: ChildRun):
        return (c.val_loss if math.isfinite(c.val_loss) else math.inf,
                c.val_error if math.isfinite(c.val_error) else math.inf)

    trained = [c for c in newest_finished if c.outcome in TRAINED and math.isfinite(c.val_loss)]
    if not trained:
        raise RegistryError(f"sweep {parent_run_id} has no run that trained to a result with a "
                            "validation loss (all shape_mismatch, diverged or failed?)")
    return min(trained, key=key)


def the_run(client, best: ChildRun):
    """The full run ``best`` stands for (a link run stands for the run it links to)."""
    return client.get_run(best.link_to or best.run_id)


def best_run(client, parent_run_id: str):
    """The sweep's best trained run (``choose_best``) and its parent, read page by page."""
    from slnn.tracking.runs import iter_runs

    parent = client.get_run(parent_run_id)
    newest: dict[str, ChildRun] = {}
    for r in iter_runs(client, [parent.info.experiment_id],
                       f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FINISHED'"):
        keep_newest(newest, ChildRun.of(r))
    return the_run(client, choose_best(newest.values(), parent_run_id)), parent


def ensure_logged_model(client, run, model_tags: dict[str, str] | None = None) -> str:
    """The id of ``run``'s LoggedModel, logged now from its artifacts if it has none (a sweep's
    runs log no model by default; its best run gets one when the sweep ends); ``model_tags`` are
    set on it either way (``best_of_sweep``)."""
    model_id = run.data.tags.get("slnn.model_id")
    if model_id:
        if model_tags:
            client.set_logged_model_tags(model_id, model_tags)
        return model_id
    import yaml

    from slnn.core.data import DataSpec, load_dataset
    from slnn.core.errors import ConfigError
    from slnn.tracking.model import link_metrics, log_model, model_code, model_name
    from slnn.tracking.recorder import MODEL_METRICS

    tags = run.data.tags
    activation = tags.get("slnn.activation", "")
    try:
        model_code(activation)
    except ConfigError as e:
        raise RegistryError(f"run {run.info.run_id} has no model to register: {e}") from None
    with tempfile.TemporaryDirectory(prefix="slnn-register-") as tmp:
        tmp = Path(tmp)
        w = client.download_artifacts(run.info.run_id, "weights/final.npy", str(tmp))
        cfg_path = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp))
        cfg = yaml.safe_load(Path(cfg_path).read_text())
        data = load_dataset(DataSpec(**cfg["data"]), run_seed=cfg.get("seed", 0))
        final_epoch = run.data.metrics.get("final/epoch", run.data.metrics.get("final_epoch", 0))
        model_id = log_model(client, run.info.experiment_id, run.info.run_id,
                             np.load(w, allow_pickle=False), activation, data,
                             name=model_name(tags.get("slnn.update", "slnn"), activation,
                                             data.name),
                             params=run.data.params, tags=model_tags or {},
                             step=int(final_epoch) if math.isfinite(final_epoch) else 0)
        link_metrics(client, run.info.run_id, model_id, data, MODEL_METRICS)
    client.set_tag(run.info.run_id, "slnn.model_id", model_id)
    return model_id


def best_of_sweep(parent_run_id: str, study: str | None = None) -> dict[str, str]:
    """The tags that say a model is its sweep's best (lowest final validation loss)."""
    tags = {"slnn.best_of_sweep": parent_run_id,
            "mlflow.note.content": f"The best run of sweep {parent_run_id} by final validation "
                                   "loss (ties broken by validation error)."}
    if study:
        tags["slnn.study"] = study
    return tags


def mark_on_parent(client, parent_run_id: str, model_id: str) -> None:
    """List the sweep's best model on its parent run's page too ("Logged models")."""
    from mlflow.entities import LoggedModelOutput

    outputs = client.get_run(parent_run_id).outputs
    if model_id not in {m.model_id for m in (outputs.model_outputs if outputs else [])}:
        client.log_outputs(parent_run_id, [LoggedModelOutput(model_id, 0)])


def register_best(uri: str, parent_run_id: str, name: str | None = None,
                  alias: str = "best") -> tuple[str, str, str]:
    """Register the sweep's best run; returns ``(model name, version, run id)``."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    # an explicit registry URI: the fluent API would use whatever store was set globally last
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run, parent = best_run(client, parent_run_id)
    study = parent.data.tags.get("slnn.study", "sweep")
    name = name or f"slnn-{study}"
    model_id = ensure_logged_model(client, run, best_of_sweep(parent_run_id, study))
    mark_on_parent(client, parent_run_id, model_id)
    try:
        client.create_registered_model(name, description=f"best run of slnn sweep {study}")
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    # the model's own artifact location, not models:/<id> (which MLflow would resolve through
    # the process's global tracking URI, not this client's)
    source = client.get_logged_model(model_id).artifact_location
    mv = client.create_model_version(name, source, run_id=run.info.run_id,
                                     tags={"slnn.parent_run_id": parent_run_id}, model_id=model_id)
    client.set_registered_model_alias(name, alias, mv.version)
    client.set_tag(parent_run_id, "slnn.registered_model", f"{name}@{alias} (version {mv.version})")
    return name, str(mv.version), run.info.run_id
