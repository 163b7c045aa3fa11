"""Activation functions and their derivatives, keyed by the names used in ``conf/``.

Each function is written with NumPy ufuncs only, so the same source works on arrays (the plain
NumPy reference path) and on scalars inside the compiled kernel (``slnn.core.compiled`` jit-compiles it).
Adding an activation is one pair of functions and one line in ``ACTIVATIONS``; the
``model.activation=`` choices, ``--help``, the README's table, the tests and the logged model
follow the registry. A logged model runs without slnn on a copy of ``f``'s source
(``slnn.tracking.model.model_code``), so ``f`` is a plain ``def`` that uses NumPy (``np``) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def sigmoid(x):
    """1 / (1 + exp(-x)), in (0, 1)"""
    return 1.0 / (1.0 + np.exp(-x))


def sigmoid_prime(x):
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 - s)


def tanh(x):
    """tanh(x), in (-1, 1)"""
    return np.tanh(x)


def tanh_prime(x):
    th = np.tanh(x)
    return 1.0 - th * th


def guide_tanh(x):
    """(tanh(x) + 1) / 2, in (0, 1): the guide's activation"""
    return (np.tanh(x) + 1.0) / 2.0


def guide_tanh_prime(x):
    th = np.tanh(x)
    return (1.0 - th * th) / 2.0


def linear(x):
    """x (the identity)"""
    return x * 1.0


def linear_prime(x):
    return x * 0.0 + 1.0


def relu(x):
    """max(x, 0)"""
    return np.maximum(x, 0.0)


def relu_prime(x):
    # the subgradient at 0 is taken as 0, as scikit-learn does
    return (x > 0.0) * 1.0


@dataclass(frozen=True)
class Activation:
    """An activation ``f`` and its derivative ``df``, both element-wise."""

    name: str
    f: Callable
    df: Callable


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_prime),
    "tanh": Activation("tanh", tanh, tanh_prime),
    "guide_tanh": Activation("guide_tanh", guide_tanh, guide_tanh_prime),
    "linear": Activation("linear", linear, linear_prime),
    "relu": Activation("relu", relu, relu_prime),
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name; an unknown name lists the valid ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}: choose one of {sorted(ACTIVATIONS)}"
        ) from None
