"""Check a weight-update rule against the gradient, measured numerically.

The user signature (stable; built-in rules use it too)::

    def my_step(x, net, z, t, delta):   # arrays for one batch: x (n, d+1); net, z, t, delta (n, k)
        return x.T @ delta / len(x)     # a step shaped like W, (d+1, k); the trainer does W += eta * step

``x`` holds the inputs with the bias column (all ones) last, ``net = x @ W``, ``z = f(net)``,
``t`` the targets and ``delta = (t - z) * f'(net)``. The rule gets copies, so it may modify them.

What is measured
----------------
For each activation in ``ACTIVATIONS`` and each data shape in ``DEFAULT_SHAPES`` (``(d, k)`` =
(features, outputs): one with ``d + 1 == k``, one with a single output, a wider one and one with
more outputs than inputs), ``check_rule`` draws batches of the sizes in ``DEFAULT_BATCH_SIZES``
from a seeded ``np.random.Generator``: inputs ``N(0, 1)``, weights ``N(0, 1/(d+1))``, one-hot
targets (with a single output, binary targets 0/1, the encoding a single output can express).
Batches are redrawn until no ``net`` lies within ``4 h max|x|`` of 0 (so the finite differences
never cross relu's kink) and at least one ``net`` is positive (so relu's gradient is not 0).
Every activation sees the same batches.

The reference is the negative gradient of the batch-mean loss ``0.5 ||t - z||^2``, computed from
the loss alone by the 4th-order central difference on each weight,
``(8 (L(w+h) - L(w-h)) - (L(w+2h) - L(w-2h))) / (12 h)`` with ``h = 3e-4``: truncation
``O(h^4)`` and rounding ``O(eps / h)`` stay near 1e-12 absolute (the tests hold it to the analytic
gradient), well inside the 1e-8 relative tolerance of the verdicts. No rule's formula is used.

Per batch: the step's shape against ``W``'s (``right`` = exactly ``W``'s shape, ``broadcast`` =
differs but NumPy would broadcast it onto ``W`` without complaint, e.g. ``(1, k)`` or ``(1, 1)``,
``wrong`` = cannot be added), and, where it is ``right``, its cosine with the negative gradient,
its relative deviation ``||step - (-grad)|| / ||grad||``, its deviation from the negative
gradient of each other loss in ``LOSSES`` that applies, and the least-squares factor ``c`` with
``step ~ c (-grad)``. A step is never reshaped or broadcast into fitting.

Verdicts (the first that holds, over every batch considered)
------------------------------------------------------------
``shape_mismatch``
    the step has ``W``'s exact shape on no data shape.
``gradient``
    equals ``-grad`` of ``0.5 ||t - z||^2`` (batch mean) within 1e-8 relative on every batch.
``other_loss_gradient:<name>``
    equals ``-grad`` of another loss, also by central differences, within 1e-8 on every batch,
    where that loss applies on every batch: ``sum_squared`` (the squared error *summed* over the
    batch), ``cross_entropy`` (binary cross-entropy ``-sum t log z + (1-t) log(1-z)``, where the
    activation's outputs lie in (0, 1)), ``softmax_cross_entropy`` (cross-entropy of
    ``softmax(net)``, with two or more outputs).
``gradient_scaled``
    equals ``c (-grad)`` for one constant ``c > 0`` on every batch (the gradient with a
    different learning rate, e.g. the gradient of ``||t - z||^2`` without the 1/2); ``scale`` = c.
``descent``
    a cosine with ``-grad`` above 1e-8 on every batch, but none of the above.
``not_descent``
    otherwise: on some batch the step is orthogonal to or against the gradient.

A step that is right per sample but sums a batch instead of averaging is ``n`` times the
gradient; this is reported as ``other_loss_gradient:sum_squared``, not as ``gradient_scaled``
(its factor changes with the batch size, so no constant learning rate absorbs it) and not merely
as ``descent`` (it *is* a gradient, of the summed loss). Batches of size 1 cannot tell the two
apart; the batches of size > 1 can.

A rule that fits ``W`` on some data shapes only (``kronecker`` fits only where ``d + 1 == k``)
gets, per activation, the verdict computed over the shapes where it fits plus a ``fits_only``
list naming them; each data shape also has its own verdict (``shape_mismatch`` where it does not
fit). The activation's ``shape`` is ``right`` if the step had ``W``'s shape on every batch,
otherwise ``broadcast`` if any batch would broadcast silently (the more dangerous misfit),
otherwise ``wrong``.

Verdicts are evidence from the batches drawn, not a proof: a rule could agree with the gradient
on them and differ elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from slnn.core.activations import ACTIVATIONS
from slnn.core.outcomes import Outcome

# the checker's verdict for a step that cannot be added to W: the run outcome of the same name
SHAPE_MISMATCH = str(Outcome.SHAPE_MISMATCH)

H = 3e-4                  # finite-difference step (4th-order central stencil)
GRAD_TOL = 1e-8           # relative tolerance for "equals a gradient"
COS_TOL = 1e-8            # a cosine at or below this is not counted as descent
DEFAULT_SHAPES: tuple[tuple[int, int], ...] = ((2, 3), (3, 1), (5, 3), (2, 4))   # (d, k)
DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 1, 1, 1, 2, 3, 8, 16)
FITS = ("right", "broadcast", "wrong")


# --- losses: each maps a stack of weights (m, d+1, k) to m batch losses ---

def _outputs(act, x, Ws):
    net = x @ Ws                                    # (n, d+1) @ (m, d+1, k) -> (m, n, k)
    return net, act.f(net)


def _mean_squared(act, x, Ws, t):
    _, z = _outputs(act, x, Ws)
    return 0.5 * ((t - z) ** 2).sum(axis=(-2, -1)) / len(x)


def _sum_squared(act, x, Ws, t):
    _, z = _outputs(act, x, Ws)
    return 0.5 * ((t - z) ** 2).sum(axis=(-2, -1))


def _cross_entropy(act, x, Ws, t):
    _, z = _outputs(act, x, Ws)
    return -(t * np.log(z) + (1.0 - t) * np.log1p(-z)).sum(axis=(-2, -1)) / len(x)


def _softmax_cross_entropy(act, x, Ws, t):
    net, _ = _outputs(act, x, Ws)
    top = net.max(axis=-1, keepdims=True)
    log_sum = top[..., 0] + np.log(np.exp(net - top).sum(axis=-1))      # (m, n)
    # -sum_j t_j log softmax_j = log_sum * sum_j t_j - sum_j t_j net_j
    return (log_sum * t.sum(axis=-1) - (t * net).sum(axis=-1)).sum(axis=-1) / len(x)


def _always(act, x, W, t):
    return True


_PROBE = np.linspace(-8.0, 8.0, 161)


def _outputs_in_unit_interval(act, x, W, t):
    # binary cross-entropy needs 0 < z < 1: for the activation (probed) and on this batch
    z = act.f(x @ W)
    p = act.f(_PROBE)
    return bool(np.all((p > 0) & (p < 1)) and np.all((z > 0) & (z < 1)))


def _two_or_more_outputs(act, x, W, t):
    return t.shape[1] >= 2     # softmax over one output is constant: its loss is 0


@dataclass(frozen=True)
class Loss:
    """A loss of ``W`` on a batch: ``value(act, x, Ws, t)`` for a stack ``Ws`` (m, d+1, k) -> (m,);
    ``applies(act, x, W, t)`` says whether it is defined there."""

    name: str
    value: Callable
    applies: Callable
    description: str


LOSSES: dict[str, Loss] = {
    "mean_squared": Loss("mean_squared", _mean_squared, _always,
                         "0.5 ||t - z||^2 averaged over the batch"),
    "sum_squared": Loss("sum_squared", _sum_squared, _always,
                        "0.5 ||t - z||^2 summed over the batch"),
    "cross_entropy": Loss("cross_entropy", _cross_entropy, _outputs_in_unit_interval,
                          "binary cross-entropy -sum t log z + (1 - t) log(1 - z)"),
    "softmax_cross_entropy": Loss("softmax_cross_entropy", _softmax_cross_entropy,
                                  _two_or_more_outputs, "cross-entropy of softmax(net)"),
}
REFERENCE = "mean_squared"
OTHER_LOSSES = ("sum_squared", "cross_entropy", "softmax_cross_entropy")


def numeric_gradient(loss: Loss, act, x: np.ndarray, W: np.ndarray, t: np.ndarray,
                     h: float = H) -> np.ndarray:
    """``dL/dW`` by the 4th-order central difference on each weight; shape of ``W``."""
    m = W.size
    E = np.eye(m).reshape(m, *W.shape)                          # (m, d+1, k) unit weights
    Ws = np.concatenate([W + c * h * E for c in (1.0, -1.0, 2.0, -2.0)])    # (4m, d+1, k)
    L1p, L1m, L2p, L2m = loss.value(act, x, Ws, t).reshape(4, m)
    return ((8.0 * (L1p - L1m) - (L2p - L2m)) / (12.0 * h)).reshape(W.shape)


# --- batches ---

@dataclass(frozen=True)
class Batch:
    """One checked point: inputs ``x`` (n, d+1) with the bias last, weights ``W`` (d+1, k),
    targets ``t`` (n, k)."""

    x: np.ndarray
    W: np.ndarray
    t: np.ndarray

    @property
    def label(self) -> str:
        return shape_label(self.x.shape[1] - 1, self.W.shape[1])


def shape_label(d: int, k: int) -> str:
    return f"d={d},k={k}"


def make_batches(rng: np.random.Generator, d: int, k: int,
                 batch_sizes=DEFAULT_BATCH_SIZES, h: float = H) -> list[Batch]:
    """Random batches for ``d`` features and ``k`` outputs, one per batch size (see the module
    docstring for the distribution and the conditions each batch meets)."""
    batches = []
    for n in batch_sizes:
        for _ in range(10_000):
            x = np.hstack([rng.normal(size=(n, d)), np.ones((n, 1))])       # (n, d+1)
            if k == 1:
                t = rng.integers(0, 2, size=(n, 1)).astype(float)           # (n, 1) binary
            else:
                t = np.eye(k)[rng.integers(0, k, size=n)]                   # (n, k) one-hot
            W = rng.normal(scale=1.0 / math.sqrt(d + 1), size=(d + 1, k))
            net = x @ W
            # the stencil moves net_j by up to 2h|x_i|: keep every net twice that far from 0
            if np.abs(net).min() > 4.0 * h * np.abs(x).max() and (net > 0).any():
                batches.append(Batch(x, W, t))
                break
        else:  # pragma: no cover - the conditions hold for a few percent of draws at worst
            raise RuntimeError(f"no batch of {n} found for d={d}, k={k}")
    return batches


# --- results ---

def shape_fit(step_shape: tuple, w_shape: tuple) -> str:
    """``right`` (exactly ``W``'s shape), ``broadcast`` (NumPy would broadcast it onto ``W``) or
    ``wrong`` (``W += step`` would fail)."""
    step_shape, w_shape = tuple(step_shape), tuple(w_shape)
    if step_shape == w_shape:
        return "right"
    try:
        return "broadcast" if np.broadcast_shapes(step_shape, w_shape) == w_shape else "wrong"
    except ValueError:
        return "wrong"


@dataclass
class BatchCheck:
    """The rule's step on one batch, against the reference. The comparison fields are None
    where the step's shape is not exactly ``W``'s."""

    batch: Batch = field(repr=False)
    step_shape: tuple
    fit: str
    cosine: float | None = None
    rel_dev: float | None = None
    loss_rel_dev: dict[str, float] = field(default_factory=dict)   # applicable other losses
    scale: float | None = None        # c minimising ||step - c (-grad)||
    scale_rel_dev: float | None = None

    @property
    def n(self) -> int:
        return len(self.batch.x)


def _call(rule: Callable, act, batch: Batch) -> np.ndarray:
    x, W, t = batch.x, batch.W, batch.t
    net = x @ W                                   # (n, d+1) @ (d+1, k) -> (n, k)
    z = act.f(net)
    delta = (t - z) * act.df(net)
    out = rule(x.copy(), net.copy(), z.copy(), t.copy(), delta.copy())
    step = np.asarray(out, dtype=float)           # a loaded rule has already checked the type
    if not np.all(np.isfinite(step)):
        raise ValueError(f"the rule returned non-finite values (activation {getattr(act, 'name', act)!r})")
    return step


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / nb if nb > 0 else math.inf


def check_batch(rule: Callable, act, batch: Batch) -> BatchCheck:
    """Call ``rule`` on ``batch`` under activation ``act`` and compare its step with ``-grad``."""
    step = _call(rule, act, batch)
    fit = shape_fit(step.shape, batch.W.shape)
    result = BatchCheck(batch, tuple(step.shape), fit)
    if fit != "right":
        return result
    x, W, t = batch.x, batch.W, batch.t
    descent = -numeric_gradient(LOSSES[REFERENCE], act, x, W, t)
    g2 = float(np.sum(descent * descent))
    if g2 < 1e-16:  # pragma: no cover - make_batches keeps a positive net, so never 0
        raise RuntimeError("reference gradient is 0 on a checked batch")
    s_norm = float(np.linalg.norm(step))
    dot = float(np.sum(step * descent))
    result.cosine = dot / (s_norm * math.sqrt(g2)) if s_norm > 0 else 0.0
    result.rel_dev = _rel(step, descent)
    result.scale = dot / g2
    result.scale_rel_dev = _rel(step, result.scale * descent) if result.scale != 0 else math.inf
    for name in OTHER_LOSSES:
        loss = LOSSES[name]
        if loss.applies(act, x, W, t):
            result.loss_rel_dev[name] = _rel(step, -numeric_gradient(loss, act, x, W, t))
    return result


def verdict_of(checks: list[BatchCheck]) -> tuple[str, float | None]:
    """The verdict (and ``scale`` for ``gradient_scaled``) for batches whose steps all fit."""
    if not checks:
        return SHAPE_MISMATCH, None
    if all(c.rel_dev <= GRAD_TOL for c in checks):
        return "gradient", None
    for name in OTHER_LOSSES:
        if all(c.loss_rel_dev.get(name, math.inf) <= GRAD_TOL for c in checks):
            return f"other_loss_gradient:{name}", None
    scales = [c.scale for c in checks]
    if (all(c.scale_rel_dev <= GRAD_TOL for c in checks) and min(scales) > 0
            and max(scales) - min(scales) <= GRAD_TOL * max(scales)):
        return "gradient_scaled", float(np.mean(scales))
    if all(c.cosine > COS_TOL for c in checks):
        return "descent", None
    return "not_descent", None


def _stats(checks: list[BatchCheck]) -> tuple[float | None, float | None, float | None]:
    if not checks:
        return None, None, None
    cos = [c.cosine for c in checks]
    return float(np.mean(cos)), float(min(cos)), float(max(c.rel_dev for c in checks))


def _worst_fit(fits) -> str:
    fits = set(fits)
    return "right" if fits == {"right"} else "broadcast" if "broadcast" in fits else "wrong"


@dataclass
class ShapeCheck:
    """One data shape (``d`` features, ``k`` outputs) under one activation."""

    n_features: int
    n_outputs: int
    batches: list[BatchCheck] = field(repr=False)
    fit: str = ""
    verdict: str = ""
    scale: float | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None
    max_rel_dev: float | None = None

    def __post_init__(self):
        self.fit = _worst_fit(b.fit for b in self.batches)
        fitting = self.batches if self.fit == "right" else []
        self.verdict, self.scale = verdict_of(fitting)
        self.cosine_mean, self.cosine_min, self.max_rel_dev = _stats(fitting)

    @property
    def label(self) -> str:
        return shape_label(self.n_features, self.n_outputs)

    @property
    def w_shape(self) -> tuple[int, int]:
        return (self.n_features + 1, self.n_outputs)

    @property
    def step_shapes(self) -> list[tuple]:
        return sorted({b.step_shape for b in self.batches})

    def to_json(self) -> dict:
        return {
            "n_features": self.n_features, "n_outputs": self.n_outputs,
            "W": list(self.w_shape), "step": [list(s) for s in self.step_shapes],
            "shape": self.fit, "verdict": self.verdict, "scale": self.scale,
            "cosine_mean": self.cosine_mean, "cosine_min": self.cosine_min,
            "max_rel_dev": self.max_rel_dev, "batch_sizes": [b.n for b in self.batches],
        }


@dataclass
class ActivationResult:
    """The rule under one activation, over every data shape checked."""

    activation: str
    shapes: list[ShapeCheck] = field(repr=False)
    verdict: str = ""
    scale: float | None = None
    shape: str = ""
    fits_only: list[str] | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None
    max_rel_dev: float | None = None

    def __post_init__(self):
        fitting = [s for s in self.shapes if s.fit == "right"]
        checks = [b for s in fitting for b in s.batches]
        self.verdict, self.scale = verdict_of(checks)
        self.shape = _worst_fit(s.fit for s in self.shapes)
        if fitting and len(fitting) < len(self.shapes):
            self.fits_only = [s.label for s in fitting]
        self.cosine_mean, self.cosine_min, self.max_rel_dev = _stats(checks)

    def to_json(self) -> dict:
        return {
            "activation": self.activation, "verdict": self.verdict, "scale": self.scale,
            "cosine_mean": self.cosine_mean, "cosine_min": self.cosine_min,
            "max_rel_dev": self.max_rel_dev, "shape": self.shape, "fits_only": self.fits_only,
            "shapes": [s.to_json() for s in self.shapes],
        }


def check_rule(rule: Callable, *, activations=None, shapes=DEFAULT_SHAPES,
               batch_sizes=DEFAULT_BATCH_SIZES, seed: int = 0) -> list[ActivationResult]:
    """Check ``rule`` (the user signature) under each activation; one result per activation.

    ``activations``: names from ``ACTIVATIONS`` (default: all). ``shapes``: ``(d, k)`` pairs.
    Every activation is checked on the same batches, drawn from ``np.random.default_rng(seed)``.
    Exceptions from ``rule`` propagate (a rule from ``slnn.check.loader`` raises a one-line
    ``RuleLoadError``).
    """
    names = list(ACTIVATIONS) if activations is None else list(activations)
    unknown = [a for a in names if a not in ACTIVATIONS]
    if unknown:
        raise ValueError(f"unknown activation(s) {unknown}: choose from {sorted(ACTIVATIONS)}")
    rng = np.random.default_rng(seed)
    batches = {(d, k): make_batches(rng, d, k, batch_sizes) for d, k in shapes}
    results = []
    for name in names:
        act = ACTIVATIONS[name]
        per_shape = [ShapeCheck(d, k, [check_batch(rule, act, b) for b in batches[d, k]])
                     for d, k in shapes]
        results.append(ActivationResult(name, per_shape))
    return results
