"""The command line's config: the core's typed specs plus where and how runs are recorded.

``Config`` is a ``slnn.core.trainer.RunSpec`` with the data set's ``DataSpec`` and the tracking
and sweep settings added, stored in Hydra's ConfigStore as ``slnn_schema`` and filled by the YAML
in ``conf/`` (``slnn.conf`` once installed). The specs' ``__post_init__`` checks each value once,
when the composed config becomes these dataclasses (``to_config``); the trainer takes the
``Config`` itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from slnn.core.data import DATASETS, DataSpec
from slnn.core.errors import ConfigError
from slnn.core.rules import CUSTOM, UPDATE_RULES
from slnn.core.trainer import RunSpec

# the YAML config groups and the named studies: the repository's conf/ and experiments/, which
# setuptools maps to slnn.conf and slnn.conf.experiment (pyproject.toml's package-dir); Hydra
# reads them through CONF_PATH in any install (hydra_plugins/slnn_sweeper/package_config.py)
CONF_PACKAGE = "slnn.conf"
CONF_PATH = f"pkg://{CONF_PACKAGE}"


def conf_group(group: str):
    """The presets of a config group of slnn's own (``data``, ``experiment``, ...), as an
    ``importlib.resources`` folder, wherever the install put it."""
    return resources.files(f"{CONF_PACKAGE}.{group}")


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI, if set, wins
    experiment: str = "slnn"
    # a learning-curve PNG (learning_curves.png); null: every single run, not a sweep's cells
    # (MLflow charts their every epoch, and the sweep's report plots them side by side)
    plot: Optional[bool] = None
    max_metric_points: int = 1000  # per metric in MLflow (more epochs: thinned, extremes kept)
    # the network as an MLflow LoggedModel; null: every single run, and a sweep's best run
    log_model: Optional[bool] = None

    def __post_init__(self):
        if not self.experiment:
            raise ConfigError("tracking.experiment is empty: set e.g. tracking.experiment=slnn")
        if len(self.experiment) > MAX_NAME:  # its artifact folder is named after it (255 bytes)
            raise ConfigError(f"tracking.experiment is {len(self.experiment)} characters long, "
                              f"over {MAX_NAME} (its artifact folder is named after it): choose a "
                              f"shorter name, e.g. tracking.experiment={self.experiment[:20]}")
        if self.max_metric_points < 4:  # the first, the last, the minimum and the maximum
            raise ConfigError(f"tracking.max_metric_points must be >= 4, got {self.max_metric_points}: "
                              "set e.g. tracking.max_metric_points=1000")


@dataclass
class SweepConfig:
    force: bool = False  # rerun cells that already have a FINISHED run with the same config hash
    # reuse a cell's FINISHED run even if other code (another slnn.code_hash) made it
    reuse_other_code: bool = False
    report: bool = True  # write the sweep's report when a multirun ends
    register: bool = False  # register the sweep's best run in the Model Registry (alias "best")
    max_cells: int = 100_000  # a larger grid is refused before any cell is made (split it)
    # a tuned study's report also compares each arm with this grid report's cell (a folder,
    # as slnn-report --grid takes); left out, with a note, when the folder is not there
    report_grid: Optional[str] = None
    # set by the slnn sweeper for its jobs, not by users:
    state: Optional[str] = None  # the sweep's state file
    chunk: Optional[int] = None  # this job's number (its chunk of cells, unless they share one list)


@dataclass
class Config(RunSpec):
    """What ``slnn-train`` runs: the trainer's ``RunSpec`` plus data, tracking, sweep and seed."""

    data: DataSpec = field(default_factory=DataSpec)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 0

    def __post_init__(self):
        _bounded_ints(self)
        super().__post_init__()
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}: set e.g. seed=0")


MAX_NAME = 200  # characters in an experiment name
MAX_INT = 2**31 - 1  # any whole-number setting: beyond it NumPy's int32/float paths fail or hang


def _bounded_ints(spec, prefix: str = "") -> None:
    """One line for a whole-number setting too large to run (``train.epochs=99999999999999999999``
    reached NumPy as a Python int it cannot convert, a traceback)."""
    import dataclasses

    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name, None)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _bounded_ints(value, key + ".")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise ConfigError(f"{key}={value} is too large (at most {MAX_INT:,}): give a smaller "
                              "value, or split the work into several runs")


def register_configs() -> None:
    """The schema, plus one ``update`` option per registered rule and one ``data`` option per
    registered data set that has no YAML preset: a new rule or data set needs no config file."""
    from slnn.app.choices import choices

    # ${slnn_choices:rules} in --help: the registered names, never a hand-kept list
    OmegaConf.register_new_resolver("slnn_choices", choices, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="slnn_schema", node=Config)
    for name in UPDATE_RULES:
        cs.store(group="update", name=name, node={"rule": name}, provider="slnn")
    # update=custom update.fn=FILE.py:FUNCTION: the user's own step (slnn.core.custom)
    cs.store(group="update", name=CUSTOM, node={"rule": CUSTOM}, provider="slnn")
    for name in DATASETS:
        if not conf_group("data").joinpath(f"{name}.yaml").is_file():
            cs.store(group="data", name=name, node={"name": name}, provider="slnn")


def absolute_rule_fn(cfg: DictConfig) -> None:
    """``update.fn`` made absolute in ``cfg`` itself, against the folder the command was run from:
    the config hash, the run's params and a sweep's workers (which may run elsewhere) then all
    name the same file."""
    from slnn.core.custom import absolute_spec
    from slnn.core.rulefile import RuleLoadError

    fn = OmegaConf.select(cfg, "update.fn", default=None)
    if fn:
        try:
            OmegaConf.update(cfg, "update.fn", absolute_spec(str(fn)))
        except RuleLoadError as e:
            raise ConfigError(f"update.fn={fn}: {str(e).split(': ', 1)[-1]}") from None


def to_config(cfg: DictConfig) -> Config:
    """Validate a composed config: type errors and range checks become one ``ConfigError`` line.
    A relative ``update.fn`` becomes absolute in ``cfg`` too (``absolute_rule_fn``)."""
    absolute_rule_fn(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as e:  # omegaconf's validation errors carry a multi-line context
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        cause = e.__cause__ if isinstance(e.__cause__, ConfigError) else None
        raise ConfigError(str(cause) if cause else msg) from None


# keys that say where and how a run is recorded, not what it computes
_NOT_IDENTITY = ("tracking", "sweep", "hydra")


def identity(cfg: DictConfig | dict) -> dict:
    """The resolved config minus the keys that do not change what a run computes."""
    d = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    out = {k: v for k, v in d.items() if k not in _NOT_IDENTITY}
    if isinstance(out.get("update"), dict) and out["update"].get("fn") is None:
        # a built-in rule: no update.fn, so its hash (and params) are what they were before
        # update.fn existed
        out["update"] = {k: v for k, v in out["update"].items() if k != "fn"}
    return out


def config_hash(cfg: DictConfig | dict) -> str:
    """A stable hash of what a run computes: sweeps use it to find cells already done."""
    blob = json.dumps(identity(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """``{"optim": {"lr": 0.1}} -> {"optim.lr": "0.1"}``: MLflow params with dotted keys."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else str(v)
    return out


def run_name(cfg: Config) -> str:
    """A name a person can read, e.g. ``kronecker-sigmoid-lr0.1-s3-iris_petal``."""
    rule = cfg.update.rule
    if rule == CUSTOM and cfg.update.fn:  # custom-my_step-...: which function, not only "custom"
        rule = f"{rule}-{str(cfg.update.fn).rpartition(':')[2]}"
    return f"{rule}-{cfg.model.activation}-lr{cfg.optim.lr:g}-s{cfg.seed}-{cfg.data.name}"


# importing the schema is enough to compose slnn's config with Hydra (the command line, the
# sweeper, tests and notebooks all rely on it)
register_configs()
