"""The choices users can type, read from the registries: ``--help``, the README's table and the
tests all come from here (tab completion too: ``slnn.app.completion``), so adding a rule, an
activation or a data set updates them all."""

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


if __name__ == "__main__":  # python -m slnn.app.choices: the README block, to paste
    print(choices_markdown())
