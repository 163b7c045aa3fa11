"""Tab completion and ``--help`` as users expect them: every choice of a key with a fixed list
(Hydra offers only the current value), ``true``/``false`` for a flag, and the sweeper's internal
keys (``keys.INTERNAL_KEYS``) neither offered nor shown."""

from __future__ import annotations

from slnn.core.activations import ACTIVATIONS
from slnn.core.data import DATASETS
from slnn.core.rules import rule_choices


def key_choices() -> dict[str, list[str]]:
    """Every key whose value is one of a list, and the list (what tab completion offers)."""
    from slnn.core.data import GATES
    from slnn.core.trainer import BACKENDS, INITS, SAMPLINGS

    return {"model.activation": list(ACTIVATIONS), "model.init": list(INITS),
            "update.rule": list(rule_choices()), "train.sampling": list(SAMPLINGS),
            "train.backend": list(BACKENDS), "data.name": list(DATASETS), "data.gate": list(GATES)}


def is_flag(key: str) -> bool:
    """Is ``key`` a true/false key of the schema (``tracking.plot``, ``sweep.force``, ...)?"""
    import dataclasses
    import typing

    from slnn.app.schema import Config

    hint = Config
    for part in key.split("."):
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return False
        hints = typing.get_type_hints(hint)
        if part not in hints:
            return False
        hint = hints[part]
    return hint is bool or set(typing.get_args(hint)) == {bool, type(None)}


def complete(word: str, matches: list[str], flag: bool = False) -> list[str]:
    """Hydra's completions of ``word`` (``matches``) with slnn's keys put right: every choice of
    a registry key (Hydra offers only its current value), ``true``/``false`` for a ``flag``, and
    no internal key (``keys.INTERNAL_KEYS``)."""
    from slnn.app.keys import INTERNAL_KEYS, override_key

    if "=" in word:
        key, partial = word.split("=", 1)
        prefix = key[: len(key) - len(key.lstrip("+~"))]
        options = key_choices().get(key.lstrip("+~"))
        if options is None and flag:
            options = ["true", "false"]
        if options is not None:
            matches = [f"{prefix}{key.lstrip('+~')}={o}" for o in options if o.startswith(partial)]
    return [m for m in matches if override_key(m).rstrip(".") not in INTERNAL_KEYS]


def install_completion() -> None:
    """Hydra's shell completion (``slnn-train -sc query=bash``, which the script ``-sc
    install=bash`` prints calls) with ``complete`` applied to what it offers."""
    from slnn._compat import wrap_hydra_completion

    def wrap(original):
        def _query(self, config_name, line):
            out = original(self, config_name, line)
            word = "" if not line or line.endswith(" ") else line.split()[-1]
            return sorted(complete(word, out, is_flag(word.split("=", 1)[0].lstrip("+~"))))

        return _query

    wrap_hydra_completion(wrap)


def hide_internal_keys_in_help() -> None:
    """``slnn-train --help`` prints the resolved config without ``keys.INTERNAL_KEYS``."""
    from omegaconf import OmegaConf

    from slnn._compat import hydra_app
    from slnn.app.keys import INTERNAL_KEYS

    Hydra = hydra_app()

    if getattr(Hydra.get_help, "slnn", False):
        return
    original = Hydra.get_help

    def get_help(self, help_cfg, cfg, *args, **kwargs):
        plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
        for key in INTERNAL_KEYS:
            section, _, leaf = key.rpartition(".")
            node = OmegaConf.select(plain, section)
            if node is not None and leaf in node:
                node.pop(leaf)
        return original(self, help_cfg, plain, *args, **kwargs)

    get_help.slnn = True
    Hydra.get_help = get_help
