"""Tune, then confirm: an adaptive search (Optuna) over a study's continuous keys, crossed with
its grid axes. Each arm (one choice of every grid axis) gets its own Optuna study and the same
trial budget; a trial is a value's mean validation error over the tuning seeds, and the best
value of each arm is then run again on the confirmation seeds, which the tuning never saw.
docs/sweeps.md explains it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from slnn.core.errors import ConfigError

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "halving", "none")
# What a run reports to the pruner every check_every epochs. The trial's own score is a
# validation error, so the pruner watches that by default: watching the loss pruned the guide's
# rule at the rates where its loss grows while its error falls (benchmarks/README.md).
MONITORS = ("val_error", "val_loss")


@dataclass(frozen=True)
class SearchSpec:
    """``hydra.sweeper.search``, checked: what is searched, how, and on which seeds."""

    space: dict  # key -> optuna distribution
    trials: int  # per arm, the same for every arm
    batch: int  # trials asked of each arm at once (run in parallel)
    tune_seeds: tuple[int, ...]
    confirm_seeds: tuple[int, ...]
    sampler: str = "tpe"
    pruner: str = "median"
    check_every: int = 10  # epochs between a run's reports to the pruner
    seed: int = 0  # the sampler's seed
    monitor: str = "val_error"  # what a run reports to the pruner at each check

    def key(self) -> str:
        """What makes two searches the same one (with the arms' cells, ``study_name``)."""
        space = ";".join(f"{k}={v!r}" for k, v in sorted(self.space.items()))
        return (f"{space}|{self.trials}|{self.tune_seeds}|{self.sampler}|{self.pruner}|"
                f"{self.check_every}|{self.seed}|{self.monitor}")


def _seeds(value, what: str) -> tuple[int, ...]:
    """``range(a, b)``, ``[1, 2]``, ``1,2`` or one int, as a tuple of seeds >= 0."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    if isinstance(value, int) and not isinstance(value, bool):
        seeds = [value]
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        seeds = list(value)
    else:
        try:
            parsed = OverridesParser.create().parse_override(f"seed={value}").value()
        except Exception:  # noqa: BLE001 - Hydra's grammar error: said in one line below
            parsed = None
        if isinstance(parsed, RangeSweep):
            seeds = list(range(int(parsed.start), int(parsed.stop), int(parsed.step or 1)))
        elif isinstance(parsed, ChoiceSweep):
            seeds = list(parsed.list)
        elif isinstance(parsed, int):
            seeds = [parsed]
        elif isinstance(parsed, list):
            seeds = list(parsed)
        else:
            seeds = [None]
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ConfigError(f"hydra.sweeper.search.{what}={value!r} is not a list of seeds: give "
                          f"e.g. 'range(100,103)' or [100,101,102] (whole numbers >= 0)")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"hydra.sweeper.search.{what} repeats a seed ({value!r}): each seed once")
    return tuple(seeds)


def distribution(key: str, text: str):
    """An Optuna distribution from Hydra's sweep syntax, as the Optuna sweeper reads it:
    ``interval(a, b)``, ``tag(log, interval(a, b))``, ``int(interval(a, b))``, ``choice(...)``,
    ``range(a, b)``."""
    import optuna
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    usage = (f"give it as Hydra's Optuna sweeper does, e.g. {key}: 'tag(log, interval(1e-4, 10))'"
             f" or {key}: 'choice(0.01, 0.1)'")
    try:
        value = OverridesParser.create().parse_override(f"{key}={text}").value()
    except Exception:  # noqa: BLE001 - the grammar's own message is many lines
        raise ConfigError(f"hydra.sweeper.search.space.{key}={text!r} does not parse: {usage}") from None
    if isinstance(value, IntervalSweep):
        lo, hi, log = value.start, value.end, "log" in value.tags
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or (log and lo <= 0):
            raise ConfigError(f"hydra.sweeper.search.space.{key}={text!r}: the interval needs "
                              f"low < high{' and low > 0 on a log scale' if log else ''}")
        if isinstance(lo, int) and isinstance(hi, int):
            return optuna.distributions.IntDistribution(lo, hi, log=log)
        return optuna.distributions.FloatDistribution(float(lo), float(hi), log=log)
    if isinstance(value, RangeSweep):
        return optuna.distributions.CategoricalDistribution(
            list(range(int(value.start), int(value.stop), int(value.step or 1))))
    if isinstance(value, ChoiceSweep) and value.list:
        return optuna.distributions.CategoricalDistribution(list(value.list))
    raise ConfigError(f"hydra.sweeper.search.space.{key}={text!r} is not a range to search: {usage}")


def parse_search(node, grid_keys) -> SearchSpec:
    """``hydra.sweeper.search`` as a ``SearchSpec``; a one-line ``ConfigError`` for anything
    wrong. ``grid_keys``: the study's grid axes (``hydra.sweeper.params``), which the search is
    crossed with and so may not also search, nor sweep ``seed``."""
    node = dict(node or {})
    known = {"space", "trials", "batch", "tune_seeds", "confirm_seeds", "sampler", "pruner",
             "check_every", "seed", "monitor"}
    extra = sorted(set(node) - known)
    if extra:
        raise ConfigError(f"hydra.sweeper.search.{extra[0]} is not a search setting: use "
                          f"{', '.join(sorted(known))}")
    space = dict(node.get("space") or {})
    if not space:
        raise ConfigError("hydra.sweeper.search.space is empty: name what to search, e.g. "
                          "optim.lr: 'tag(log, interval(1e-4, 10))'")
    both = sorted(set(space) & set(grid_keys))
    if both:
        raise ConfigError(f"{both[0]} is both a grid axis (hydra.sweeper.params) and searched "
                          "(hydra.sweeper.search.space): keep it in one of them")
    if "seed" in grid_keys or "seed" in space:
        raise ConfigError("a search takes its seeds from hydra.sweeper.search.tune_seeds and "
                          "confirm_seeds: remove seed from hydra.sweeper.params")
    dists = {k: distribution(k, str(v)) for k, v in space.items()}

    def whole(name, default, low=1):
        v = node.get(name, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ConfigError(f"hydra.sweeper.search.{name}={v!r} must be a whole number >= {low}")
        return v

    tune = _seeds(node.get("tune_seeds", "range(100,103)"), "tune_seeds")
    confirm = _seeds(node.get("confirm_seeds", "range(20)"), "confirm_seeds")
    shared = sorted(set(tune) & set(confirm))
    if shared:
        raise ConfigError(f"seed {shared[0]} is both a tuning and a confirmation seed: the "
                          "confirmation must run on seeds the tuning never saw (make "
                          "hydra.sweeper.search.tune_seeds and confirm_seeds disjoint)")
    sampler, pruner = node.get("sampler", "tpe"), node.get("pruner", "median")
    if sampler not in SAMPLERS:
        raise ConfigError(f"hydra.sweeper.search.sampler={sampler!r}: choose one of {list(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise ConfigError(f"hydra.sweeper.search.pruner={pruner!r}: choose one of {list(PRUNERS)}")
    monitor = node.get("monitor", "val_error")
    if monitor not in MONITORS:
        raise ConfigError(f"hydra.sweeper.search.monitor={monitor!r}: choose one of {list(MONITORS)}")
    trials = whole("trials", 16)
    return SearchSpec(space=dists, trials=trials, batch=min(whole("batch", 4), trials),
                      tune_seeds=tune, confirm_seeds=confirm, sampler=sampler, pruner=pruner,
                      check_every=whole("check_every", 10), seed=whole("seed", 0, low=0),
                      monitor=monitor)


def storage_path(uri: str, folder: Path) -> Path:
    """Where a search's Optuna journal lives: next to a SQLite store (``<store>.optuna/``), so
    that it survives the process and goes where the runs go; for a server, in ``folder``."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    db = parsed.path if parsed.scheme == "sqlite" and parsed.path not in ("", "/:memory:") else None
    base = Path(f"{db}.optuna") if db else Path(folder)
    base.mkdir(parents=True, exist_ok=True)
    return base


def study_name(sweep_hash: str, arm: str) -> str:
    """One Optuna study per arm of one search (``sweep_hash``: its cells, code and data)."""
    return f"slnn-{sweep_hash}-{hashlib.sha256(arm.encode()).hexdigest()[:12]}"


def journal(folder: Path):
    """The Optuna storage of a search: a journal file, which processes on one machine or on a
    shared file system append to under Optuna's own file lock."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return JournalStorage(JournalFileBackend(str(Path(folder) / "search.journal")))


def open_study(storage, name: str, spec: SearchSpec):
    """The arm's Optuna study (created, or loaded to resume), with the search's sampler and
    pruner (Optuna stores the trials, not these)."""
    import optuna

    def sampler(seed: int):
        return (optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, spec.trials))
                if spec.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed))

    pruner = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=spec.batch,
                                                            n_warmup_steps=spec.check_every),
              "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
                  min_resource=spec.check_every),
              "none": optuna.pruners.NopPruner}[spec.pruner]()
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize",
                                sampler=sampler(spec.seed), pruner=pruner, load_if_exists=True)
    asked = len(study.get_trials(deepcopy=False))
    if asked:  # a resumed study: its sampler must not draw the first session's points again
        study.sampler = sampler(spec.seed + asked)
    return study


def trial_in(storage, name: str, number: int, spec: SearchSpec):
    """Trial ``number`` of an arm's study, as a job reports to it (``report``, ``should_prune``)."""
    import optuna

    study = open_study(storage, name, spec)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(name), number)
    return optuna.trial.Trial(study, trial_id)
