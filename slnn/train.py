"""Train one single-layer network and record the run in MLflow.

    slnn-train data=iris model.activation=tanh update=input optim.lr=0.1 seed=3
    slnn-train --help                    # the config groups, their choices and every key
    python -m slnn.train data=iris_petal update=kronecker
    mlflow ui --backend-store-uri sqlite:///mlflow.db

This is the thin Hydra entry point: it validates the config, builds the data set, hands plain
values to ``slnn.trainer.train`` and gives the result to ``slnn.tracking``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from slnn.config import Config, ConfigError, config_hash, flatten, identity, register_configs, run_name, to_config
from slnn.data import DataError, Dataset, load_dataset
from slnn.trainer import TrainResult, train

log = logging.getLogger("slnn")
# the repo's conf/ (an absolute path: the console script runs from anywhere)
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

register_configs()


def build_dataset(c: Config) -> Dataset:
    d = c.data
    return load_dataset(
        d.name, split=tuple(d.split), standardize=d.standardize, guide_scaling=d.guide_scaling,
        seed=c.seed if d.seed is None else d.seed, path=d.path, target=d.target, gate=d.gate,
        n_samples=d.n_samples, n_features=d.n_features, n_classes=d.n_classes,
        separation=d.separation)


def fit(c: Config, data: Dataset, on_epoch=None) -> TrainResult:
    t = c.train
    return train(
        data, activation=c.model.activation, rule=c.update.rule, lr=c.optim.lr, epochs=t.epochs,
        batch_size=t.batch_size, sampling=t.sampling, steps_per_epoch=t.steps_per_epoch,
        patience=t.patience, target_val_loss=t.target_val_loss, init=c.model.init,
        init_scale=c.model.init_scale, divergence_loss=t.divergence_loss, snapshots=t.snapshots,
        backend=t.backend, rng=np.random.default_rng(c.seed), on_epoch=on_epoch)


def _record_failure(rec, exc: BaseException, status: str) -> None:
    """Close the run as FAILED or KILLED; if even that fails (an interrupt can catch the store
    mid-write), the original error still propagates and the next sweep reaps the run."""
    try:
        rec.fail(exc, status=status)
    except Exception as e:  # noqa: BLE001
        print(f"slnn: could not record run {rec.run_id} as {status}: {e}", file=sys.stderr)


def quiet_libraries() -> None:
    """MLflow's and Alembic's INFO lines (table creation, signature checks) are noise here: the
    run prints one line of its own that says where everything is."""
    import mlflow  # noqa: F401 - it sets its logger's level when imported: import it first

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _Progress:
    """Quiet for a short run; a long one reports its epoch and losses every few seconds."""

    def __init__(self, name: str, epochs: int, every: float = 3.0):
        import time

        self.name, self.epochs, self.every, self.clock = name, epochs, every, time.monotonic
        self.next = self.clock() + every

    def __call__(self, row: dict) -> None:
        now = self.clock()
        if now >= self.next:
            self.next = now + self.every
            print(f"slnn: {self.name}: epoch {int(row['epoch'])}/{self.epochs}, train_loss "
                  f"{row['train_loss']:.4g}, val_loss {row['val_loss']:.4g}", file=sys.stderr,
                  flush=True)


def run_tags(c: Config, cfg: DictConfig) -> dict[str, str]:
    return {"slnn.update": c.update.rule, "slnn.activation": c.model.activation,
            "slnn.data": c.data.name, "slnn.config_hash": config_hash(cfg),
            "slnn.outcome": "running", "slnn.host": socket.gethostname(), "slnn.pid": str(os.getpid())}


def run_one(cfg: DictConfig, *, parent_run_id: str | None = None, quiet: bool = False,
            experiment_id: str | None = None) -> TrainResult:
    """Validate, train and record one run. Expected outcomes (diverged, shape_mismatch) return
    normally; an unexpected failure is recorded as a FAILED run and then raised. A sweep passes
    the ``experiment_id`` it already made, saving a look-up per cell."""
    from slnn import tracking

    c = to_config(cfg)
    data = build_dataset(c)
    uri = tracking.resolve_uri(c.tracking.uri)
    client = tracking.client_for(uri)
    exp_id = experiment_id or tracking.ensure_experiment(client, c.tracking.experiment)
    name = run_name(c)
    rec = tracking.RunRecorder(client, exp_id, name, flatten(identity(cfg)) | flatten(
        {"tracking": {"plot": c.tracking.plot}}), run_tags(c, cfg), parent_run_id)
    try:
        result = fit(c, data, on_epoch=None if quiet else _Progress(name, c.train.epochs))
        rec.finish(result, OmegaConf.to_yaml(cfg, resolve=True), plot=c.tracking.plot,
                   title=name, max_metric_points=c.tracking.max_metric_points,
                   model=(c.model.activation, data) if c.tracking.log_model else None)
    except KeyboardInterrupt as e:
        _record_failure(rec, e, "KILLED")
        raise
    except BaseException as e:
        _record_failure(rec, e, "FAILED")
        raise
    if not quiet:
        fin = result.final
        what = (f"val_error {fin['val_error']:.3f}, test_error {fin['test_error']:.3f}"
                if result.outcome not in ("shape_mismatch", "diverged") else result.reason)
        print(f"slnn: {name}: {result.outcome} after {result.epochs_run} epochs, {what} "
              f"(run {rec.run_id}); browse: mlflow ui --backend-store-uri {uri}")
    result.run_id = rec.run_id  # type: ignore[attr-defined]
    return result


def run_cell(cfg: DictConfig, state: dict) -> bool:
    """One cell of a sweep. Never raises (but for an interrupt): a failure is recorded in MLflow
    as a FAILED run and in the sweep's ledger, and the sweep goes on. False if it failed."""
    import time as _time

    from slnn.sweep import report_progress

    start = _time.perf_counter()
    name = "?"
    try:
        c = to_config(cfg)
        name = run_name(c)
        result = run_one(cfg, parent_run_id=state["parent_run_id"], quiet=True,
                         experiment_id=state["experiment_id"])
    except KeyboardInterrupt:
        report_progress(state, name, "killed", _time.perf_counter() - start)
        raise
    except Exception as e:  # noqa: BLE001 - recorded, counted, and the sweep goes on
        first = (str(e).splitlines() or [""])[0]
        print(f"slnn: {name} failed: {type(e).__name__}: {first}", file=sys.stderr, flush=True)
        report_progress(state, name, "failed", _time.perf_counter() - start)
        return False
    report_progress(state, name, result.outcome, _time.perf_counter() - start, result.train_seconds)
    return True


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from slnn.tracking import TrackingError

    quiet_libraries()

    if cfg.sweep.chunk is not None:  # a job of the slnn sweeper: a chunk of cells
        from slnn.sweep import run_chunk

        return run_chunk(cfg.sweep.state, cfg.sweep.chunk)
    try:
        result = run_one(cfg)
    except (ConfigError, DataError, TrackingError) as e:
        _die(str(e))
    v = result.final["val_loss"]
    return None if np.isnan(v) else float(v)


def explain_hydra_error(e: BaseException) -> str:
    """Hydra's multi-line composition errors as one line that names the problem and the choices."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    head = lines[0] if lines else type(e).__name__
    if "Available options in" in str(e):
        opts = [ln for ln in lines[2:] if "provider=" not in ln and not ln.startswith("Config search")]
        return f"{head.split(': ', 1)[-1]}: choose one of {opts}"
    cause = e.__cause__ or e.__context__
    detail = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
    more = " ".join(lines[1:2])
    return "; ".join(x for x in (head, detail or more) if x)


def precheck(overrides: list[str]) -> None:
    """Compose and validate a single run's config before Hydra starts the job, so a bad override
    fails with one line instead of Hydra's multi-line report."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            to_config(compose("config", overrides=overrides))
    except ConfigError as e:
        _die(str(e))
    except Exception as e:  # hydra's composition and override-parsing errors
        _die(explain_hydra_error(e))


def _die(msg: str) -> None:
    print(f"slnn-train: error: {msg}", file=sys.stderr)
    sys.exit(2)


def cli() -> None:
    """The ``slnn-train`` console script."""
    args = sys.argv[1:]
    if not any(a.startswith("-") for a in args):  # a single run (flags: multirun, help, ...)
        precheck(args)
    main()


if __name__ == "__main__":
    cli()
