"""A sweep's state: what its launcher decided when it prepared the sweep, which every job reads
(``slnn_sweep.json`` in the sweep's folder, the store's password masked)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SweepState:
    dir: str  # the sweep's folder (its own, for a second sweep of the same grid)
    uri: str = ""  # the tracking store (in the file: masked; a job puts the real one back)
    experiment_id: str = ""
    parent_run_id: str = ""
    total: int = 0  # cells in the grid
    n_skipped: int = 0  # cells already done before this session
    start: float = 0.0  # unix seconds
    study: str = "sweep"
    label: str = ""  # the sweep's name in its lines and the UI
    report: bool = True
    force: bool = False
    reuse_other_code: bool = False
    register: bool = False
    log_best_model: bool = True
    rule_digests: dict = field(default_factory=dict)  # {rule file: sha256} the jobs must run
    report_out: str | None = None
    report_grid: str | None = None  # sweep.report_grid, absolute (a tuned study's report)
    store_file: list | None = None  # [device, inode] of a SQLite store's file
    launcher: str | None = None  # the launching process's owner (``liveness.process_owner``)
    shared: bool = False  # the jobs take their cells from one list
    taken: str | None = None  # that list's marks folder, under jobs/
    sweep_hash: str = ""  # what the parent run is found by (``slnn.sweep_hash``)
    # a search's (``hydra.sweeper.search``): its journal folder, settings and grid axes, so a
    # job can report its run's curve to its trial's pruner (``slnn.sweep.tune``)
    search: dict | None = None

    @property
    def folder(self) -> Path:
        return Path(self.dir)

    @property
    def ledger(self) -> Path:
        return Path(self.dir) / "progress.jsonl"

    def save(self, path: Path, masked_uri: str) -> None:
        path.write_text(json.dumps({**dataclasses.asdict(self), "uri": masked_uri}))

    @classmethod
    def load(cls, path: str | Path) -> "SweepState":
        return cls(**json.loads(Path(path).read_text()))
