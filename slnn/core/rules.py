"""Weight-update rules, keyed by the names users type (``update=<name>``).

Every rule is ``step(x, net, z, t, delta) -> U`` (x (n, d+1) with the bias column last; net, z,
t, delta (n, k)), applied as ``W += eta * U``, with an optional one-sample ``fast`` twin that
Numba compiles. Adding one is a function and a line of ``UPDATE_RULES``; ``update=custom`` trains
a user's file (``custom_rule``). docs/extending.md says how; docs/configuration.md what each
built-in rule is (``kronecker``: the guide's Step 12 as written; then the checker's gallery)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


class ShapeMismatch(ValueError):
    """A rule's step cannot be added to ``W`` because the shapes differ."""


def input_step(x, net, z, t, delta):
    """The gradient rule: ``dL/dW_ij = delta_j * x_i``, averaged over the batch.

    Parameters
    ----------
    x : ndarray of shape (n, n_features + 1), inputs with the bias column last
    net, z, t : ndarray of shape (n, n_outputs), unused: the gradient needs only x and delta
    delta : ndarray of shape (n, n_outputs), sensitivities ``(t - z) * f'(net)``

    Returns
    -------
    ndarray of shape (n_features + 1, n_outputs)
    """
    return x.T @ delta / x.shape[0]  # (d+1, n) @ (n, k) -> (d+1, k)


def kronecker_step(x, net, z, t, delta):
    """The guide's Step 12 as written: ``kron(transpose(z), delta)``, per sample.

    ``transpose(z)`` is ``(k, 1)`` and ``delta`` is ``(1, k)``, so each sample's product is
    ``(k, k)``: it multiplies every sensitivity by an *output* where the gradient needs the *input*.
    For a batch the per-sample products are averaged, as ``input_step`` averages its gradients.

    Returns
    -------
    ndarray of shape (n_outputs, n_outputs)
    """
    n = z.shape[0]
    step = np.zeros((z.shape[1], delta.shape[1]))
    for i in range(n):
        step += np.kron(z[i : i + 1].T, delta[i : i + 1])  # (k, 1) kron (1, k) -> (k, k)
    return step / n


def no_derivative_step(x, net, z, t, delta):
    """The output error ``t - z`` used as the sensitivity: the factor ``f'(net)`` is dropped.

    With sigmoid outputs this is exactly the gradient of binary cross-entropy (which is why the
    formula is common); with linear outputs it is the squared-error gradient (``f' = 1``); with
    relu it keeps pushing units whose ``f'`` is 0.
    """
    return x.T @ (t - z) / len(x)             # (d+1, n) @ (n, k) -> (d+1, k)


def ascent_step(x, net, z, t, delta):
    """The sign flipped: the error written ``z - t`` (as in ``dL/dz``) and still *added* to ``W``."""
    return -(x.T @ delta) / len(x)            # (d+1, k)


def outer_transposed_step(x, net, z, t, delta):
    """The outer product the wrong way round: ``delta.T @ x``, the gradient's transpose.

    Shape ``(k, d+1)``: it fits ``W`` only when ``d + 1 == k``, by accident, and then adds each
    weight's gradient to the weight at the mirrored position.
    """
    return delta.T @ x / len(x)               # (k, n) @ (n, d+1) -> (k, d+1)


def sum_not_mean_step(x, net, z, t, delta):
    """A batch's per-sample gradients summed, not averaged: `n` times the gradient for a batch of `n`.

    Right for one sample, ``n`` times too large for a batch of ``n`` (the gradient of the
    *summed* squared error), so the effective learning rate grows with the batch size.
    """
    return x.T @ delta                        # (d+1, n) @ (n, k) -> (d+1, k)


def sigmoid_shortcut_step(x, net, z, t, delta):
    """The sigmoid's derivative shortcut ``f'(net) = z (1 - z)`` used whatever the activation.

    Right for sigmoid outputs only; for tanh or linear outputs ``z (1 - z)`` is not ``f'`` (and is
    negative wherever ``z < 0`` or ``z > 1``).
    """
    return x.T @ ((t - z) * z * (1.0 - z)) / len(x)         # (d+1, n) @ (n, k) -> (d+1, k)


def no_bias_step(x, net, z, t, delta):
    """The bias input left out of the update: ``x`` without its last (bias) column.

    Shape ``(d, k)``: one row short of ``W``. With one feature it is ``(1, k)``, which NumPy
    would silently broadcast onto every row of ``W``.
    """
    return x[:, :-1].T @ delta / len(x)       # (d, n) @ (n, k) -> (d, k)


def input_fast(out, x, net, z, t, delta):
    # one sample of input_step, accumulated: out (d+1, k) += x (d+1,) outer delta (k,)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += x[i] * delta[j]


def kronecker_fast(out, x, net, z, t, delta):
    # one sample of kronecker_step, accumulated: out (k, k) += z (k,) outer delta (k,)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += z[i] * delta[j]


def input_shape(n_in, n_out):
    return (n_in, n_out)


def kronecker_shape(n_in, n_out):
    return (n_out, n_out)


def outer_transposed_shape(n_in, n_out):
    return (n_out, n_in)


def no_bias_shape(n_in, n_out):
    return (n_in - 1, n_out)


@dataclass(frozen=True)
class UpdateRule:
    """An update rule: its NumPy ``step``, the shape that step has, and an optional ``fast`` form.

    ``step_shape(n_in, n_out)`` gives the shape of the step for ``W`` of shape ``(n_in, n_out)``
    (``n_in = n_features + 1``), so a rule that cannot apply is caught before training starts.
    """

    name: str
    step: Callable
    step_shape: Callable = input_shape
    fast: Callable | None = None
    # a user's rule (update=custom): its FILE.py:FUNCTION, absolute, and the file's sha256
    source: str | None = None
    digest: str | None = None


UPDATE_RULES: dict[str, UpdateRule] = {
    "input": UpdateRule("input", input_step, input_shape, input_fast),
    "kronecker": UpdateRule("kronecker", kronecker_step, kronecker_shape, kronecker_fast),
    # the gallery of plausible mistakes (slnn.check.gallery): NumPy path, no compiled form
    "no_derivative": UpdateRule("no_derivative", no_derivative_step),
    "ascent": UpdateRule("ascent", ascent_step),
    "outer_transposed": UpdateRule("outer_transposed", outer_transposed_step,
                                   outer_transposed_shape),
    "sum_not_mean": UpdateRule("sum_not_mean", sum_not_mean_step),
    "sigmoid_shortcut": UpdateRule("sigmoid_shortcut", sigmoid_shortcut_step),
    "no_bias": UpdateRule("no_bias", no_bias_step, no_bias_shape),
}

# update=custom: the user's own step, from update.fn=FILE.py:FUNCTION (not a registry entry: it
# has no step until a file is named)
CUSTOM = "custom"


def rule_choices() -> list[str]:
    """What ``update=`` takes: the registered rules, then ``custom``."""
    return [*UPDATE_RULES, CUSTOM]


def get_rule(name: str) -> UpdateRule:
    """Look up an update rule by name; an unknown name lists the valid ones."""
    try:
        return UPDATE_RULES[name]
    except KeyError:
        raise ValueError(f"unknown update rule {name!r}: choose one of {sorted(UPDATE_RULES)}") from None


def custom_rule(fn: str) -> UpdateRule:
    """``update=custom``: the user's ``FILE.py:FUNCTION`` (loaded by ``slnn.core.custom``, once
    per file content) as an ``UpdateRule`` with no compiled form, so it trains on the NumPy path.

    Every call gets copies of the arrays (the rule may modify them); a step that is not ``W``'s
    shape, an exception inside the function or a return value that is not an array of numbers
    stops the run with one line (``slnn.core.rulefile.RuleLoadError``); non-finite values pass,
    so a rule whose weights blow up ends as ``diverged``, as a built-in rule does. ``step_shape``
    calls the function on random batches of the shape asked for.
    """
    from slnn.core.custom import load, probe
    from slnn.core.rulefile import CheckedRule, RuleLoadError

    rule = load(fn)
    lenient = CheckedRule(rule.func, rule.label, path=rule.path, digest=rule.digest,
                          name=rule.name, finite=False)

    def step(x, net, z, t, delta):
        out = lenient(x.copy(), net.copy(), z.copy(), t.copy(), delta.copy())
        want = (x.shape[1], delta.shape[1])
        if out.shape != want:
            raise RuleLoadError(f"{rule.label}: the function returned a step of shape "
                                f"{out.shape} for a batch of {x.shape[0]}, but W has shape {want}")
        return out

    def step_shape(n_in, n_out):
        shapes = {s.shape for _, s in probe(rule, "sigmoid", n_in, n_out, (1, 3))}
        return shapes.pop() if len(shapes) == 1 else ("varies", sorted(shapes))

    return UpdateRule(CUSTOM, step, step_shape, None, source=fn, digest=rule.digest)


def resolve_rule(name: str, fn: str | None = None) -> UpdateRule:
    """The rule ``update=<name>`` trains: a registered one, or with ``custom`` the user's ``fn``."""
    if name == CUSTOM:
        if not fn:
            raise ValueError("update=custom needs update.fn=FILE.py:FUNCTION, e.g. "
                             "update.fn=my_rules.py:my_step")
        return custom_rule(fn)
    return get_rule(name)


def check_shape(rule: UpdateRule, w_shape: tuple[int, int]) -> None:
    """Raise ``ShapeMismatch`` (one line, both shapes) if ``rule``'s step cannot be added to ``W``.

    Never reshape, tile or broadcast the step into fitting: with one output NumPy would broadcast
    a ``(1, 1)`` step over all of ``W`` without complaint, which is exactly what must not happen.
    """
    n_in, n_out = w_shape
    shape = tuple(rule.step_shape(n_in, n_out))
    if shape != (n_in, n_out):
        raise ShapeMismatch(
            f"update rule {rule.name!r} gives a step of shape {shape} but W has shape {(n_in, n_out)} "
            f"(n_features + 1 = {n_in}, n_outputs = {n_out}); it applies only where the shapes match"
            + (", e.g. data=iris_petal" if rule.source is None and tuple(rule.step_shape(3, 3)) == (3, 3)
               else "")
        )
