"""The errors the core raises for bad input: each message is one line that names the problem
and the fix, so the command line can print it as it is (exit code 2)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


class ConfigError(ValueError):
    """A setting is out of range or unknown; the message says which and how to fix it."""


class DataError(ValueError):
    """A data set cannot be built; the message names the problem and the fix in one line."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" did you mean X?"`` for the candidate nearest to ``word`` (difflib's ratio, cutoff
    0.6), or ``""`` when none is near."""
    near = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1)
    return f" did you mean {near[0]}?" if near else ""


def check_choice(key: str, value, valid: Iterable[str]) -> None:
    """``ConfigError`` unless ``value`` is one of ``valid``: names the nearest choice and all."""
    valid = list(valid)
    if value not in valid:
        hint = did_you_mean(value, valid)
        raise ConfigError(f"{key}={value!r} is not valid:{hint} choose one of {sorted(valid)}")


def check_positive(key: str, value, example, allow_zero: bool = False) -> None:
    """``ConfigError`` unless ``value`` is finite and > 0 (>= 0 with ``allow_zero``)."""
    bad = value is None or not math.isfinite(value) or (value < 0 if allow_zero else value <= 0)
    if bad:
        need = "finite and >= 0" if allow_zero else "finite and > 0"
        raise ConfigError(f"{key} must be {need}, got {value}: set e.g. {key}={example}")
