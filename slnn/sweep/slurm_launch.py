"""The launching side of a SLURM sweep: every job of one sweep gets the same unique name
(``hydra.launcher.name``), so Ctrl-C or SIGTERM in the launching process can ``scancel`` exactly
the sweep's jobs instead of leaving them running."""

from __future__ import annotations

import contextlib
import signal
import sys

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from slnn.sweep.slurm import cancel_jobs, unique_job_name, wait_gone


def name_slurm_jobs(config: DictConfig) -> str | None:
    """Give the submitit_slurm launcher a job name of this sweep's own; None for other launchers."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    if "SlurmLauncher" not in target:
        return None
    base = str(OmegaConf.select(config, "hydra.job.name") or "slnn")
    name = unique_job_name(f"slnn-{base}")
    with read_write(config), open_dict(config):
        config.hydra.launcher.name = name
    return name


# how often, at most, the launching process asks SLURM (sacct) for its jobs' states. submitit's
# own pace doubles from 2 s up to 10 minutes, so a job that SLURM ended (time limit, node failure,
# scancel) could go unnoticed for minutes while the sweep's other jobs kept writing.
SACCT_EVERY_S = 15


@contextlib.contextmanager
def cancel_on_interrupt(job_name: str | None):
    """Around ``launcher.launch``: on KeyboardInterrupt (or SIGTERM, turned into one) cancel the
    sweep's SLURM jobs, then let the interrupt go on. While it lasts, the jobs' states are read
    from SLURM at least every ``SACCT_EVERY_S`` seconds, so a dead job ends the wait promptly."""
    if not job_name:
        yield
        return
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

    watcher = SlurmJob.watcher  # the jobs of this launch register with a watcher of our pace
    SlurmJob.watcher = SlurmInfoWatcher(delay_s=SACCT_EVERY_S)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: no handler
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt:
        ok = cancel_jobs(job_name) and wait_gone(job_name, timeout=15)
        print(f"slnn: interrupted: {'cancelled' if ok else 'could not cancel'} the sweep's SLURM "
              f"jobs (scancel --name={job_name})", file=sys.stderr, flush=True)
        raise
    finally:
        SlurmJob.watcher = watcher
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def stop_sweep_jobs(job_name: str | None) -> None:
    """After a job died: cancel the sweep's other jobs and wait until SLURM has ended them, so the
    parent's close can mark their open runs KILLED (their cells are resumable)."""
    if job_name and cancel_jobs(job_name):
        wait_gone(job_name, timeout=30)
