"""ConfigStore entry for ``hydra/sweeper=slnn`` (the default sweeper of ``slnn-train -m``)."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class SlnnSweeperConf:
    _target_: str = "hydra_plugins.slnn_sweeper.slnn_sweeper.SlnnSweeper"
    # the grid, as for Hydra's basic sweeper: key -> "a,b,c" or "range(5)"
    params: Optional[Dict[str, Any]] = field(default_factory=dict)
    # how many launcher jobs the cells are dealt into; null: 4 per CPU (at most one per cell)
    chunks: Optional[int] = None
    # an adaptive search crossed with the grid (slnn.sweep.tune): space, trials, batch,
    # tune_seeds, confirm_seeds, sampler, pruner, check_every, seed; empty: a grid sweep
    search: Optional[Dict[str, Any]] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="slnn", node=SlnnSweeperConf,
                             provider="slnn")
