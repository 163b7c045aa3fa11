"""Weight-update rules, keyed by the names users type (``update=<name>``).

A rule turns one batch's forward pass into the direction ``U`` that is added to ``W`` as
``W += eta * U``. Every rule has the same signature::

    def step(x, net, z, t, delta):   # x (n, d+1) inputs with the bias column last;
        ...                          # net, z, t, delta (n, k); returns U of W's shape (d+1, k)

``step`` is the plain NumPy form, the reference every faster path is held to. ``fast``
(optional) is the same rule for one sample, ``fast(out, x, net, z, t, delta)`` with 1-D arrays,
accumulating into ``out``; it is written so that Numba can compile it into the training kernel
(``slnn.core.compiled``). A rule without one trains on the NumPy path.

Adding a rule is one ``step`` function (plus its ``fast`` twin, if you want it compiled) and one
line in ``UPDATE_RULES``; ``update=<name>``, ``--help``, the README's table and the tests follow
the registry.

Names follow the guide ("15 Steps to Implement a Neural Net"): ``kronecker`` is its Step 12 as
written, ``W += eta * kronecker(transpose(z), delta)``.
"""

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


UPDATE_RULES: dict[str, UpdateRule] = {
    "input": UpdateRule("input", input_step, input_shape, input_fast),
    "kronecker": UpdateRule("kronecker", kronecker_step, kronecker_shape, kronecker_fast),
}


def get_rule(name: str) -> UpdateRule:
    """Look up an update rule by name; an unknown name lists the valid ones."""
    try:
        return UPDATE_RULES[name]
    except KeyError:
        raise ValueError(f"unknown update rule {name!r}: choose one of {sorted(UPDATE_RULES)}") from None


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
            f"(n_features + 1 = {n_in}, n_outputs = {n_out}); it applies only where the shapes match, "
            f"e.g. data=iris_petal"
        )
