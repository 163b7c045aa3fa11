"""joblib's workers started, and made to import what a cell needs, while the launching process
prepares the grid (Hydra's launcher starts them only once it is prepared), and stopped as soon as
every job has returned. joblib hands the launcher the same reusable executor when its settings
match; otherwise it makes new workers, as without this. Measured in docs/development.md."""

from __future__ import annotations

import os
import threading


def _import_for_a_cell() -> None:
    """What a worker imports before its first cell, the collector paused (``slnn.app.gcpause``)."""
    from slnn.app import gcpause

    gcpause.pause()
    try:
        import mlflow.tracking  # noqa: F401

        import slnn.app.run  # noqa: F401
        import slnn.core.compiled.codegen  # noqa: F401 - Numba
        import slnn.sweep.grid  # noqa: F401 - Hydra, OmegaConf, the schema: the pickled cells
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
        """Nothing to run after all (every cell done, or a bad grid): stop the workers now."""
        self.discarded = True
        self.release()

    def release(self) -> None:
        """Stop the workers (idle: every job has returned, its output flushed) instead of at
        this process's exit, where loky's graceful shutdown waits for them."""
        try:
            from joblib.externals.loky import get_reusable_executor

            # reuse=True: the executor of the warm-up and the jobs, whatever its settings
            get_reusable_executor(reuse=True).shutdown(wait=False, kill_workers=True)
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
    whether they take their cells from one shared list: joblib with 2+ workers, one job per
    worker, shared; the basic launcher (or one joblib worker), one job; any other launcher
    (submitit, SLURM), 4 jobs per CPU, each with its own chunk (docs/sweeps.md)."""
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
