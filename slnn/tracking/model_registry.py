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
from pathlib import Path

import numpy as np

from slnn.core.outcomes import TRAINED


class RegistryError(RuntimeError):
    """Nothing can be registered; the message says why and what to do."""


def best_run(client, parent_run_id: str):
    """The sweep's best trained run (lowest final validation loss, then validation error; never
    chosen on test figures), newest per config; a link run stands for the run it links to."""
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                            "and attributes.status = 'FINISHED'",
                              max_results=50000)
    newest: dict[str, object] = {}
    for r in runs:
        h = r.data.tags.get("slnn.config_hash", r.info.run_id)
        if h not in newest or r.info.start_time > newest[h].info.start_time:
            newest[h] = r

    def key(r):
        val = r.data.metrics.get("val_loss", math.nan)
        err = r.data.metrics.get("val_error", math.nan)
        return (val if math.isfinite(val) else math.inf, err if math.isfinite(err) else math.inf)

    trained = [r for r in newest.values() if r.data.tags.get("slnn.outcome") in TRAINED
               and math.isfinite(r.data.metrics.get("val_loss", math.nan))]
    if not trained:
        raise RegistryError(f"sweep {parent_run_id} has no run that trained to a result with a "
                            "validation loss (all shape_mismatch, diverged or failed?)")
    best = min(trained, key=key)
    if "slnn.link_to" in best.data.tags:
        best = client.get_run(best.data.tags["slnn.link_to"])
    return best, parent


def ensure_logged_model(client, run) -> str:
    """The id of ``run``'s LoggedModel, logged now from its artifacts if it has none (a sweep's
    runs log no model by default; its best run gets one when the sweep ends)."""
    model_id = run.data.tags.get("slnn.model_id")
    if model_id:
        return model_id
    import yaml

    from slnn.core.data import DataSpec, load_dataset
    from slnn.tracking.model import can_log, log_model

    activation = run.data.tags.get("slnn.activation", "")
    if not can_log(activation):
        raise RegistryError(f"run {run.info.run_id} used activation {activation!r}, which a logged "
                            "model cannot compute: it has no model to register")
    with tempfile.TemporaryDirectory(prefix="slnn-register-") as tmp:
        tmp = Path(tmp)
        w = client.download_artifacts(run.info.run_id, "weights/final.npy", str(tmp))
        cfg_path = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp))
        cfg = yaml.safe_load(Path(cfg_path).read_text())
        data = load_dataset(DataSpec(**cfg["data"]), run_seed=cfg.get("seed", 0))
        model_id = log_model(client, run.info.experiment_id, run.info.run_id,
                             np.load(w, allow_pickle=False), activation, data)
    client.set_tag(run.info.run_id, "slnn.model_id", model_id)
    return model_id


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
    model_id = ensure_logged_model(client, run)
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
