"""A gallery of update rules: the gradient and the mistakes people plausibly make instead.

Every rule has the user signature of ``slnn.check`` (see ``slnn.check.checker``)::

    def step(x, net, z, t, delta):   # x (n, d+1) with the bias column last; net, z, t, delta (n, k)
        ...                          # -> a step the trainer adds as W += eta * step

and a shape function ``<name>_shape(n_in, n_out)`` giving the step's shape for ``W`` of shape
``(n_in, n_out)`` (``n_in = d + 1``), so a trainer can reject a misfit before training starts.
Below, ``n`` is the batch size, ``d`` the number of features, ``k`` the number of outputs and
``delta = (t - z) * f'(net)``. ``GALLERY`` maps each name to a ``GalleryRule``.

The gallery only states what each rule computes; ``slnn-check --builtin NAME`` measures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def input(x, net, z, t, delta):  # noqa: A001 - the name used in conf/update/ and slnn.rules
    """The gradient: ``dL/dW_ij = -delta_j x_i``, averaged over the batch (the correct rule)."""
    return x.T @ delta / len(x)               # (d+1, n) @ (n, k) -> (d+1, k)


def kronecker(x, net, z, t, delta):
    """The tutorial's Step 12 as written: ``kron(z.T, delta)`` per sample, averaged.

    It multiplies each sensitivity by an *output* where the gradient needs the *input*; the
    product is ``(k, k)``, which is ``W``'s shape only when ``d + 1 == k``.
    """
    step = np.zeros((z.shape[1], delta.shape[1]))          # (k, k)
    for zi, di in zip(z, delta):
        step += np.kron(zi[:, None], di[None, :])           # (k, 1) kron (1, k) -> (k, k)
    return step / len(x)


def no_derivative(x, net, z, t, delta):
    """The output error ``t - z`` used as the sensitivity: the factor ``f'(net)`` is dropped.

    With sigmoid outputs this is exactly the gradient of binary cross-entropy (which is why the
    formula is common); with linear outputs it is the squared-error gradient (``f' = 1``); with
    relu it keeps pushing units whose ``f'`` is 0.
    """
    return x.T @ (t - z) / len(x)             # (d+1, n) @ (n, k) -> (d+1, k)


def ascent(x, net, z, t, delta):
    """The sign flipped: the error written ``z - t`` (as in ``dL/dz``) and still *added* to ``W``."""
    return -(x.T @ delta) / len(x)            # (d+1, k)


def outer_transposed(x, net, z, t, delta):
    """The outer product the wrong way round: ``delta.T @ x``, the gradient's transpose.

    Shape ``(k, d+1)``: it fits ``W`` only when ``d + 1 == k``, by accident, and then adds each
    weight's gradient to the weight at the mirrored position.
    """
    return delta.T @ x / len(x)               # (k, n) @ (n, d+1) -> (k, d+1)


def sum_not_mean(x, net, z, t, delta):
    """A batch's per-sample gradients summed, not averaged: right for one sample, ``n`` times too
    large for a batch of ``n`` (the gradient of the *summed* squared error), so the effective
    learning rate grows with the batch size.
    """
    return x.T @ delta                        # (d+1, n) @ (n, k) -> (d+1, k)


def sigmoid_shortcut(x, net, z, t, delta):
    """The sigmoid's derivative shortcut ``f'(net) = z (1 - z)`` used whatever the activation.

    Right for sigmoid outputs only; for tanh or linear outputs ``z (1 - z)`` is not ``f'`` (and is
    negative wherever ``z < 0`` or ``z > 1``).
    """
    return x.T @ ((t - z) * z * (1.0 - z)) / len(x)         # (d+1, n) @ (n, k) -> (d+1, k)


def no_bias(x, net, z, t, delta):
    """The bias input left out of the update: ``x`` without its last (bias) column.

    Shape ``(d, k)``: one row short of ``W``. With one feature it is ``(1, k)``, which NumPy
    would silently broadcast onto every row of ``W``.
    """
    return x[:, :-1].T @ delta / len(x)       # (d, n) @ (n, k) -> (d, k)


def input_shape(n_in, n_out):
    return (n_in, n_out)


def kronecker_shape(n_in, n_out):
    return (n_out, n_out)


def outer_transposed_shape(n_in, n_out):
    return (n_out, n_in)


def no_bias_shape(n_in, n_out):
    return (n_in - 1, n_out)


@dataclass(frozen=True)
class GalleryRule:
    """A gallery rule: its ``step`` (the user signature) and ``step_shape(n_in, n_out)``."""

    name: str
    step: Callable
    step_shape: Callable


GALLERY: dict[str, GalleryRule] = {
    "input": GalleryRule("input", input, input_shape),
    "kronecker": GalleryRule("kronecker", kronecker, kronecker_shape),
    "no_derivative": GalleryRule("no_derivative", no_derivative, input_shape),
    "ascent": GalleryRule("ascent", ascent, input_shape),
    "outer_transposed": GalleryRule("outer_transposed", outer_transposed, outer_transposed_shape),
    "sum_not_mean": GalleryRule("sum_not_mean", sum_not_mean, input_shape),
    "sigmoid_shortcut": GalleryRule("sigmoid_shortcut", sigmoid_shortcut, input_shape),
    "no_bias": GalleryRule("no_bias", no_bias, no_bias_shape),
}


def get_gallery_rule(name: str) -> GalleryRule:
    """Look up a gallery rule by name; an unknown name lists the valid ones."""
    try:
        return GALLERY[name]
    except KeyError:
        raise ValueError(f"unknown gallery rule {name!r}: choose one of {sorted(GALLERY)}") from None
