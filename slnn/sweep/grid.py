"""A sweep's grid: every cell's overrides, composed and validated once, hashed once, each
distinct data set built once (``compose_cells``; a bad cell exits with one line before anything
runs). Hydra composes once per choice of config groups; a cell's values are then set on a plain
copy of that base and made into the schema's dataclasses (their checks run), the shortcut; a
cell it cannot vouch for takes the general path (copy, update, ``to_object``). Both make the
same config and hash (``tests/test_grid.py``)."""

from __future__ import annotations

import copy
import dataclasses
import sys

from omegaconf import DictConfig, OmegaConf, open_dict

from slnn.app.schema import Config, config_hash, to_config


@dataclasses.dataclass
class Cell:
    """One grid point, composed, validated and hashed once, in the launching process; its jobs
    get it as it is (pickled in the chunk file, ``container`` left out) and run its ``config``."""

    overrides: list[str]  # as the user would type them for this cell
    config: Config  # validated
    hash: str  # slnn.config_hash
    data_digest: str = ""  # slnn.data_digest: the data this cell reads
    # the resolved config as plain containers; sections a cell does not change may be shared
    # with other cells of its grid: read it, never change it in place
    container: dict | None = None
    rule_digest: str | None = None  # slnn.rule_digest: the user's rule file (update=custom)
    index: int = -1  # its place in the grid (set by the orchestrator)
    folder: str = ""  # its folder under the sweep's cells/ (set when the chunks are written)
    shortcut: bool = True  # made from plain containers, not on the general path (the tests ask)
    tags: dict = dataclasses.field(default_factory=dict)  # extra run tags (a search's stage, arm)
    trial: tuple | None = None  # a search's (Optuna study name, trial number) this cell runs


_UNSURE = object()  # _plan's answer where the shortcut cannot vouch for what to_object makes


def _plain_copy(x):
    if isinstance(x, dict):
        return {k: _plain_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain_copy(v) for v in x]
    return x


def _plan(template, plain):
    """How to make ``template``'s dataclasses from a container shaped like ``plain`` (the base's
    resolved container), worked out once per base: ``(class, sections, lists)`` for a dataclass
    (its fields that are dataclasses, with their plans, and those that hold lists or dicts, to be
    copied), None for a plain value; ``_UNSURE`` where this shortcut cannot be sure to match what
    ``OmegaConf.to_object`` makes."""
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        fields = dataclasses.fields(template)
        if (not isinstance(plain, dict) or any(not f.init for f in fields)
                or set(plain) != {f.name for f in fields}):
            return _UNSURE
        sections, lists = {}, []
        for f in fields:
            sub = _plan(getattr(template, f.name), plain[f.name])
            if sub is _UNSURE:
                return _UNSURE
            if sub is not None:
                sections[f.name] = sub
            elif f.name in plain and not isinstance(plain[f.name], (str, int, float, bool,
                                                                    type(None))):
                lists.append(f.name)
        return type(template), sections, lists
    if isinstance(plain, dict) and not (isinstance(template, dict) and not any(
            dataclasses.is_dataclass(v) for v in template.values())):
        return _UNSURE  # a dict where the template has a structured value (or none)
    return None


def _build(plan, plain: dict):
    """``plain`` as the dataclasses of ``plan`` (``_plan``'s), made the way ``OmegaConf.to_object``
    makes them: each one's ``__post_init__`` checks run, and each gets its own lists."""
    cls, sections, lists = plan
    kw = dict(plain)
    for name, sub in sections.items():
        kw[name] = _build(sub, plain[name])
    for name in lists:
        kw[name] = _plain_copy(plain[name])
    return cls(**kw)


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


MAX_CELLS = 100_000  # sweep.max_cells' default: a grid larger than this is refused up front


def _axis_length(ov) -> int:
    """How many values a sweep override gives, without making them: ``range()`` is counted
    from its bounds, so ``seed=range(1000000000)`` costs nothing here."""
    import math

    from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, RangeSweep

    value = ov.value()
    if isinstance(value, ChoiceSweep):
        return len(value.list)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if all(isinstance(v, int) for v in (start, stop, step)):
            return len(range(start, stop, step))
        return max(0, math.ceil((stop - start) / step)) if step else 0
    if isinstance(value, IntervalSweep):
        fail(f"{ov.input_line}: interval() is a range for samplers to draw from, not a grid; "
             f"give the values to try, e.g. {ov.key_or_group}=0.01,0.1,1 or "
             f"{ov.key_or_group}=range(1,10)")
    if isinstance(value, Glob):
        return 1  # config group options matching a pattern: a handful, counted when expanded
    return 1


def grid_size(config: DictConfig, arguments: list[str] | None = None) -> int:
    """The number of cells a grid has (the product of its axes' lengths, each key's last value
    winning as in Hydra's basic sweeper), counted before any is made. Exits with one line
    (code 2) for a grid over ``sweep.max_cells`` or a sweep syntax a grid cannot expand."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(sweep_arguments(config, arguments))
    except Exception as e:  # noqa: BLE001 - Hydra's own parser says what is wrong
        fail((str(e).strip().splitlines() or [type(e).__name__])[0][:300])
    axes = {ov.key_or_group: ov for ov in parsed if ov.is_sweep_override()}
    size = 1
    for ov in axes.values():
        size *= _axis_length(ov)
    limit = OmegaConf.select(config, "sweep.max_cells", default=MAX_CELLS)
    if isinstance(limit, int) and 0 < limit < size:
        biggest = max(axes.values(), key=_axis_length)
        fail(f"the grid has {size:,} cells, over the limit of {limit:,} (sweep.max_cells): "
             f"split it into smaller sweeps (each over a part of {biggest.key_or_group}'s "
             f"{_axis_length(biggest):,} values), or raise the limit with "
             f"sweep.max_cells={size}")
    return size


def enumerate_cells(config: DictConfig, arguments: list[str] | None = None) -> list[list[str]]:
    """Every cell's overrides, in the order Hydra's basic sweeper would launch them (after
    ``grid_size`` has checked there are not too many to make)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from slnn._compat import split_sweep_arguments

    grid_size(config, arguments)
    parsed = OverridesParser.create().parse_overrides(sweep_arguments(config, arguments))
    return split_sweep_arguments(parsed)


def _apply(cfg: DictConfig, overrides: list, is_group) -> None:
    """Apply parsed value overrides to a composed config, in place: the general path."""
    from slnn.app.keys import unknown_key
    from slnn.core.errors import ConfigError

    for ov in overrides:
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


class _Base:
    """One distinct choice of config groups, composed once; each cell's value overrides are then
    set on a plain copy of its resolved container, from a cache of each override's typed value
    (found, and converted by OmegaConf, once per (groups, override))."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.plain = OmegaConf.to_container(cfg, resolve=True)
        # interpolations would see the overridden values: those need the general path
        self.fast = self.plain == OmegaConf.to_container(cfg, resolve=False)
        try:  # the groups alone may not validate (data=csv wants a path): such cells compose
            self.plan = _plan(to_config(cfg), self.plain) if self.fast else None
        except Exception:  # noqa: BLE001 - each cell then passes or fails on the general path
            self.plan = _UNSURE
        if self.plan is _UNSURE:
            self.fast, self.plan = False, None
        self.typed: dict[str, tuple[list[str], object] | None] = {}
        self._scratch: DictConfig | None = None

    def value(self, text: str, ov, is_group) -> tuple[list[str], object] | None:
        """The typed value one override sets on the base alone; None if it does not validate
        alone (a bad value, or one that needs the cell's other values): the general path then
        gives the cell its usual error line."""
        if text not in self.typed:
            try:
                leaf = self._leaf(ov)
            except Exception:  # noqa: BLE001 - a bad value: the general path says so
                self.typed[text] = None
                self._scratch = None
            else:
                if leaf is not None:
                    self.typed[text] = leaf
        if text not in self.typed:
            try:
                cfg = copy.deepcopy(self.cfg)
                _apply(cfg, [ov], is_group)
                to_config(cfg)
                path = ov.key_or_group.split(".")
                node = OmegaConf.to_container(cfg, resolve=True)
                for p in path:
                    node = node[p]
                self.typed[text] = (path, node)
            except Exception:  # noqa: BLE001 - decided, with its message, by the general path
                self.typed[text] = None
        return self.typed[text]

    def _leaf(self, ov) -> tuple[list[str], object] | None:
        """A plain value for an existing leaf: set on a scratch copy of the base (OmegaConf
        converts and checks it), read back and put back, so the base is not copied per distinct
        value; None for anything else. The cell's own checks run when its dataclasses are made."""
        key = ov.key_or_group
        if ov.is_add() or ov.is_force_add() or ov.is_delete() or "${" in key:
            return None
        if self._scratch is None:
            self._scratch = copy.deepcopy(self.cfg)
        cfg = self._scratch
        old = OmegaConf.select(cfg, key, default="__missing__")
        if isinstance(old, str) and old == "__missing__" or OmegaConf.is_config(old):
            return None
        OmegaConf.update(cfg, key, ov.value(), merge=True)
        try:
            new = OmegaConf.select(cfg, key)
        finally:
            OmegaConf.update(cfg, key, old, merge=True)
        if OmegaConf.is_config(new) or isinstance(new, (dict, list)):
            return None
        return key.split("."), new

    def cell(self, values: list[str], parsed: list, is_group) -> tuple[dict, Config] | None:
        """``(container, config)`` for one cell, or None: the general path decides it."""
        if not self.fast or any("${" in v for v in values):
            return None
        paths = [ov.key_or_group for ov in parsed]
        for a in paths:  # an override inside another's subtree: order matters, so compose
            if sum(b == a or b.startswith(a + ".") for b in paths) > 1:
                return None
        # the base's container with the cell's values set: the sections a value changes are
        # copied, the others are the base's own (a Cell's container is never changed in place)
        plain = dict(self.plain)
        copied: set[tuple] = set()
        for text, ov in zip(values, parsed):
            typed = self.value(text, ov, is_group)
            if typed is None:
                return None
            path, value = typed
            node = plain
            for i, p in enumerate(path[:-1]):
                if not isinstance(node.get(p), dict):
                    return None
                if tuple(path[:i + 1]) not in copied:
                    node[p] = dict(node[p])
                    copied.add(tuple(path[:i + 1]))
                node = node[p]
            if path[-1] not in node or isinstance(node[path[-1]], dict):
                return None  # a new key or a whole section: not the base's shape
            node[path[-1]] = _plain_copy(value)
        try:
            return plain, _build(self.plan, plain)
        except Exception:  # noqa: BLE001 - the general path gives the error its usual line
            return None


def compose_cells(config_name: str, cells: list[list[str]], searchpath=None, *,
                  shortcut: bool = True) -> list[Cell]:
    """Compose, validate and hash each cell, and build each distinct data set once.
    ``shortcut=False`` takes the general path for every cell (the reference the tests and
    ``bench_sweep --grid`` compare with)."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from slnn.app.cli import explain_hydra_error
    from slnn.app.keys import GroupChecker, check_key
    from slnn.app.run import build_dataset, check_custom_rule
    from slnn.core.rulefile import RuleLoadError
    from slnn.core.errors import ConfigError, DataError
    from slnn.core.rules import CUSTOM

    parser = OverridesParser.create()
    parsed_once: dict[str, object] = {}

    def parse(texts: list[str]) -> list:
        for t in texts:
            if t not in parsed_once:
                parsed_once[t] = parser.parse_overrides([t])[0]
        return [parsed_once[t] for t in texts]

    is_group = GroupChecker(searchpath)
    checked: set[str] = set()
    # compose sees a user's hydra.searchpath as the command line gave it
    extra = [f"hydra.searchpath=[{','.join(str(p) for p in searchpath)}]"] if searchpath else []
    bases: dict[tuple, _Base] = {}
    digests: dict[tuple, str] = {}
    # update=custom,input update.fn=...: update.fn is the custom cells' file; the built-in cells
    # drop it (their runs are the same as without it, and can be reused by other sweeps)
    sweeps_custom = any(o.lstrip("+") == f"update={CUSTOM}" for cell in cells for o in cell)
    if sweeps_custom or any(o.lstrip("+~").startswith("update.fn") for cell in cells for o in cell):
        shortcut = False  # a user's rule: its path made absolute and its file checked, per cell
    checked_rules: dict[tuple, str] = {}
    out = []
    kind: dict[str, str] = {}  # override -> "group", "value" or "hydra" (a hydra.* key)

    def kind_of(o: str) -> str:
        if o not in kind:
            k = o.split("=", 1)[0]
            kind[o] = (("hydra" if k.lstrip("+~").startswith("hydra/") else "group")
                       if is_group(k) else ("hydra" if k.startswith("hydra.") else "value"))
        return kind[o]

    for cell in cells:
        keys = [o.split("=", 1)[0] for o in cell]
        groups = tuple(o for o in cell if kind_of(o) == "group")
        values = [o for o in cell if kind_of(o) == "value"]
        try:
            for k in [k for k in keys if k not in checked]:  # a typo fails here, naming the key meant
                check_key(k, is_group)
                checked.add(k)
            if groups not in bases:
                bases[groups] = _Base(compose(config_name, overrides=list(groups) + extra))
            base = bases[groups]
            parsed = parse(values)
            made = base.cell(values, parsed, is_group) if shortcut else None
            fast = made is not None
            if fast:
                plain, c = made
            else:  # the general path
                cfg = copy.deepcopy(base.cfg)
                _apply(cfg, parsed, is_group)
                update = cfg["update"]  # not cfg.update: a DictConfig is a mapping, with .update()
                if sweeps_custom and update.rule != CUSTOM and update.fn is not None:
                    update.fn = None
                c = to_config(cfg)  # a relative update.fn is made absolute in cfg as well
                plain = OmegaConf.to_container(cfg, resolve=True)
            # each distinct data set once (a bad CSV fails here, not in a job); what tells them
            # apart is build_dataset's own key, and for the cells of a grid the data section and
            # the seed that draws the split when data.seed is null
            dkey = (repr(plain["data"]), plain["seed"] if c.data.seed is None else None)
            if dkey not in digests:
                digests[dkey] = build_dataset(c).digest
            rule_digest = None
            if c.update.rule == CUSTOM:  # loaded and called on this cell's shapes, once each
                data = build_dataset(c)  # cached per process
                key = (c.update.fn, c.model.activation, data.x_train.shape[1],
                       data.t_train.shape[1], c.train.batch_size)
                if key not in checked_rules:
                    checked_rules[key] = check_custom_rule(c, data)
                rule_digest = checked_rules[key]
            out.append(Cell(list(cell), c, config_hash(plain), digests[dkey], plain,
                            rule_digest=rule_digest, shortcut=fast))
        except RuleLoadError as e:
            fail(f"{e}; no run was started")
        except (ConfigError, DataError) as e:
            fail(f"{e} (in the cell {' '.join(cell)}); no run was started")
        except Exception as e:
            fail(f"{explain_hydra_error(e)} (in the cell {' '.join(cell)}); no run was started")
    return out


def study_question(study: str, searchpath=None) -> str:
    """The opening comment of a named study's file (the question it answers), without the
    commands that follow it; empty if there is no such file."""
    from slnn.app.keys import searchpath_folders
    from slnn.app.schema import conf_group

    theirs = [folder / "experiment" for folder in searchpath_folders(searchpath)]
    for path in [group / f"{study}.yaml" for group in [conf_group("experiment"), *theirs]]:
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
