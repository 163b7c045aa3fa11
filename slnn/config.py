"""Typed config schemas, registered in Hydra's ConfigStore; the values live in ``conf/``.

Range checks run in ``__post_init__``, which OmegaConf calls when the composed config is turned
into these dataclasses (``to_object``), so a bad value fails at start-up with one sentence that
names the key and the fix, before any run starts.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from slnn.activations import ACTIVATIONS
from slnn.data import DATASETS, GATES
from slnn.rules import UPDATE_RULES
from slnn.trainer import BACKENDS, INITS, SAMPLINGS


class ConfigError(ValueError):
    """A config value is out of range or unknown; the message says which and how to fix it."""


def _choice(key: str, value: Any, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not valid: choose one of {sorted(valid)}")


def _positive(key: str, value, example, allow_zero=False) -> None:
    bad = value is None or not math.isfinite(value) or (value < 0 if allow_zero else value <= 0)
    if bad:
        need = "finite and >= 0" if allow_zero else "finite and > 0"
        raise ConfigError(f"{key} must be {need}, got {value}: set e.g. {key}={example}")


@dataclass
class DataConfig:
    name: str = "iris"
    split: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.25])
    standardize: bool = True
    guide_scaling: bool = False
    seed: Optional[int] = 0  # None: the run's own seed shuffles the split
    path: Optional[str] = None
    target: Optional[str] = None
    gate: str = "xor"
    n_samples: int = 300
    n_features: int = 2
    n_classes: int = 3
    separation: float = 3.0

    def __post_init__(self):
        _choice("data.name", self.name, DATASETS)
        _choice("data.gate", self.gate, GATES)
        if len(self.split) != 3 or any((not math.isfinite(f)) or f < 0 for f in self.split):
            raise ConfigError(
                f"data.split={list(self.split)} must be 3 fractions >= 0 (train, validation, test): "
                "set e.g. data.split=[0.5,0.25,0.25]")
        if abs(sum(self.split) - 1.0) > 1e-6:
            raise ConfigError(
                f"data.split={list(self.split)} sums to {sum(self.split):g}, not 1: "
                "set e.g. data.split=[0.5,0.25,0.25]")
        if self.split[0] <= 0:
            raise ConfigError("data.split has no training fraction: set e.g. data.split=[0.5,0.25,0.25]")
        if self.standardize and self.guide_scaling:
            raise ConfigError("data.standardize and data.guide_scaling are both true: "
                              "pick one, e.g. data.standardize=false")
        if self.name == "csv" and not (self.path and self.target):
            raise ConfigError("data=csv needs a file and its label column: "
                              "set data.path=/path/to/file.csv data.target=<column>")
        for key in ("n_samples", "n_features"):
            _positive(f"data.{key}", getattr(self, key), 100 if key == "n_samples" else 2)
        if self.n_classes < 2:
            raise ConfigError(f"data.n_classes must be >= 2, got {self.n_classes}: set e.g. data.n_classes=3")
        _positive("data.separation", self.separation, 3.0, allow_zero=True)


@dataclass
class ModelConfig:
    activation: str = "sigmoid"
    init: str = "uniform"
    init_scale: float = 0.5

    def __post_init__(self):
        _choice("model.activation", self.activation, ACTIVATIONS)
        _choice("model.init", self.init, INITS)
        _positive("model.init_scale", self.init_scale, 0.5, allow_zero=True)


@dataclass
class UpdateConfig:
    rule: str = "input"

    def __post_init__(self):
        _choice("update.rule", self.rule, UPDATE_RULES)


@dataclass
class OptimConfig:
    lr: float = 0.1

    def __post_init__(self):
        _positive("optim.lr", self.lr, 0.1)


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 1
    sampling: str = "shuffle"
    steps_per_epoch: Optional[int] = None  # None: one pass over the training set
    patience: Optional[int] = None  # None: no early stopping
    target_val_loss: Optional[float] = None  # the guide stops at 0.1
    divergence_loss: float = 1.0e4
    snapshots: int = 5
    backend: str = "auto"

    def __post_init__(self):
        _positive("train.epochs", self.epochs, 100)
        _positive("train.batch_size", self.batch_size, 1)
        _choice("train.sampling", self.sampling, SAMPLINGS)
        _choice("train.backend", self.backend, BACKENDS)
        if self.steps_per_epoch is not None:
            _positive("train.steps_per_epoch", self.steps_per_epoch, 10)
        if self.patience is not None:
            _positive("train.patience", self.patience, 10)
        if self.target_val_loss is not None:
            _positive("train.target_val_loss", self.target_val_loss, 0.1)
        _positive("train.divergence_loss", self.divergence_loss, 1e4)
        _positive("train.snapshots", self.snapshots, 5, allow_zero=True)


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI, if set, wins
    experiment: str = "slnn"
    plot: bool = True  # a learning-curve PNG per run; turn off for big sweeps
    max_metric_points: int = 12  # per metric in MLflow; the history artifact keeps every epoch
    log_model: bool = True  # the network as an MLflow pyfunc model under model/

    def __post_init__(self):
        if not self.experiment:
            raise ConfigError("tracking.experiment is empty: set e.g. tracking.experiment=slnn")
        if self.max_metric_points < 2:  # the first and the last epoch, at least
            raise ConfigError(f"tracking.max_metric_points must be >= 2, got {self.max_metric_points}: "
                              "set e.g. tracking.max_metric_points=50")


@dataclass
class SweepConfig:
    force: bool = False  # rerun cells that already have a FINISHED run with the same config hash
    report: bool = True  # write the sweep's report when a multirun ends
    register: bool = False  # register the sweep's best run in the Model Registry (alias "best")
    # set by the slnn sweeper for its jobs, not by users:
    state: Optional[str] = None  # the sweep's state file
    chunk: Optional[int] = None  # which chunk of cells this job trains


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 0

    def __post_init__(self):
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}: set e.g. seed=0")


def register_configs() -> None:
    ConfigStore.instance().store(name="slnn_schema", node=Config)


def to_config(cfg: DictConfig) -> Config:
    """Validate a composed config: type errors and range checks become one ``ConfigError`` line."""
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
    return {k: v for k, v in d.items() if k not in _NOT_IDENTITY}


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
    return f"{cfg.update.rule}-{cfg.model.activation}-lr{cfg.optim.lr:g}-s{cfg.seed}-{cfg.data.name}"
