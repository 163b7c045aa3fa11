"""The job side of a sweep: train cells one after another, and record each in the ledger.

``run_job`` is the task function the sweeper gives Hydra's launcher: a job's config carries
``sweep.state=<file> sweep.chunk=<k>``, and the job reads its cells, already composed, validated
and hashed by the launcher (``slnn.sweep.grid.Cell``, pickled in ``jobs/chunk_<k>.pkl``). It
trains either its own chunk (SLURM and submitit jobs) or, with joblib's workers, the next cell of
one shared list that no other job has taken yet (``take``), until none is left.
"""

from __future__ import annotations

import functools
import os
import pickle
import sys
import time
import traceback
from pathlib import Path


from slnn.core.outcomes import Outcome
from slnn.sweep.ledger import report_progress
from slnn.sweep.state import SweepState
from slnn.tracking.console import say


def run_cell(c, chash: str, state: SweepState, folder: str = "", tags: dict | None = None,
             trial: tuple | None = None) -> bool:
    """One cell. Never raises (but for an interrupt, or ``claims.CellTaken`` when another live
    process holds the cell): a failure is recorded in MLflow as a FAILED run and in the sweep's
    ledger, and the sweep goes on. False if it failed.

    What the cell says (warnings, errors, MLflow's log) goes to its log, not the terminal: the
    run's ``run.log`` artifact and ``cells/<folder>/run.log`` in the sweep folder, which
    ends with the cell's own line (``ledger.cell_line``); the launcher's progress counts it, and
    says where the log is when it holds a warning or an error."""
    from slnn.app.runlog import RunLog
    from slnn.app.schema import run_name
    from slnn.sweep.attempt import run_claimed
    from slnn.sweep.claims import CellTaken

    start = time.perf_counter()
    name = run_name(c)
    log = RunLog(echo=False)
    try:
        with log:
            result = run_claimed(c, chash, state, log, tags=tags,
                                 **(_pruning(state, trial, c.train.epochs) if trial else {}))
    except CellTaken as e:
        if not e.done:
            raise
        report_progress(state, name, Outcome.SKIPPED, time.perf_counter() - start, cell=folder)
        return True
    except KeyboardInterrupt:
        report_progress(state, name, Outcome.KILLED, time.perf_counter() - start,
                        log=_save_log(state, folder, log), cell=folder)
        raise
    except Exception as e:  # noqa: BLE001 - recorded, counted, and the sweep goes on
        from slnn.sweep.slurm import is_launcher_failure

        if "Traceback" not in log.text():  # it failed before its run existed
            log.line("".join(traceback.format_exception(e)).rstrip())
        path = _save_log(state, folder, log)
        if is_launcher_failure(e):  # submitit at the job's time limit: the job ends here
            report_progress(state, name, Outcome.KILLED, time.perf_counter() - start, log=path,
                            cell=folder)
            raise
        first = (str(e).splitlines() or [""])[0]
        # the launcher prints it, whole, between its progress lines (slnn.sweep.progress)
        report_progress(state, name, Outcome.FAILED, time.perf_counter() - start, log=path,
                        cell=folder, error=f"{type(e).__name__}: {first}")
        return False
    path = _save_log(state, folder, log)
    report_progress(state, name, result.outcome, time.perf_counter() - start, result.train_seconds,
                    val_error=result.final["val_error"], warnings=log.n_warnings, log=path,
                    cell=folder)
    return True


@functools.lru_cache(maxsize=4)
def _journal(folder: str):
    """One Optuna storage per process and search: it reads only what was appended to the
    journal since its last read, where a new one replays the whole file for every cell."""
    from slnn.sweep.search import journal

    return journal(Path(folder))


def _pruning(state: SweepState, trial: tuple, epochs: int) -> dict:
    """``run_one``'s ``on_epoch`` and ``check_every`` for a search's trial: every
    ``check_every`` epochs the run's ``monitor`` (validation error or loss) goes to the trial,
    and the run stops as ``pruned`` when the search's pruner says so (``slnn.sweep.search``)."""
    import math

    from slnn.sweep.search import parse_search, trial_in

    spec = parse_search(state.search["node"], state.search["grid_keys"])
    name, number, seed_index = trial
    base = seed_index * (epochs + 1)  # each tuning seed's epochs are steps of their own
    reporter = trial_in(_journal(state.search["journal"]), name, number, spec)

    def on_epoch(row: dict) -> bool:
        epoch = int(row["epoch"])
        if epoch == 0 or epoch % spec.check_every or epoch >= epochs:
            return False  # the last epoch is no check: a run that trained to the end is complete
        value = float(row[spec.monitor])  # a diverged run scores the worst there is
        worst = 1.0 if spec.monitor == "val_error" else 1e300
        reporter.report(value if math.isfinite(value) else worst, base + epoch)
        return bool(reporter.should_prune())

    return {"on_epoch": on_epoch, "check_every": spec.check_every}


def _save_log(state: SweepState, folder: str, log) -> str | None:
    """Write the cell's log into its folder; the path to show (relative to the working
    directory when below it), or None without a folder."""
    from slnn.tracking.console import relative

    if not folder:
        return None
    path = Path(state.dir) / "cells" / folder / "run.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(log.text())
    return relative(path)


@functools.lru_cache(maxsize=None)
def _hydra_node(sweep_dir: Path) -> dict | None:
    """The sweep's Hydra config (``multirun.yaml``'s ``hydra`` node), read once per process."""
    import yaml

    try:
        return (yaml.safe_load((sweep_dir / "multirun.yaml").read_text()) or {}).get("hydra")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def write_cell_folder(state: SweepState, folder: str, overrides: list[str], config=None) -> None:
    """``cells/<folder>/.hydra/``, as Hydra writes a job's folder: ``overrides.yaml`` (the cell's
    own overrides), ``config.yaml`` (its ``Config``) and ``hydra.yaml`` (the sweep's Hydra
    config with the cell's overrides, number and folder), a password in the store's URI masked
    in all three. Written by the job as the cell starts, so a sweep's start does not grow with
    its grid, and a folder exists for each cell that ran."""
    import copy

    import yaml
    from omegaconf import OmegaConf

    from slnn._compat import omegaconf_yaml_dumper
    from slnn.tracking.faults import mask

    if not folder:
        return
    path = Path(state.dir) / "cells" / folder
    hydra_dir = path / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)

    def dump(obj) -> str:  # OmegaConf.to_yaml's own dump, masked
        return mask(yaml.dump(obj, default_flow_style=False, allow_unicode=True,
                              sort_keys=False, Dumper=omegaconf_yaml_dumper()))

    (hydra_dir / "overrides.yaml").write_text(dump(list(overrides)))
    if config is not None:
        (hydra_dir / "config.yaml").write_text(mask(OmegaConf.to_yaml(config)))
    node = _hydra_node(Path(state.dir))
    if node is not None:
        hydra = copy.deepcopy(node)
        num = int(folder.split("-", 1)[0]) if folder[:4].isdigit() else 0
        hydra.setdefault("overrides", {})["task"] = list(overrides)
        job = hydra.setdefault("job", {})
        job.update({"num": num, "id": f"job_id_for_{num}",
                    "override_dirname": ",".join(sorted(overrides))})
        hydra.setdefault("runtime", {})["output_dir"] = str(path)
        hydra["mode"] = "MULTIRUN"
        (hydra_dir / "hydra.yaml").write_text(dump({"hydra": hydra}))


def take(taken: Path, cell: str) -> bool:
    """Take ``cell`` (its folder name: its place in the grid and its name) of a shared list for
    this job: True for exactly one job of the sweep. The mark is a file created with O_EXCL,
    atomic on a local disk and on NFS (v3 and later), so it needs no lock and no server. The
    marks are one sweep's (another sweep of the same cells has its own; the claims,
    ``slnn.sweep.claims``, keep the two apart)."""
    try:
        os.close(os.open(taken / cell, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


def _load_chunk(state: SweepState, chunk: int):
    """The job's cells (``grid.Cell``s, typed and validated by the launcher): its own chunk, or
    (``state.shared``) the cells it takes from the one shared list."""
    from slnn.tracking.faults import mask

    shared = state.shared
    jobs = Path(state.dir) / "jobs"
    with open(jobs / f"chunk_{0 if shared else chunk:04d}.pkl", "rb") as f:
        cells = pickle.load(f)
    for cell in cells:  # the file holds the store's URI masked: put the real one back
        if cell.config.tracking.uri == mask(state.uri):
            cell.config.tracking.uri = state.uri
    if shared:
        return _taken_by_this_job(cells, jobs / state.taken)
    return iter(cells)


def _taken_by_this_job(cells, taken: Path):
    """The next cell no job has taken yet, until none is left, or until a later session of the
    sweep has replaced this session's marks (this job was left running when its launcher died):
    the cell it is running then is the new session's to wait for, through its claim."""
    for cell in cells:
        try:
            mine = take(taken, cell.folder)
        except FileNotFoundError:
            return
        if mine:
            yield cell


def real_uri(masked: str, candidates) -> str:
    """The store's URI for a job: the sweep's state file holds it with any password masked
    (``faults.mask``); the real one is the first of ``candidates`` (the job's own
    ``tracking.uri``, its ``MLFLOW_TRACKING_URI``) that masks to it. A URI with nothing to mask
    is the state's own. Raises ``TrackingError`` (one line) when no candidate fits."""
    from slnn.tracking.faults import TrackingError, mask
    from slnn.tracking.store import resolve_uri

    for uri in candidates:
        if not uri:
            continue
        for form in (uri, resolve_uri(uri)):
            if form == masked or mask(form) == masked:
                return form
    if "***" not in masked:  # nothing was masked
        return masked
    raise TrackingError(f"this job of the sweep was not given the password of the store "
                        f"{masked}: pass it as the sweep did (tracking.uri=... or "
                        "MLFLOW_TRACKING_URI) to every job")


def run_job(cfg) -> int:
    """A launcher job (the task function the sweeper hands Hydra's launcher; a module-level
    function, so that joblib's workers and submitit's jobs import it by name): the cells of
    ``sweep.chunk``. Returns how many failed."""
    from slnn.app.run import quiet_libraries

    quiet_libraries()
    return run_chunk(cfg.sweep.state, cfg.sweep.chunk, uri=cfg.tracking.uri)


def run_chunk(state_path: str, chunk: int, uri: str | None = None) -> int:
    """A launcher job: train every cell of its chunk, in order, or of the shared list every cell
    no other job has taken. Returns how many failed. ``uri``: the job's own ``tracking.uri``
    (the state file's is masked, ``real_uri``)."""
    # one BLAS thread per worker: the parallelism is across jobs (numpy may already be loaded,
    # so the environment variables set by the sweep are not enough on their own)
    from threadpoolctl import threadpool_limits

    import signal

    from slnn.app import signals
    from slnn.sweep.attempt import store_gone
    from slnn.tracking.liveness import process_owner
    from slnn.sweep.claims import CellTaken

    signals.install()  # a worker sent SIGTERM closes its open run as KILLED
    state = SweepState.load(state_path)
    state.uri = real_uri(state.uri, (uri, os.environ.get("MLFLOW_TRACKING_URI")))
    # a worker started before the sweep opened its store (``warm``) has not inherited this; a job
    # whose environment names the store (a SLURM node's setup, say) keeps its own
    os.environ.setdefault("MLFLOW_TRACKING_URI", state.uri)
    failed = 0
    taken = []  # cells another live process holds: run (or skipped) once it lets them go
    done, launcher_gone = _watch_launcher(state)
    from slnn.core.rulefile import pinned

    try:
        # a user's rule file runs here only as the sweep validated and recorded it: its sha256 is
        # checked on the bytes read, before any of it runs (a file edited since fails its cells)
        with threadpool_limits(limits=1), pinned(state.rule_digests):
            for cell in _load_chunk(state, chunk):
                if store_gone(state):  # the store stayed down: the sweep stops, with one line
                    break
                if launcher_gone.is_set():  # nobody is left to report to
                    break
                write_cell_folder(state, cell.folder, cell.overrides, cell.config)
                try:
                    failed += not run_cell(cell.config, cell.hash, state, cell.folder,
                                           cell.tags, cell.trial)
                except CellTaken as e:
                    taken.append((cell, e.holder))
            if taken:
                from slnn.sweep.claims import run_when_released

                failed += run_when_released(taken, state, run_cell)
    finally:
        # the launcher stops idle joblib workers outright once every job has returned
        # (``warm.release``): nothing of this job's output may wait in a buffer
        from slnn.app.shutdown import flush_std_streams

        done.set()
        flush_std_streams()
        if state.launcher and state.launcher != process_owner():
            # a worker of its own: idle now, a SIGTERM ends it quietly (Terminated raised in
            # loky's loop printed a traceback); the launcher's own process keeps its handler
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            except ValueError:  # not the main thread: nothing was installed either
                pass
    return failed


LAUNCHER_GRACE = 10.0  # seconds a worker whose launcher died gives its cell to end


def _watch_launcher(state: SweepState):
    """In a job that runs in a process of its own on this machine (a joblib worker), watch the
    sweep's launcher. If it dies (killed with -9, say), the job takes no further cell, and its
    process exits as soon as the cell in hand is recorded (at most ``LAUNCHER_GRACE`` seconds
    later; a cell cut short is left RUNNING with a dead owner, which the next command reaps),
    instead of running every remaining cell for nobody and then idling. The next command also
    closes the sweep's parent run. Returns ``(done, gone)``: set ``done`` when the job ends;
    ``gone`` is set once the launcher has died."""
    import threading

    from slnn.tracking.liveness import is_alive, process_owner

    done, gone = threading.Event(), threading.Event()
    launcher = state.launcher
    if not launcher or launcher == process_owner():  # Hydra's basic launcher: this process
        return done, gone

    def watch() -> None:
        while not done.wait(1.0):
            if is_alive({"slnn.owner": launcher}) is False:
                gone.set()
                say(f"slnn: the sweep's launcher (pid {launcher.split('/')[3]}) is gone: this "
                    "worker stops; run the same command again to finish the sweep", sys.stderr)
                done.wait(LAUNCHER_GRACE)
                from slnn.app.shutdown import flush_std_streams

                flush_std_streams()
                os._exit(1)  # nobody waits for this job's result, nor for this worker

    threading.Thread(target=watch, name="slnn-watch-launcher", daemon=True).start()
    return done, gone


if __name__ == "__main__":  # a job run again by hand: python -m slnn.sweep.worker STATE CHUNK
    sys.exit(1 if run_chunk(sys.argv[1], int(sys.argv[2])) else 0)
