"""The choices users can type, read from the registries: ``--help``, tab completion, the docs'
table and the tests all come from here, so adding a rule, an activation or a data set updates
them all."""

from __future__ import annotations

import inspect

from slnn.core.activations import ACTIVATIONS
from slnn.core.data import DATASETS
from slnn.core.rules import CUSTOM, UPDATE_RULES, rule_choices

CUSTOM_WHAT = ("Your own step, from `update.fn=FILE.py:FUNCTION` (signature `(x, net, z, t, "
               "delta)`, returns a step shaped like W): slnn runs your code, on the NumPy path.")


def _first_line(fn) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n")[0].replace("\n", " ").replace("``", "`").strip()


def choices(what: str) -> str:
    """``rules``, ``activations`` or ``data``: the registered names, comma-separated."""
    registry = {"rules": rule_choices(), "activations": ACTIVATIONS, "data": DATASETS}[what]
    return ", ".join(registry)


def choices_markdown() -> str:
    """The README's table of choices (between its ``choices`` markers)."""
    lines = ["| key | choices |", "|---|---|",
             f"| `update=` | {', '.join(f'`{n}`' for n in rule_choices())} |",
             f"| `model.activation=` | {', '.join(f'`{n}`' for n in ACTIVATIONS)} |",
             f"| `data.name` (or a `data=` preset) | {', '.join(f'`{n}`' for n in DATASETS)} |",
             "", "| rule | what its step is |", "|---|---|"]
    lines += [f"| `{n}` | {_first_line(r.step)} |" for n, r in UPDATE_RULES.items()]
    lines += [f"| `{CUSTOM}` | {CUSTOM_WHAT} |"]
    lines += ["", "| activation | f(x) |", "|---|---|"]
    lines += [f"| `{n}` | {_first_line(a.f) or n} |" for n, a in ACTIVATIONS.items()]
    return "\n".join(lines)


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
    from hydra.plugins.completion_plugin import CompletionPlugin

    if getattr(CompletionPlugin._query, "slnn", False):
        return
    original = CompletionPlugin._query

    def _query(self, config_name, line):
        out = original(self, config_name, line)
        word = "" if not line or line.endswith(" ") else line.split()[-1]
        return sorted(complete(word, out, is_flag(word.split("=", 1)[0].lstrip("+~"))))

    _query.slnn = True
    CompletionPlugin._query = _query


def hide_internal_keys_in_help() -> None:
    """``slnn-train --help`` prints the resolved config without ``keys.INTERNAL_KEYS``."""
    from hydra._internal.hydra import Hydra
    from omegaconf import OmegaConf

    from slnn.app.keys import INTERNAL_KEYS

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


if __name__ == "__main__":  # python -m slnn.app.choices: the README block, to paste
    print(choices_markdown())
