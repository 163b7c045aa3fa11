"""Start a sweep's joblib workers while the launching process is still preparing the grid.

With ``hydra/launcher=joblib`` and two or more jobs, Hydra's launcher creates loky's worker
processes only once the sweep is prepared (every cell composed and checked, the store opened, the
parent run made), and each worker then imports Hydra, MLflow, NumPy and Numba before its first
cell: seconds on a small machine, paid after the preparation, not beside it.

``start`` makes the same ``joblib.Parallel`` call the launcher will make (same settings, same
worker environment), in a background thread, with one task per worker that imports what a cell
needs. joblib keeps one reusable executor per process and hands it to the next ``Parallel`` whose
arguments match, so the launcher's jobs land on workers that are already warm. If anything differs
(a setting, the environment), joblib makes new workers, as it would have without this: the
warm-up can cost a little, never correctness. Any launcher other than joblib, or a single job
(joblib then runs jobs in the launching process), gets no warm-up.
"""

from __future__ import annotations

import os
import threading


def _import_for_a_cell() -> None:
    """What a worker imports before its first cell, so the import is paid while the launching
    process prepares (unpickling this function has already imported slnn and joblib), with the
    garbage collector paused meanwhile (``slnn.app.gcpause``)."""
    from slnn.app import gcpause

    gcpause.pause()
    try:
        import mlflow.tracking  # noqa: F401

        import slnn.app.cli  # noqa: F401 - Hydra, OmegaConf and the config schema
        import slnn.app.run  # noqa: F401
        import slnn.core.compiled.codegen  # noqa: F401 - Numba
        import slnn.sweep.worker  # noqa: F401
        import slnn.tracking.recorder  # noqa: F401
        from slnn._compat import import_mlflow_sql_store

        import_mlflow_sql_store()
    finally:
        gcpause.resume()


class Warmup:
    def __init__(self, settings: dict, n_jobs: int):
        self.settings, self.n_jobs = settings, n_jobs
        self.discarded = False
        self.thread = threading.Thread(target=self._run, name="slnn-warm-workers", daemon=True)

    def _run(self) -> None:
        from joblib import Parallel, delayed

        if self.discarded:  # the grid failed its checks before the workers were asked for
            return
        try:
            Parallel(**self.settings)(delayed(_import_for_a_cell)() for _ in range(self.n_jobs))
        except BaseException:  # noqa: BLE001 - the launcher meets the same fault and says it
            pass

    def wait(self, timeout: float = 120.0) -> None:
        """Let the warm-up tasks end before the launcher submits the real jobs."""
        self.thread.join(timeout)

    def discard(self) -> None:
        """Nothing to run after all (every cell done, or the grid failed its checks): stop the
        warm workers now, even halfway through their imports, instead of at their idle timeout."""
        self.discarded = True
        _shut_down(kill=True)

    def release(self) -> None:
        """The launcher's jobs have all returned: stop the workers now, while the launching
        process closes the sweep, instead of at its exit, where loky's graceful shutdown waited
        1.4-1.8 s for them (measured on a 16-cell sweep). They are idle: every job has
        returned its result, and each job flushes its output as it ends (``worker``), so
        stopping them loses nothing."""
        _shut_down(kill=True)


def _shut_down(kill: bool) -> None:
    try:
        from joblib.externals.loky import get_reusable_executor

        # reuse=True: the executor joblib made for the warm-up and the jobs, whatever its settings
        get_reusable_executor(reuse=True).shutdown(wait=False, kill_workers=kill)
    except Exception:  # noqa: BLE001 - they exit on their own at the idle timeout
        pass


def joblib_settings(launcher) -> dict | None:
    """The ``joblib.Parallel`` arguments Hydra's joblib launcher will use, or None when
    ``launcher`` is not that launcher."""
    try:
        from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

        from slnn._compat import joblib_launcher_settings_step

        process_joblib_cfg = joblib_launcher_settings_step()
    except ImportError:
        return None
    if not isinstance(launcher, JoblibLauncher) or launcher.joblib is None:
        return None
    # the launcher's own steps, so that the settings match and joblib reuses the workers
    settings = dict(launcher.joblib)
    settings["backend"] = "loky"
    process_joblib_cfg(settings)
    return settings


def _workers(settings: dict) -> int:
    """How many workers joblib will run for these settings (0 if it cannot say)."""
    try:
        from joblib import effective_n_jobs, parallel_backend

        with parallel_backend("loky"):
            return effective_n_jobs(settings.get("n_jobs"))
    except Exception:  # noqa: BLE001 - an odd n_jobs: the launcher will say what is wrong
        return 0


def jobs_for(launcher, chunks: int | None) -> tuple[int, bool]:
    """How many launcher jobs a sweep's cells go to (``hydra.sweeper.chunks`` if set), and
    whether the jobs take their cells from one shared list:

    - joblib with 2+ workers: one job per worker, each taking the next cell no job has taken,
      so the workers end together and Hydra's per-job set-up (about a second) is paid once a
      worker;
    - Hydra's basic launcher, or joblib with one worker (the jobs run one after another in the
      launching process): one job;
    - any other launcher (submitit: local processes, SLURM): 4 jobs per CPU, each given its own
      chunk, so that what a job will run, and so how long, is known when it is submitted."""
    from slnn._compat import is_basic_launcher

    settings = joblib_settings(launcher)
    if settings is not None:
        workers = _workers(settings)
        return (chunks or workers, True) if workers >= 2 else (chunks or 1, False)
    if is_basic_launcher(launcher):
        return chunks or 1, False
    return chunks or 4 * (os.cpu_count() or 1), False


WORKERS_PER_CORE = 4  # more workers than this per core only wait for each other, in memory


def cap_workers(launcher, n_cells: int) -> None:
    """Lower joblib's ``n_jobs`` to what the sweep can use: no more workers than cells, nor than
    ``WORKERS_PER_CORE`` per core; one line says so when a request is lowered."""
    from slnn.tracking.console import say

    settings = joblib_settings(launcher)
    if settings is None:
        return
    asked = _workers(settings)
    cores = os.cpu_count() or 1
    cap = max(1, min(n_cells, WORKERS_PER_CORE * cores))
    if asked <= cap:
        return
    launcher.joblib["n_jobs"] = cap
    why = (f"the sweep has {n_cells} cell{'s' * (n_cells != 1)}" if cap == n_cells else
           f"{WORKERS_PER_CORE} per core on this {cores}-core machine")
    say(f"slnn: hydra.launcher.n_jobs={launcher_n_jobs(settings, asked)} lowered to {cap} "
        f"worker{'s' * (cap != 1)} ({why})")


def launcher_n_jobs(settings: dict, asked: int):
    n = settings.get("n_jobs")
    return n if n is not None else asked


def start(launcher) -> Warmup | None:
    """Start the workers of ``launcher`` (Hydra's joblib launcher with 2+ jobs) in the background;
    None for any other launcher."""
    settings = joblib_settings(launcher)
    if settings is None:
        return None
    n_jobs = _workers(settings)
    if n_jobs < 2:
        return None
    warm = Warmup(settings, n_jobs)
    warm.thread.start()
    return warm
