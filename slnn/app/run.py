"""One run, end to end: a validated ``Config`` (``slnn.app.schema``) in, a trained network
recorded in MLflow out (``run_one``; a composed ``DictConfig`` is validated first, once). The
config builds the data set and goes to the trainer (``slnn.core``) as it is; the result goes to
the recorder (``slnn.tracking``). The command line and a sweep's jobs both call ``run_one``."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import traceback
from dataclasses import asdict

import numpy as np
from omegaconf import DictConfig, OmegaConf

from slnn.app.runlog import RunLog
from slnn.app.schema import Config, config_hash, flatten, identity, run_name, to_config
from slnn.core.data import Dataset, load_dataset
from slnn.core.outcomes import TRAINED, Outcome
from slnn.core.trainer import TrainResult, train

log = logging.getLogger("slnn")
_datasets: dict[tuple, Dataset] = {}


def build_dataset(c: Config) -> Dataset:
    """The run's data set; each distinct one is built once per process (a CSV again when the
    file changes)."""
    key = [json.dumps(asdict(c.data), sort_keys=True),
           c.seed if c.data.seed is None else c.data.seed]
    if c.data.path and os.path.isfile(c.data.path):
        st = os.stat(c.data.path)
        key += [os.path.abspath(c.data.path), st.st_mtime_ns, st.st_size]
    key = tuple(key)
    if key not in _datasets:
        _datasets[key] = load_dataset(c.data, run_seed=c.seed)
    return _datasets[key]


def quiet_libraries() -> None:
    """MLflow's and Alembic's INFO lines (table creation, signature checks) and MLflow's artifact
    progress bars are noise here: the run prints one line of its own that says where everything
    is."""
    from slnn.app import gcpause
    from slnn.tracking.console import quiet_mlflow

    quiet_mlflow()  # imports MLflow: the last of the big imports
    gcpause.resume()


class Progress:
    """Quiet for a short run; a long one reports its epoch and losses every few seconds."""

    def __init__(self, name: str, epochs: int, every: float = 3.0):
        self.name, self.epochs, self.every = name, epochs, every
        self.next = None  # the clock starts at epoch 0: compiling the kernel first is not training

    def __call__(self, row: dict) -> None:
        now = time.monotonic()
        if self.next is None:
            self.next = now + self.every
        elif now >= self.next:
            self.next = now + self.every
            print(f"slnn: {self.name}: epoch {int(row['epoch'])}/{self.epochs}, train_loss "
                  f"{row['train_loss']:.4g}, val_loss {row['val_loss']:.4g}", file=sys.stderr,
                  flush=True)


def check_custom_rule(c: Config, data: Dataset) -> str | None:
    """For ``update=custom``: load the user's file and call the function on random batches of
    this run's ``W`` shape, activation and batch size (``slnn.core.custom.validate``), before
    any run starts; the file's sha256, or a one-line ``RuleLoadError`` naming the file, the
    function and the problem. None for a built-in rule."""
    from slnn.core.custom import validate
    from slnn.core.rules import CUSTOM

    if c.update.rule != CUSTOM:
        return None
    n_in, n_out = data.x_train.shape[1] + 1, data.t_train.shape[1]
    return validate(c.update.fn, c.model.activation, n_in, n_out, (c.train.batch_size,))


def rule_tags(c: Config) -> dict[str, str]:
    """A user's rule: which file and function (absolute) and the sha256 of the file's bytes as
    loaded now, which resume compares (``slnn.sweep.resume``); nothing for a built-in rule."""
    from slnn.core.rules import CUSTOM, custom_rule

    if c.update.rule != CUSTOM:
        return {}
    rule = custom_rule(c.update.fn)
    return {"slnn.rule_fn": rule.source, "slnn.rule_digest": rule.digest}


def run_tags(c: Config, chash: str, data: Dataset | None = None) -> dict[str, str]:
    """What a run is (config hash, rule, activation, data and its digest), which code made it
    (``slnn.tracking.provenance``), and which process owns it (``slnn.tracking.liveness``)."""
    from slnn.tracking.runs import JOB_TAG, job_id_from_env
    from slnn.tracking.liveness import owner_tags
    from slnn.tracking.provenance import source_tags

    tags = {"slnn.update": c.update.rule, "slnn.activation": c.model.activation,
            "slnn.data": c.data.name, "slnn.config_hash": chash,
            "slnn.outcome": Outcome.RUNNING, **rule_tags(c), **owner_tags(), **source_tags()}
    job = job_id_from_env()
    if job:  # made in a SLURM job: the reaper asks sacct whether that job still runs
        tags[JOB_TAG] = job
    if data is not None:
        tags["slnn.data_digest"] = data.digest
        tags["slnn.data_source"] = data.source
    return tags


# data keys every data set uses; the others matter only to the loaders that take them
_DATA_KEYS = {"name", "split", "standardize", "guide_scaling", "seed"}


def run_params(c: Config, plot: bool | None = None) -> dict[str, str]:
    """The params MLflow shows: the resolved config minus the data keys this data set ignores
    (an iris run shows no ``data.gate``), and whether the run plots (``plot``: what a null
    ``tracking.plot`` came to). The config hash and ``config.yaml`` stay complete."""
    import inspect

    from slnn.core.data import DATASETS

    used = _DATA_KEYS | set(inspect.signature(DATASETS[c.data.name]).parameters)
    ident = identity(asdict(c))
    ident["data"] = {k: v for k, v in ident["data"].items() if k in used}
    return flatten(ident) | flatten({"tracking": {"plot": c.tracking.plot if plot is None else plot}})


def _record_failure(rec, exc: BaseException, status: str, log: RunLog) -> None:
    """Close the run as FAILED or KILLED, its log (with the traceback) attached; if even that
    fails (an interrupt can catch the store mid-write), the original error still propagates and
    the next command reaps the run."""
    from slnn.tracking.faults import classify, mask

    log.line("".join(traceback.format_exception(exc)).rstrip())
    try:
        rec.fail(exc, status=status, log=log.text)
    except Exception as e:  # noqa: BLE001
        if classify(rec.client.tracking_uri, exc) is None:  # a store fault is said once, later
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            print(mask(f"slnn: could not record run {rec.run_id} as {status}: {first}"),
                  file=sys.stderr)


def mask_hydra_files() -> None:
    """A single run's Hydra folder (``outputs/<date>/<time>/.hydra/``) holds its command line
    and config: a password in ``tracking.uri=...`` is masked there (``faults.mask_files``)."""
    from hydra.core.hydra_config import HydraConfig

    from slnn.tracking.faults import mask_files

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    if hc.output_subdir is not None:
        folder = os.path.join(hc.runtime.output_dir, hc.output_subdir)
        mask_files(os.path.join(folder, f) for f in ("overrides.yaml", "config.yaml",
                                                      "hydra.yaml"))


def reap_orphans(client, exp_id: str) -> None:
    """Close runs whose process died (kill -9, a crash) as KILLED: every command that opens a
    store does it, so no run stays RUNNING for ever."""
    from slnn.tracking.console import say
    from slnn.tracking.runs import reap_dead_runs

    try:
        n = reap_dead_runs(client, exp_id)
    except Exception:  # noqa: BLE001 - a store too busy to reap now is reaped by the next command
        return
    if n:
        say(f"slnn: marked {n} run(s) of dead processes KILLED", sys.stderr)


def run_one(c: Config | DictConfig, *, chash: str | None = None,
            parent_run_id: str | None = None, quiet: bool = False,
            experiment_id: str | None = None, log: RunLog | None = None,
            on_open=None, tags: dict | None = None, on_epoch=None,
            check_every: int = 0) -> TrainResult:
    """Train and record one run of the validated ``Config`` ``c`` (a composed ``DictConfig`` is
    validated first, once). Expected outcomes (diverged, shape_mismatch) return normally; an
    unexpected failure is recorded as a FAILED run and then raised.

    A sweep passes what it already has: its cell's ``chash`` (each cell is validated and hashed
    once, when the grid is composed) and the ``experiment_id``, its own
    ``log`` (``slnn.app.runlog``; without one the run's log also goes to the terminal unless
    ``quiet``; either way it is saved as the run's ``run.log`` artifact), and ``on_open(run_id)``,
    called once the run exists (a sweep's claim on the cell: it may delete the run and raise to
    give the cell up). A single run reaps the store's orphans first. A search's cell adds its
    ``tags`` (stage, arm, trial) and ``on_epoch`` with ``check_every`` (its pruner; see ``train``).
    """
    if log is None:
        with RunLog(echo=not quiet) as own:
            return run_one(c, chash=chash, parent_run_id=parent_run_id, quiet=quiet,
                           experiment_id=experiment_id, log=own, on_open=on_open, tags=tags,
                           on_epoch=on_epoch, check_every=check_every)
    from slnn.tracking import store
    from slnn.tracking.console import browse_command, run_url
    from slnn.tracking.faults import mask
    from slnn.tracking.recorder import RunRecorder

    if not isinstance(c, Config):
        c = to_config(c)
    chash = chash or config_hash(asdict(c))
    if parent_run_id is None:
        mask_hydra_files()
    data = build_dataset(c)
    uri = store.resolve_uri(c.tracking.uri)
    client = store.client_for(uri)
    exp_id = experiment_id or store.ensure_experiment(client, c.tracking.experiment)
    if experiment_id is None:
        reap_orphans(client, exp_id)
    name = run_name(c)
    # a plot and a model per single run; in a sweep only when asked (the sweep logs its best
    # run's model, and its report plots every cell)
    plot = c.tracking.plot if c.tracking.plot is not None else parent_run_id is None
    log_model = c.tracking.log_model if c.tracking.log_model is not None else parent_run_id is None
    tags = {**run_tags(c, chash, data), **(tags or {})}
    rec = RunRecorder(client, exp_id, name, run_params(c, plot), tags, parent_run_id)
    if on_open is not None:
        on_open(rec.run_id)
    log.line(f"slnn: {name}: run {rec.run_id} started on {socket.gethostname()}, pid {os.getpid()}")
    try:
        from slnn.core.rulefile import pinned

        # a user's rule trains from the bytes whose digest the run records, or not at all
        with pinned({c.update.fn.rpartition(":")[0]: tags["slnn.rule_digest"]}
                    if "slnn.rule_digest" in tags else {}):
            result = train(data, c, rng=np.random.default_rng(c.seed),
                           on_epoch=on_epoch or (None if quiet else Progress(name, c.train.epochs)),
                           check_every=check_every)
        fin = result.final
        what = (f"val_error {fin['val_error']:.3f}, test_error {fin['test_error']:.3f}"
                if result.outcome in TRAINED else result.reason)
        done = f"slnn: {name}: {result.outcome} after {result.epochs_run} epochs, {what}"
        log.line(done)
        rec.finish(result, mask(OmegaConf.to_yaml(c)), plot=plot,
                   title=name, max_metric_points=c.tracking.max_metric_points, data=data,
                   model_activation=c.model.activation if log_model else None, log=log.text)
    except (KeyboardInterrupt, SystemExit) as e:  # SystemExit: submitit ends a job SLURM stops
        _record_failure(rec, e, "KILLED", log)
        raise
    except BaseException as e:
        from slnn.tracking.runs import is_launcher_failure  # the job is being stopped by SLURM

        _record_failure(rec, e, "KILLED" if is_launcher_failure(e) else "FAILED", log)
        raise
    if not quiet:  # MLflow's own "View run" lines are off (console.suppress_run_urls)
        view = (f" (this run: {run_url(uri, exp_id, rec.run_id)})"
                if uri.startswith(("http://", "https://")) else "")
        print(mask(f"{done} (run {rec.run_id}); browse: {browse_command(uri)}{view}"))
    result.run_id = rec.run_id  # type: ignore[attr-defined]
    return result
