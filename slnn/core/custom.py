"""A user's rule for training: ``update=custom update.fn=FILE.py:FUNCTION``.

``load(fn)`` loads the file with ``slnn.core.rulefile`` (again only when its content changed);
``slnn.core.rules.custom_rule`` makes it an ``UpdateRule`` that trains on the NumPy path.
``validate(fn, activation, n_in, n_out, batch_sizes)`` is what the command line calls before any
run starts: it calls the rule on random batches of the run's own shape and activation, so any
problem is one ``RuleLoadError`` line (docs/extending.md lists them)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from slnn.core.rulefile import CheckedRule, RuleLoadError, load_rule, parse_spec

_loaded: dict[tuple[str, str], CheckedRule] = {}


def absolute_spec(fn: str, base: str | Path | None = None) -> str:
    """``FILE.py:FUNCTION`` with the file made absolute against ``base`` (default: the current
    directory, where the user ran the command); the file need not exist yet."""
    path, name = parse_spec(fn)
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path(base or Path.cwd()) / p
    return f"{Path(*p.parts).resolve(strict=False)}:{name}"


def load(fn: str) -> CheckedRule:
    """The user's rule, loaded once per (file, content)."""
    path, name = parse_spec(fn)
    try:
        sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        sha = ""  # load_rule names the problem (no such file, not a file, unreadable)
    key = (fn, sha)
    if key not in _loaded:
        _loaded[key] = load_rule(fn)
    return _loaded[key]


def probe(rule: CheckedRule, activation: str, n_in: int, n_out: int, batch_sizes, seed: int = 0):
    """The rule's step on random batches of ``W``'s shape ``(n_in, n_out)`` (standard normal
    inputs with a bias column, one-hot targets, or 0/1 with one output): ``[(batch size, step)]``."""
    from slnn.core.activations import get_activation

    act = get_activation(activation)
    rng = np.random.default_rng(seed)
    out = []
    for n in batch_sizes:
        x = np.concatenate([rng.normal(size=(n, n_in - 1)), np.ones((n, 1))], axis=1)
        t = (np.eye(n_out)[rng.integers(0, n_out, size=n)] if n_out > 1
             else rng.integers(0, 2, size=(n, 1)).astype(float))
        net = x @ rng.normal(scale=1.0 / np.sqrt(n_in), size=(n_in, n_out))
        z = act.f(net)
        try:
            step = rule(x, net, z, t, (t - z) * act.df(net))
        except RuleLoadError as e:
            raise RuleLoadError(f"{e} (activation {activation})") from None
        out.append((n, np.asarray(step, dtype=float)))
    return out


def validate(fn: str, activation: str, n_in: int, n_out: int, batch_sizes=(1,)) -> str:
    """Load ``fn`` and call it on random batches of ``W``'s shape ``(n_in, n_out)`` under
    ``activation``; the file's sha256, or a one-line ``RuleLoadError``."""
    rule = load(fn)
    sizes = sorted({1, *batch_sizes})
    for n, step in probe(rule, activation, n_in, n_out, sizes):
        if step.shape != (n_in, n_out):
            raise RuleLoadError(
                f"{rule.label}: the function returned a step of shape {step.shape} for a batch "
                f"of {n}, but W has shape {(n_in, n_out)} (n_features + 1 = {n_in}, "
                f"n_outputs = {n_out}); the step must have W's shape")
    return rule.digest
