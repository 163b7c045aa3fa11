"""The ``slnn`` sweeper: Hydra's grid semantics, plus validation up front, resume, a parent run
per sweep, and cells batched into a few launcher jobs so Hydra's per-job cost is paid per job.

The logic lives in ``slnn.sweep.orchestrator``; this module only adapts it to Hydra's Sweeper API.
Its launcher runs ``slnn.sweep.worker.run_job`` for each job, in place of the command line's
``main`` that Hydra hands the sweeper (``setup``'s ``task_function``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SlnnSweeper(Sweeper):
    def __init__(self, params: Optional[dict] = None, chunks: Optional[int] = None,
                 search: Optional[dict] = None):
        self.params = params or {}
        self.chunks = chunks
        self.search = search if search and search.get("space") else None  # none: a grid
        self._search_node = search
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from slnn.sweep.slurm_launch import name_slurm_jobs
        from slnn.sweep.worker import run_job

        self.config = config
        self.hydra_context = hydra_context
        self.slurm_job_name = name_slurm_jobs(config)  # None unless hydra/launcher=submitit_slurm
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=run_job, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from slnn.app.run import quiet_libraries
        from slnn.sweep.grid import grid_size
        from slnn.sweep.orchestrator import Orchestrator
        from slnn.sweep.slurm import is_launcher_failure
        from slnn.sweep.slurm_launch import stop_sweep_jobs
        from slnn.sweep.warm import cap_workers, start as start_workers

        if self.chunks is not None and self.chunks < 1:  # Hydra's schema has made it an int
            from slnn.sweep.grid import fail

            fail(f"hydra.sweeper.chunks must be a whole number of jobs, 1 or more, not "
                 f"{self.chunks!r}; leave it out for the default (one per joblib worker)")
        if self.search is None and self._search_node:  # a grid given a search's settings
            import dataclasses

            from hydra_plugins.slnn_sweeper.config import SlnnSearchConf
            from slnn.sweep.grid import fail

            given = [f.name for f in dataclasses.fields(SlnnSearchConf) if f.name != "space"
                     and self._search_node.get(f.name, f.default) != f.default]
            if given:
                fail(f"hydra.sweeper.search.{given[0]}={self._search_node.get(given[0])!r} is "
                     "set, but hydra.sweeper.search.space is empty, so this sweep is a grid and "
                     "no search runs: name what to search in the space, or drop the setting")
        run = Orchestrator(self.config, arguments)
        search = first = identity = None
        if self.search is not None:  # tune, then confirm (slnn.sweep.tune)
            from slnn.core.errors import ConfigError
            from slnn.sweep.grid import enumerate_cells, fail
            from slnn.sweep.tune import Search

            from hydra.core.override_parser.overrides_parser import OverridesParser

            arms = enumerate_cells(self.config, arguments)
            # the arms' axes: the study's params and the command line's swept keys
            axes = set(self.params) | {o.key_or_group for o in OverridesParser.create()
                                       .parse_overrides(list(arguments)) if o.is_sweep_override()}
            try:
                search = Search(run, self.search, sorted(axes))
            except ConfigError as e:
                fail(str(e))
            first, identity = search.first_cells(arms)
            size = len(arms) * (search.spec.trials + len(search.spec.confirm_seeds))
        else:
            size = grid_size(self.config, arguments)
        # counted before anything is made: a grid too large is refused here, in one line, and
        # no more joblib workers start than there are cells (or than the cores can use)
        cap_workers(self.launcher, size)
        run.set_env()  # the workers' thread limits, before any worker exists
        warm = start_workers(self.launcher)  # joblib's workers import while the grid is prepared
        quiet_libraries()  # imports MLflow: seconds the workers spend on their own imports
        try:
            todo = run.prepare(first, identity) if search is not None else run.prepare()
        except BaseException:  # a bad grid or store: fails with its one line, no worker left
            if warm is not None:
                warm.discard()
            raise
        if warm is not None and not todo and search is None:
            warm.discard()
        try:
            if search is not None:
                returns = []
                launch = lambda cells: returns.extend(self._launch(run, cells, warm))  # noqa: E731
                search.confirm(search.tune(launch), launch)
            else:
                returns = self._launch(run, todo, warm)
            if warm is not None:  # every job has returned: the workers may go
                warm.release()
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: slnn-train ends with no traceback
            run.interrupted(e)
            raise
        except Exception as e:
            if is_launcher_failure(e):  # a SLURM job died: name the lost cells in one line
                stop_sweep_jobs(self.slurm_job_name)  # the rest would write after the parent closed
                sys.exit(run.launcher_failed(e))
            run.interrupted(e)  # the launcher gave up, e.g. a joblib worker was killed: one line
            sys.exit(1)
        try:
            code = run.finish()
        except KeyboardInterrupt as e:  # right after the last cell: the parent is still closed
            run.interrupted(e)
            raise
        if code:
            sys.exit(code)
        return returns

    def _launch(self, run, todo: list, warm) -> list:
        """Run ``todo`` (``grid.Cell``s) as launcher jobs, printing progress from the ledger;
        the jobs' returns (a job that raised outside a cell is said, not raised)."""
        from slnn.sweep.progress import Progress
        from slnn.sweep.slurm_launch import cancel_on_interrupt
        from slnn.sweep.warm import jobs_for

        if not todo:
            return []
        n, shared = jobs_for(self.launcher, self.chunks)
        jobs = run.write_chunks(todo, n, shared)
        if warm is not None:
            warm.wait()
        # the one process that prints progress: from the ledger the workers append to
        first = not getattr(run, "launched", False)
        run.launched = True
        progress = Progress(run.state, run.todo_folders, workers=n if shared else
                            (1 if n == 1 else min(n, os.cpu_count() or 1)),
                            since=None if first else time.time()).start()
        try:
            with cancel_on_interrupt(self.slurm_job_name):
                returns = self.launcher.launch(jobs, initial_job_idx=0)
        finally:
            progress.stop()
        for r in returns:  # a job that raised outside a cell (rare): counted, not raised
            if r.status.name == "FAILED":
                try:
                    r.return_value  # noqa: B018 - raises the job's exception
                except Exception as e:  # noqa: BLE001
                    print(f"slnn: a sweep job failed: {type(e).__name__}: {e}", file=sys.stderr)
        return returns
