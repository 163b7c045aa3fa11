"""ConfigStore entry for ``hydra/sweeper=slnn`` (the default sweeper of ``slnn-train -m``)."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class SlnnSearchConf:
    """``hydra.sweeper.search``: tune, then confirm (slnn.sweep.tune); an empty space: a grid."""

    # key -> Hydra's Optuna sweeper syntax, e.g. optim.lr: tag(log, interval(1e-4, 10))
    space: Dict[str, Any] = field(default_factory=dict)
    trials: int = 16  # per arm, the same for every arm
    batch: int = 4  # trials asked of each arm at once
    tune_seeds: Any = "range(100,103)"  # the seeds stage 1 tunes on
    confirm_seeds: Any = "range(20)"  # the seeds stage 2 confirms on, disjoint from those
    sampler: str = "tpe"  # or random
    pruner: str = "median"  # or halving, none
    check_every: int = 10  # epochs between a run's reports to the pruner
    monitor: str = "val_error"  # what the pruner watches, or val_loss
    seed: int = 0  # the sampler's


@dataclass
class SlnnSweeperConf:
    _target_: str = "hydra_plugins.slnn_sweeper.slnn_sweeper.SlnnSweeper"
    # the grid, as for Hydra's basic sweeper: key -> "a,b,c" or "range(5)"
    params: Optional[Dict[str, Any]] = field(default_factory=dict)
    # how many launcher jobs the cells are dealt into; null: 4 per CPU (at most one per cell)
    chunks: Optional[int] = None
    # an adaptive search crossed with the grid (slnn.sweep.tune); no space: a grid sweep
    search: SlnnSearchConf = field(default_factory=SlnnSearchConf)


ConfigStore.instance().store(group="hydra/sweeper", name="slnn", node=SlnnSweeperConf,
                             provider="slnn")
