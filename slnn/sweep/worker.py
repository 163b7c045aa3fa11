"""The job side of a sweep: train every cell of one chunk, in order, and record each in the ledger.

A launcher job runs ``slnn-train sweep.state=<file> sweep.chunk=<k>``, which lands in
``run_chunk``. With Hydra's basic launcher the job runs in the launching process, which has the
validated cells in memory already (``PREPARED``); other launchers read them from the chunk file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from slnn.core.outcomes import Outcome
from slnn.sweep.ledger import report_progress

# (state file, chunk) -> [(cfg, Config, hash)], filled by the orchestrator in its own process
PREPARED: dict[tuple[str, int], list] = {}


def run_cell(cfg, c, chash: str, state: dict) -> bool:
    """One cell. Never raises (but for an interrupt, or ``claims.CellTaken`` when another live
    process holds the cell): a failure is recorded in MLflow as a FAILED run and in the sweep's
    ledger, and the sweep goes on. False if it failed."""
    from slnn.app.schema import run_name
    from slnn.sweep.attempt import run_claimed
    from slnn.sweep.claims import CellTaken

    start = time.perf_counter()
    name = run_name(c)
    try:
        result = run_claimed(cfg, c, chash, state)
    except CellTaken as e:
        if not e.done:
            raise
        report_progress(state, name, Outcome.SKIPPED, time.perf_counter() - start)
        return True
    except KeyboardInterrupt:
        report_progress(state, name, Outcome.KILLED, time.perf_counter() - start)
        raise
    except Exception as e:  # noqa: BLE001 - recorded, counted, and the sweep goes on
        first = (str(e).splitlines() or [""])[0]
        print(f"slnn: {name} failed: {type(e).__name__}: {first}", file=sys.stderr, flush=True)
        report_progress(state, name, Outcome.FAILED, time.perf_counter() - start)
        return False
    report_progress(state, name, result.outcome, time.perf_counter() - start, result.train_seconds)
    return True


def _load_chunk(state_path: str, state: dict, chunk: int) -> list:
    prepared = PREPARED.pop((state_path, chunk), None)
    if prepared is not None:
        return prepared
    from slnn.app.schema import Config, to_config

    schema = OmegaConf.structured(Config)
    cells = json.loads((Path(state["dir"]) / "cells" / f"chunk_{chunk:04d}.json").read_text())
    out = []
    for cell in cells:
        cfg = OmegaConf.merge(schema, cell["config"])
        out.append((cfg, to_config(cfg), cell["hash"]))
    return out


def run_chunk(state_path: str, chunk: int) -> int:
    """A launcher job: train every cell of one chunk, in order. Returns how many failed."""
    # one BLAS thread per worker: the parallelism is across jobs (numpy may already be loaded,
    # so the environment variables set by the sweep are not enough on their own)
    from threadpoolctl import threadpool_limits

    from slnn.app import signals
    from slnn.sweep.claims import CellTaken

    signals.install()  # a worker sent SIGTERM closes its open run as KILLED
    state = json.loads(Path(state_path).read_text())
    failed = 0
    taken = []  # cells another live process holds: run (or skipped) once it lets them go
    with threadpool_limits(limits=1):
        for cfg, c, chash in _load_chunk(state_path, state, chunk):
            try:
                failed += not run_cell(cfg, c, chash, state)
            except CellTaken as e:
                taken.append((cfg, c, chash, e.holder))
        if taken:
            from slnn.sweep.claims import run_when_released

            failed += run_when_released(taken, state, run_cell)
    return failed
