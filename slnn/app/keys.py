"""Which keys and config groups a user can name, and the one-line error for any other.

Every key of the schema can be set as ``key=value`` (``+key=``/``++key=`` for those same keys
only): slnn has no free-form keys, so a typo is an error wherever it is typed, naming the nearest
valid key. Extension points are groups: ``+experiment=<name>`` and presets of ``data=``,
``model=``, ``train=``, ``update=``, also from a ``hydra.searchpath`` folder. ``hydra.*`` is Hydra's.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from pathlib import Path

from slnn.core.errors import ConfigError, did_you_mean


# set by slnn's sweeper for its launcher jobs (``slnn.sweep.worker``): not shown in --help or
# tab completion, never suggested, refused on the command line (``slnn.app.cli``)
INTERNAL_KEYS = ("sweep.state", "sweep.chunk")


def override_key(arg: str) -> str:
    """The key of a command-line override (``+``, ``++`` and ``~`` dropped): ``optim.lr`` of
    ``optim.lr=0.1``; ``""`` for a flag."""
    if arg.startswith("-"):
        return ""
    return arg.split("=", 1)[0].lstrip("+~").strip()


@functools.lru_cache(maxsize=1)
def config_keys() -> tuple[str, ...]:
    """Every key of the schema, sections included: ``data``, ``data.split``, ..., ``seed``."""
    from slnn.app.schema import Config

    out: list[str] = []

    def walk(cls, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            out.append(key)
            sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
            if isinstance(sub, type) and dataclasses.is_dataclass(sub):
                walk(sub, key + ".")

    walk(Config, "")
    return tuple(out)


def is_hydra_key(key: str) -> bool:
    """``hydra.*`` keys and ``hydra/...`` groups: Hydra's own, checked by Hydra."""
    key = key.lstrip("+~")
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def nearest(key: str, candidates) -> str:
    """``" did you mean X?"``: the nearest candidate to the whole key, else to its last part
    (``lr`` -> ``optim.lr``, ``epoch`` -> ``train.epochs``), else ``""``."""
    candidates = list(candidates)
    hint = did_you_mean(key, candidates)
    if hint:
        return hint
    by_leaf: dict[str, str] = {}
    for c in candidates:
        by_leaf.setdefault(c.rsplit(".", 1)[-1], c)
    near = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(by_leaf), n=1)
    return f" did you mean {by_leaf[near[0]]}?" if near else ""


def unknown_key(key: str, groups=()) -> str:
    """The one-line message for a key that is neither a config key nor a config group."""
    what = "a config key" if "." in key else "a config key or group"
    users = [k for k in config_keys() if k not in INTERNAL_KEYS]
    hint = nearest(key, [*users, *groups]) or " slnn-train --help lists every one"
    return f"{key} is not {what}:{hint}"


def searchpath_folders(searchpath) -> list:
    """The folders of ``hydra.searchpath`` entries (``file://dir`` or ``pkg://module/dir``):
    paths, or ``importlib.resources`` folders for packages."""
    import importlib.resources

    out = []
    for entry in searchpath or []:
        entry = str(entry)
        if entry.startswith("file://"):
            out.append(Path(entry[len("file://"):]))
        elif entry.startswith("pkg://"):
            module, _, sub = entry[len("pkg://"):].partition("/")
            try:
                base = importlib.resources.files(module.replace("/", "."))
                out.append(base.joinpath(sub) if sub else base)
            except (ModuleNotFoundError, TypeError):
                continue
    return out


class GroupChecker:
    """``is_group(key)``: does ``key`` name a config group: one of Hydra's known groups (slnn's
    own, and those slnn stores from its registries), or a folder of a ``hydra.searchpath`` entry
    (a user's own studies and presets)? Needs Hydra initialized on slnn's config
    (``initialize_config_module(slnn.app.schema.CONF_PACKAGE)``)."""

    def __init__(self, searchpath=None):
        from hydra.core.global_hydra import GlobalHydra

        self.loader = GlobalHydra.instance().config_loader()
        self.folders = searchpath_folders(searchpath)
        self.known: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        key = key.lstrip("+~")
        if key.startswith("hydra/"):
            return True
        if "." in key:
            return False
        if key not in self.known:
            self.known[key] = bool(self.loader.get_group_options(key)) or any(
                (f / key).is_dir() for f in self.folders)
        return self.known[key]

    def names(self) -> list[str]:
        """The group names a user can choose from (not Hydra's own)."""
        groups = {g for g in self.loader.list_groups("") if g != "hydra"}
        groups |= {p.name for f in self.folders if f.is_dir() for p in f.iterdir() if p.is_dir()}
        return sorted(groups)


def check_key(key: str, is_group: GroupChecker) -> None:
    """``ConfigError`` (one line, with the nearest valid key) unless ``key`` (``+``, ``++`` or
    ``~`` prefixes allowed) is a config key or a config group; Hydra's own keys pass."""
    key = key.lstrip("+~")
    if is_hydra_key(key) or key in config_keys() or ("." not in key and is_group(key)):
        return
    raise ConfigError(unknown_key(key, is_group.names()))


def check_keys(overrides: list[str], is_group: GroupChecker) -> None:
    """``check_key`` for the key of every override, in order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for ov in OverridesParser.create().parse_overrides(list(overrides)):
        check_key(ov.key_or_group, is_group)


def searchpath_of(overrides: list[str]) -> list[str]:
    """The entries of a ``hydra.searchpath=[...]`` override, if one is given."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for ov in OverridesParser.create().parse_overrides(list(overrides)):
        if ov.key_or_group == "hydra.searchpath":
            value = ov.value()
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return []
