"""Check a weight-update rule against the gradient, measured numerically.

    def my_step(x, net, z, t, delta):   # arrays for one batch: x (n, d+1); net, z, t, delta (n, k)
        return x.T @ delta / len(x)     # a step shaped like W, (d+1, k); the trainer does W += eta * step

``check_rule(step)`` gives one verdict per activation. docs/checker.md says what is drawn and
measured, what each verdict means, and why its thresholds are where they are.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import numpy as np

from slnn.core.activations import ACTIVATIONS
from slnn.core.outcomes import Outcome

# the checker's verdict for a step that cannot be added to W: the run outcome of the same name
SHAPE_MISMATCH = str(Outcome.SHAPE_MISMATCH)

H = 3e-4                  # finite-difference step (4th-order central stencil)
GRAD_TOL = 1e-8           # relative tolerance for "equals a gradient", for a float64 step
COS_TOL = GRAD_TOL        # a float64 step's cosine at or below this is not counted as downhill
DEFAULT_SHAPES: tuple[tuple[int, int], ...] = ((2, 3), (5, 3), (2, 4), (3, 2))   # (d, k)
DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 1, 1, 1, 2, 3, 8, 16)
DEFAULT_N_BATCHES = 1000  # per data shape, sizes cycling through DEFAULT_BATCH_SIZES
DESCENT_SHARE = 0.999     # descent: the downhill share's interval reaches this
CONFIDENCE = 0.95         # of the Clopper-Pearson interval of the downhill share
FITS = ("right", "broadcast", "wrong")
_EPS64 = float(np.finfo(np.float64).eps)


# --- losses: each maps a stack of weights (..., m, d+1, k) to (..., m) batch losses ---

def _outputs(act, x, Ws):
    net = x @ Ws                            # (.., n, d+1) @ (.., m, d+1, k) -> (.., m, n, k)
    return net, act.f(net)


def _mean_squared(act, x, Ws, t):
    _, z = _outputs(act, x, Ws)
    return 0.5 * ((t - z) ** 2).sum(axis=(-2, -1)) / x.shape[-2]


def _sum_squared(act, x, Ws, t):
    _, z = _outputs(act, x, Ws)
    return 0.5 * ((t - z) ** 2).sum(axis=(-2, -1))


def _cross_entropy(act, x, Ws, t):
    _, z = _outputs(act, x, Ws)
    return -(t * np.log(z) + (1.0 - t) * np.log1p(-z)).sum(axis=(-2, -1)) / x.shape[-2]


def _softmax_cross_entropy(act, x, Ws, t):
    net, _ = _outputs(act, x, Ws)
    top = net.max(axis=-1, keepdims=True)
    log_sum = top[..., 0] + np.log(np.exp(net - top).sum(axis=-1))      # (.., m, n)
    # -sum_j t_j log softmax_j = log_sum * sum_j t_j - sum_j t_j net_j
    return (log_sum * t.sum(axis=-1) - (t * net).sum(axis=-1)).sum(axis=-1) / x.shape[-2]


# ``applies(act, x, W, t)``: per batch (x (.., n, d+1), W (.., d+1, k)), whether the loss is defined

def _always(act, x, W, t):
    return np.ones(np.shape(x)[:-2], dtype=bool)


_PROBE = np.linspace(-8.0, 8.0, 161)


def _outputs_in_unit_interval(act, x, W, t):
    # binary cross-entropy needs 0 < z < 1: for the activation (probed) and on this batch
    z = act.f(x @ W)
    p = act.f(_PROBE)
    return bool(np.all((p > 0) & (p < 1))) & np.all((z > 0) & (z < 1), axis=(-2, -1))


def _two_or_more_outputs(act, x, W, t):
    # softmax over one output is constant: its loss is 0
    return np.full(np.shape(x)[:-2], np.shape(t)[-1] >= 2)


@dataclass(frozen=True)
class Loss:
    """A loss of ``W`` on a batch: ``value(act, x, Ws, t)`` for a stack ``Ws`` (m, d+1, k) -> (m,);
    ``applies(act, x, W, t)`` says whether it is defined there. Both accept leading batch axes."""

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
VERDICTS: tuple[str, ...] = ("gradient", *(f"other_loss_gradient:{n}" for n in OTHER_LOSSES),
                             "gradient_scaled", "descent", "not_descent", SHAPE_MISMATCH)


def numeric_gradients(loss: Loss, act, x: np.ndarray, W: np.ndarray, t: np.ndarray,
                      h: float = H) -> np.ndarray:
    """``dL/dW`` for a stack of batches of one size: ``x`` (B, n, d+1), ``W`` (B, d+1, k),
    ``t`` (B, n, k) -> (B, d+1, k), by the 4th-order central difference on each weight."""
    B, shape = len(W), W.shape[1:]
    m = int(np.prod(shape))
    E = np.eye(m).reshape(m, *shape)                            # (m, d+1, k) unit weights
    offsets = np.concatenate([c * h * E for c in (1.0, -1.0, 2.0, -2.0)])   # (4m, d+1, k)
    Ws = W[:, None] + offsets                                   # (B, 4m, d+1, k)
    L = loss.value(act, x[:, None], Ws, t[:, None]).reshape(B, 4, m)
    return ((8.0 * (L[:, 0] - L[:, 1]) - (L[:, 2] - L[:, 3])) / (12.0 * h)).reshape(B, *shape)


def numeric_gradient(loss: Loss, act, x: np.ndarray, W: np.ndarray, t: np.ndarray,
                     h: float = H) -> np.ndarray:
    """``dL/dW`` on one batch by the 4th-order central difference on each weight; ``W``'s shape."""
    return numeric_gradients(loss, act, x[None], W[None], t[None], h)[0]


# --- precision ---

def tolerance(dtype) -> float:
    """The relative tolerance for a step of ``dtype``: ``GRAD_TOL`` for float64, growing with the
    square root of the machine epsilon for less precise floats (never below ``GRAD_TOL``)."""
    return _precision(np.dtype(dtype))[1]


@functools.lru_cache(maxsize=None)
def _precision(dtype: np.dtype) -> tuple[str, float]:
    eps = float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else _EPS64
    return dtype.name, GRAD_TOL * math.sqrt(max(eps, _EPS64) / _EPS64)


_F64 = np.dtype(np.float64)


def step_dtype(out) -> np.dtype:
    """The precision of a returned step: its dtype if a float, or float32 (float16) when a
    float64 (or integer) array holds only values of that type, as after a conversion."""
    arr = np.asarray(out)
    if arr.dtype.kind == "f" and arr.dtype != _F64:
        return arr.dtype
    if arr.size and arr.dtype == _F64:
        first = float(arr.flat[0])
        if math.isfinite(first) and float(np.float32(first)) != first:
            return _F64                                    # the usual case, decided by one value
    with np.errstate(over="ignore", invalid="ignore"):
        wide = arr.astype(np.float64)
        for narrow in (np.float16, np.float32):
            if np.array_equal(wide.astype(narrow).astype(np.float64), wide):
                return np.dtype(narrow)
    return _F64


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


def batch_cycle(n_batches: int, batch_sizes=DEFAULT_BATCH_SIZES) -> tuple[int, ...]:
    """The sizes of ``n_batches`` batches, cycling through ``batch_sizes``."""
    sizes = tuple(int(n) for n in batch_sizes)
    return tuple(sizes[i % len(sizes)] for i in range(n_batches))


def make_batches(rng: np.random.Generator, d: int, k: int,
                 batch_sizes=DEFAULT_BATCH_SIZES, h: float = H) -> list[Batch]:
    """Random batches for ``d`` features and ``k`` outputs, one per entry of ``batch_sizes``
    (docs/checker.md, "What it draws": their distribution and the conditions each meets; with
    ``k == 1`` the targets are binary 0/1)."""
    sizes = [int(n) for n in batch_sizes]
    out: list[Batch | None] = [None] * len(sizes)
    where: dict[int, list[int]] = {}
    for i, n in enumerate(sizes):
        where.setdefault(n, []).append(i)
    for n in sorted(where):
        slots, found = where[n], []
        for _ in range(1000):
            want = len(slots) - len(found)
            if want == 0:
                break
            m = 2 * want + 8                                        # a few percent are redrawn
            x = np.concatenate([rng.normal(size=(m, n, d)), np.ones((m, n, 1))], axis=2)
            if k == 1:
                t = rng.integers(0, 2, size=(m, n, 1)).astype(float)
            else:
                t = np.eye(k)[rng.integers(0, k, size=(m, n))]      # (m, n, k) one-hot
            W = rng.normal(scale=1.0 / math.sqrt(d + 1), size=(m, d + 1, k))
            net = x @ W
            # the stencil moves net_j by up to 2h|x_i|: keep every net twice that far from 0
            ok = ((np.abs(net).min(axis=(1, 2)) > 4.0 * h * np.abs(x).max(axis=(1, 2)))
                  & (net > 0).any(axis=(1, 2)))
            found += [Batch(x[j], W[j], t[j]) for j in np.flatnonzero(ok)[:want]]
        else:  # pragma: no cover - the conditions hold for most draws
            raise RuntimeError(f"no batch of {n} found for d={d}, k={k}")
        for i, b in zip(slots, found):
            out[i] = b
    return out  # type: ignore[return-value]


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
    dtype: str = "float64"            # the step's precision (``step_dtype``)
    tol: float = GRAD_TOL             # ``tolerance(dtype)``

    @property
    def n(self) -> int:
        return len(self.batch.x)

    @property
    def downhill(self) -> bool:
        """The step lowers the loss to first order: cosine with ``-grad`` above the tolerance."""
        return self.cosine is not None and self.cosine > self.tol


def _inputs(act, batch: Batch):
    net = batch.x @ batch.W                       # (n, d+1) @ (d+1, k) -> (n, k)
    z = act.f(net)
    return net, z, (batch.t - z) * act.df(net)


def _call_step(rule: Callable, act, batch: Batch, inputs=None) -> tuple[np.ndarray, np.dtype]:
    """The rule's step on ``batch`` as float64 and its precision; ``inputs``: ``(net, z,
    delta)`` if already computed."""
    net, z, delta = _inputs(act, batch) if inputs is None else inputs
    out = rule(batch.x.copy(), net.copy(), z.copy(), batch.t.copy(), delta.copy())
    dtype = step_dtype(out)
    step = np.asarray(out, dtype=float)           # a loaded rule has already checked the type
    if not np.isfinite(step).all():
        raise ValueError(f"the rule returned non-finite values (activation {getattr(act, 'name', act)!r})")
    return step, dtype


def _call(rule: Callable, act, batch: Batch) -> np.ndarray:
    """The rule's step on ``batch`` under ``act``, as float64."""
    return _call_step(rule, act, batch)[0]


def _norms(a: np.ndarray) -> np.ndarray:
    return np.sqrt((a * a).sum(axis=(1, 2)))


def _stacks(checks: list[BatchCheck], steps: list[np.ndarray]):
    return (np.stack([c.batch.x for c in checks]), np.stack([c.batch.W for c in checks]),
            np.stack([c.batch.t for c in checks]), np.stack(steps))


def _compare(checks: list[BatchCheck], steps: list[np.ndarray], act) -> None:
    """Fill in the comparisons with ``-grad`` for ``checks`` (one batch size, steps that fit)."""
    X, W, T, S = _stacks(checks, steps)
    D = -numeric_gradients(LOSSES[REFERENCE], act, X, W, T)
    g2 = (D * D).sum(axis=(1, 2))
    if np.any(g2 < 1e-16):  # pragma: no cover - make_batches keeps a positive net, so never 0
        raise RuntimeError("reference gradient is 0 on a checked batch")
    s_norm, dot = _norms(S), (S * D).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(s_norm > 0, dot / (s_norm * np.sqrt(g2)), 0.0)
        rel_dev = _norms(S - D) / np.sqrt(g2)
        scale = dot / g2
        scaled = scale[:, None, None] * D
        scale_rel_dev = np.where(scale != 0, _norms(S - scaled) / _norms(scaled), np.inf)
    for i, c in enumerate(checks):
        c.cosine, c.rel_dev = float(cosine[i]), float(rel_dev[i])
        c.scale, c.scale_rel_dev = float(scale[i]), float(scale_rel_dev[i])


def _compare_loss(name: str, checks: list[BatchCheck], steps: list[np.ndarray], act) -> bool:
    """Fill in ``loss_rel_dev[name]`` where loss ``name`` applies; whether it applies and its
    negative gradient equals the step (within the tolerance) on every batch given."""
    loss = LOSSES[name]
    X, W, T, S = _stacks(checks, steps)
    applies = np.broadcast_to(loss.applies(act, X, W, T), (len(checks),))
    if not applies.any():
        return False
    G = -numeric_gradients(loss, act, X[applies], W[applies], T[applies])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = _norms(S[applies] - G) / _norms(G)
    rel = np.where(np.isnan(rel), np.inf, rel)
    ok = bool(applies.all())
    for c, r in zip((c for c, a in zip(checks, applies) if a), rel):
        c.loss_rel_dev[name] = float(r)
        ok = ok and r <= c.tol
    return ok


def _by_size(checks: list[BatchCheck], indices) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i in indices:
        groups.setdefault(checks[i].n, []).append(i)
    return list(groups.values())


def check_batches(rule: Callable, act, batches: list[Batch], probe: int | None = None
                  ) -> list[BatchCheck]:
    """Call ``rule`` on each batch under ``act`` and compare its steps with ``-grad``. Once a
    step misfits ``W``, the rule is called only on the first ``probe`` batches (default: all).
    Another loss's gradient is compared on the first ``probe`` batches where the step fits and,
    only if it matched on all of them, on the rest (``loss_rel_dev`` stops where it failed)."""
    probe = len(batches) if probe is None else probe
    inputs: list = [None] * len(batches)          # (net, z, delta) per batch, computed per size
    for idx in _by_size([SimpleNamespace(n=len(b.x)) for b in batches], range(len(batches))):
        X = np.stack([batches[i].x for i in idx])
        T = np.stack([batches[i].t for i in idx])
        net = X @ np.stack([batches[i].W for i in idx])
        z = act.f(net)
        delta = (T - z) * act.df(net)
        for j, i in enumerate(idx):
            inputs[i] = (net[j], z[j], delta[j])
    checks, steps, misfit = [], [], False
    for i, b in enumerate(batches):
        if misfit and i >= probe:
            break
        step, dtype = _call_step(rule, act, b, inputs[i])
        fit = shape_fit(step.shape, b.W.shape)
        name, tol = _precision(dtype)
        checks.append(BatchCheck(b, tuple(step.shape), fit, dtype=name, tol=tol))
        steps.append(step)
        misfit = misfit or fit != "right"
    fitting = [i for i, c in enumerate(checks) if c.fit == "right"]
    for idx in _by_size(checks, fitting):
        _compare([checks[i] for i in idx], [steps[i] for i in idx], act)
    for name in OTHER_LOSSES:
        for stage in (fitting[:probe], fitting[probe:]):
            matched = [_compare_loss(name, [checks[i] for i in idx], [steps[i] for i in idx], act)
                       for idx in _by_size(checks, stage)]
            if not all(matched):
                break
    return checks


def check_batch(rule: Callable, act, batch: Batch) -> BatchCheck:
    """Call ``rule`` on ``batch`` under activation ``act`` and compare its step with ``-grad``."""
    return check_batches(rule, act, [batch])[0]


def downhill_share(checks: list[BatchCheck]) -> tuple[int, int, float | None, list | None]:
    """``(downhill, n, share, [low, high])``: how many of the ``n`` batches the step pointed
    downhill on, and the share's ``CONFIDENCE`` Clopper-Pearson interval (None for no batch)."""
    n = len(checks)
    if n == 0:
        return 0, 0, None, None
    from scipy.stats import binomtest

    k = sum(c.downhill for c in checks)
    ci = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return k, n, k / n, [float(ci.low), float(ci.high)]


def verdict_of(checks: list[BatchCheck]) -> tuple[str, float | None]:
    """The verdict (and ``scale`` for ``gradient_scaled``) for batches whose steps all fit."""
    if not checks:
        return SHAPE_MISMATCH, None
    if all(c.rel_dev <= c.tol for c in checks):
        return "gradient", None
    for name in OTHER_LOSSES:
        if all(c.loss_rel_dev.get(name, math.inf) <= c.tol for c in checks):
            return f"other_loss_gradient:{name}", None
    scales = [c.scale for c in checks]
    tol = max(c.tol for c in checks)
    if (all(c.scale_rel_dev <= c.tol for c in checks) and min(scales) > 0
            and max(scales) - min(scales) <= tol * max(scales)):
        return "gradient_scaled", float(np.mean(scales))
    _, _, _, ci = downhill_share(checks)
    return ("descent" if ci[1] >= DESCENT_SHARE else "not_descent"), None


def _stats(checks: list[BatchCheck]) -> tuple[float | None, float | None, float | None]:
    if not checks:
        return None, None, None
    cos = [c.cosine for c in checks]
    return float(np.mean(cos)), float(min(cos)), float(max(c.rel_dev for c in checks))


def _worst_fit(fits) -> str:
    fits = set(fits)
    return "right" if fits == {"right"} else "broadcast" if "broadcast" in fits else "wrong"


def _share_fields(obj, checks: list[BatchCheck]) -> None:
    obj.downhill, obj.n_compared, obj.downhill_share, obj.downhill_ci = downhill_share(checks)
    obj.tolerance = max((c.tol for c in checks), default=None)
    obj.dtypes = sorted({c.dtype for c in checks})


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
    n_compared: int = 0                      # batches where the step fits and was compared
    downhill: int = 0                        # of those, where it pointed downhill
    downhill_share: float | None = None
    downhill_ci: list | None = None          # CONFIDENCE Clopper-Pearson interval of the share
    tolerance: float | None = None           # the relative tolerance used (largest over batches)
    dtypes: list = field(default_factory=list)   # the steps' precisions

    def __post_init__(self):
        self.fit = _worst_fit(b.fit for b in self.batches)
        fitting = self.batches if self.fit == "right" else []
        self.verdict, self.scale = verdict_of(fitting)
        self.cosine_mean, self.cosine_min, self.max_rel_dev = _stats(fitting)
        _share_fields(self, fitting)

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
            "n_compared": self.n_compared, "downhill": self.downhill,
            "downhill_share": self.downhill_share, "downhill_ci": self.downhill_ci,
            "tolerance": self.tolerance, "dtypes": self.dtypes,
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
    n_compared: int = 0
    downhill: int = 0
    downhill_share: float | None = None
    downhill_ci: list | None = None
    tolerance: float | None = None
    dtypes: list = field(default_factory=list)

    def __post_init__(self):
        fitting = [s for s in self.shapes if s.fit == "right"]
        checks = [b for s in fitting for b in s.batches]
        self.verdict, self.scale = verdict_of(checks)
        self.shape = _worst_fit(s.fit for s in self.shapes)
        if fitting and len(fitting) < len(self.shapes):
            self.fits_only = [s.label for s in fitting]
        self.cosine_mean, self.cosine_min, self.max_rel_dev = _stats(checks)
        _share_fields(self, checks)

    def to_json(self) -> dict:
        return {
            "activation": self.activation, "verdict": self.verdict, "scale": self.scale,
            "cosine_mean": self.cosine_mean, "cosine_min": self.cosine_min,
            "max_rel_dev": self.max_rel_dev, "shape": self.shape, "fits_only": self.fits_only,
            "n_compared": self.n_compared, "downhill": self.downhill,
            "downhill_share": self.downhill_share, "downhill_ci": self.downhill_ci,
            "tolerance": self.tolerance, "dtypes": self.dtypes,
            "shapes": [s.to_json() for s in self.shapes],
        }


def check_rule(rule: Callable, *, activations=None, shapes=DEFAULT_SHAPES,
               batch_sizes=DEFAULT_BATCH_SIZES, seed: int = 0,
               n_batches: int = DEFAULT_N_BATCHES) -> list[ActivationResult]:
    """Check ``rule`` (the user signature) under each activation; one result per activation.

    ``activations``: names from ``ACTIVATIONS`` (default: all). ``shapes``: ``(d, k)`` pairs.
    ``n_batches`` batches per shape, their sizes cycling through ``batch_sizes``. Every
    activation is checked on the same batches, drawn from ``np.random.default_rng(seed)``.
    Exceptions from ``rule`` propagate (a rule from ``slnn.core.rulefile`` raises a one-line
    ``RuleLoadError``).
    """
    names = list(ACTIVATIONS) if activations is None else list(activations)
    unknown = [a for a in names if a not in ACTIVATIONS]
    if unknown:
        raise ValueError(f"unknown activation(s) {unknown}: choose from {sorted(ACTIVATIONS)}")
    if n_batches < 1 or not batch_sizes:
        raise ValueError(f"need n_batches >= 1 and some batch_sizes, got {n_batches}, "
                         f"{batch_sizes!r}")
    rng = np.random.default_rng(seed)
    sizes = batch_cycle(n_batches, batch_sizes)
    batches = {(d, k): make_batches(rng, d, k, sizes) for d, k in shapes}
    probe = min(len(batch_sizes), n_batches)
    results = []
    for name in names:
        act = ACTIVATIONS[name]
        per_shape = [ShapeCheck(d, k, check_batches(rule, act, batches[d, k], probe))
                     for d, k in shapes]
        results.append(ActivationResult(name, per_shape))
    return results
