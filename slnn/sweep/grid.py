"""A sweep's grid: every cell's overrides, composed and validated once, hashed once.

``compose_cells`` returns one ``Cell`` per grid point, or exits with one line naming the bad
cell before anything runs. Composition is done once per distinct choice of config groups; a
cell's plain value overrides are then applied to a copy, which keeps a 1,000-cell grid to about
a second. Each distinct data set is built once (a malformed CSV fails here, not in a job).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf, open_dict

from slnn.app.schema import Config, config_hash, to_config


@dataclass
class Cell:
    overrides: list[str]  # as the user would type them for this cell
    cfg: DictConfig  # composed and resolved
    config: Config  # validated
    hash: str  # slnn.config_hash
    data_digest: str  # slnn.data_digest: the data this cell reads
    rule_digest: str | None = None  # slnn.rule_digest: the user's rule file (update=custom)
    index: int = -1  # its place in the grid (set by the orchestrator)
    folder: str = ""  # its folder under the sweep's cells/ (set when the chunks are written)


def fail(msg: str) -> None:
    print(f"slnn-train: error: {msg}", file=sys.stderr)
    sys.exit(2)


def sweep_arguments(config: DictConfig, arguments: list[str] | None = None) -> list[str]:
    """The overrides a grid expands: ``hydra.sweeper.params`` then the command line's (a key given
    on the command line replaces the same key of the study's grid, as in Hydra's basic sweeper)."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    args = [f"{k}={v}" for k, v in params.items()]
    if arguments is None:
        arguments = list(OmegaConf.select(config, "hydra.overrides.task") or [])
    return args + list(arguments)


def enumerate_cells(config: DictConfig, arguments: list[str] | None = None) -> list[list[str]]:
    """Every cell's overrides, in the order Hydra's basic sweeper would launch them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from slnn._compat import split_sweep_arguments

    parsed = OverridesParser.create().parse_overrides(sweep_arguments(config, arguments))
    return split_sweep_arguments(parsed)


def compose_cells(config_name: str, cells: list[list[str]], searchpath=None) -> list[Cell]:
    """Compose, validate and hash each cell, and build each distinct data set once."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from slnn.app.cli import explain_hydra_error
    from slnn.app.keys import GroupChecker, check_key, unknown_key
    from slnn.app.run import build_dataset, check_custom_rule
    from slnn.check.loader import RuleLoadError
    from slnn.core.errors import ConfigError, DataError
    from slnn.core.rules import CUSTOM

    parser = OverridesParser.create()
    is_group = GroupChecker(searchpath)
    checked: set[str] = set()
    # compose sees a user's hydra.searchpath as the command line gave it
    extra = [f"hydra.searchpath=[{','.join(str(p) for p in searchpath)}]"] if searchpath else []
    bases: dict[tuple, DictConfig] = {}
    # update=custom,input update.fn=...: update.fn is the custom cells' file; the built-in cells
    # drop it (their runs are the same as without it, and can be reused by other sweeps)
    sweeps_custom = any(o.lstrip("+") == f"update={CUSTOM}" for cell in cells for o in cell)
    checked_rules: dict[tuple, str] = {}
    out = []
    for cell in cells:
        keys = [o.split("=", 1)[0] for o in cell]
        groups = tuple(o for o, k in zip(cell, keys) if is_group(k) and not k.lstrip("+~").startswith("hydra/"))
        values = [o for o, k in zip(cell, keys) if not is_group(k) and not k.startswith("hydra.")]
        where = f"(in the cell {' '.join(cell)}); no run was started"
        try:
            for k in [k for k in keys if k not in checked]:  # a typo fails here, naming the key meant
                check_key(k, is_group)
                checked.add(k)
            if groups not in bases:
                bases[groups] = compose(config_name, overrides=list(groups) + extra)
            cfg = copy.deepcopy(bases[groups])
            for ov in parser.parse_overrides(values):
                key = ov.key_or_group
                if ov.is_delete():
                    with open_dict(cfg):
                        OmegaConf.update(cfg, key, None)
                    continue
                if ov.is_add() or ov.is_force_add():
                    with open_dict(cfg):
                        OmegaConf.update(cfg, key, ov.value(), merge=True)
                else:
                    if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                        raise ConfigError(unknown_key(key, is_group.names()))
                    OmegaConf.update(cfg, key, ov.value(), merge=True)
            update = cfg["update"]  # not cfg.update: a DictConfig is a mapping, with .update()
            if sweeps_custom and update.rule != CUSTOM and update.fn is not None:
                update.fn = None
            c = to_config(cfg)
            data = build_dataset(c)  # cached per process: a bad CSV fails here, not in a job
            rule_digest = None
            if c.update.rule == CUSTOM:  # loaded and called on this cell's shapes, once each
                key = (c.update.fn, c.model.activation, data.x_train.shape[1], data.t_train.shape[1],
                       c.train.batch_size)
                if key not in checked_rules:
                    checked_rules[key] = check_custom_rule(c, data)
                rule_digest = checked_rules[key]
            out.append(Cell(list(cell), cfg, c, config_hash(cfg), data.digest, rule_digest))
        except RuleLoadError as e:
            fail(f"{e}; no run was started")
        except (ConfigError, DataError) as e:
            fail(f"{e} {where}")
        except Exception as e:
            fail(f"{explain_hydra_error(e)} {where}")
    return out


def study_question(study: str, searchpath=None) -> str:
    """The opening comment of a named study's file (the question it answers), without the
    commands that follow it; empty if there is no such file."""
    from slnn.app.schema import CONF_DIR

    from slnn.app.keys import searchpath_folders

    for folder in [CONF_DIR, *searchpath_folders(searchpath)]:
        path = folder / "experiment" / f"{study}.yaml"
        if path.is_file():
            lines = []
            for line in path.read_text().splitlines():
                if not line.startswith("#") or line.startswith("# @package"):
                    if lines:
                        break
                    continue
                text = line[1:].strip()
                if not text or text.startswith("slnn-train"):
                    if lines:
                        break
                    continue
                lines.append(text)
            return " ".join(lines)
    return ""
