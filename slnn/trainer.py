"""The training loop: a single-layer network ``z = f(x @ W)`` trained by a chosen update rule.

Plain values in, plain results out: no Hydra, no MLflow. From a notebook::

    import numpy as np
    from slnn.data import load_dataset
    from slnn.trainer import train
    result = train(load_dataset("iris_petal"), activation="sigmoid", rule="kronecker", lr=0.1,
                   epochs=50, rng=np.random.default_rng(3))
    result.outcome, result.history["val_loss"][-1]
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from slnn.activations import get_activation
from slnn.kernels import Backend
from slnn.rules import ShapeMismatch, check_shape, get_rule

SAMPLINGS = ("shuffle", "random", "sequential")
INITS = ("uniform", "glorot")
BACKENDS = ("auto", "compiled", "numpy")
OUTCOMES = ("converged", "max_epochs", "early_stopped", "diverged", "shape_mismatch")
HISTORY_COLUMNS = (
    "epoch", "step", "train_loss", "val_loss", "test_loss", "train_error", "val_error",
    "test_error", "grad_cosine", "weight_norm",
)


@dataclass
class TrainResult:
    """What one training run produced.

    ``history`` maps each name in ``HISTORY_COLUMNS`` to an array with one entry per epoch,
    starting with epoch 0 (the initial weights, before any update).
    """

    outcome: str
    reason: str
    W_initial: np.ndarray
    W_final: np.ndarray
    history: dict[str, np.ndarray]
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    epochs_run: int = 0
    steps_run: int = 0
    train_seconds: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's figures (nan where the run never trained)."""
        if len(self.history["epoch"]) == 0:
            return {c: math.nan for c in HISTORY_COLUMNS}
        return {c: float(v[-1]) for c, v in self.history.items()}


def with_bias(x: np.ndarray) -> np.ndarray:
    """``[x, 1]``: append the bias input as the last column, (n, d) -> (n, d + 1)."""
    return np.hstack([x, np.ones((x.shape[0], 1))])


def init_weights(n_in: int, n_out: int, rng: np.random.Generator, init: str = "uniform",
                 scale: float = 0.5) -> np.ndarray:
    """Initial ``W`` of shape (n_in, n_out), ``n_in = n_features + 1``.

    ``uniform``: U[-scale, scale] (the guide: scale 0.5). ``glorot``: U[-a, a] with
    ``a = scale * sqrt(6 / (n_in + n_out))`` (Glorot and Bengio's choice is scale 1).
    """
    if init == "uniform":
        a = scale
    elif init == "glorot":
        a = scale * math.sqrt(6.0 / (n_in + n_out))
    else:
        raise ValueError(f"unknown init {init!r}: choose one of {sorted(INITS)}")
    return rng.uniform(-a, a, size=(n_in, n_out))


class _IndexStream:
    """The order in which samples are visited, continued across epochs."""

    def __init__(self, n: int, sampling: str, rng: np.random.Generator):
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}: choose one of {sorted(SAMPLINGS)}")
        self.n, self.sampling, self.rng = n, sampling, rng
        self._buf = np.empty(0, dtype=np.int64)  # drawn but not yet used, for the next epoch

    def take(self, count: int) -> np.ndarray:
        if self.sampling == "random":
            # one random sample with replacement per draw, as the guide does
            return self.rng.integers(0, self.n, size=count)
        if count == self.n and len(self._buf) == 0:  # the common case: exactly one pass
            return self.rng.permutation(self.n) if self.sampling == "shuffle" else np.arange(self.n)
        while len(self._buf) < count:
            if self.sampling == "shuffle":
                nxt = self.rng.permutation(self.n)
            else:
                nxt = np.arange(self.n)
            self._buf = np.concatenate([self._buf, nxt])
        out, self._buf = self._buf[:count], self._buf[count:]
        return out.astype(np.int64)


def _snapshot_epochs(epochs: int, n: int) -> set[int]:
    if n <= 0:
        return set()
    return {int(round(e)) for e in np.linspace(0, epochs, n + 2)[1:-1]} - {0}


def train(data, *, activation: str = "sigmoid", rule: str = "input", lr: float = 0.1,
          epochs: int = 100, batch_size: int = 1, sampling: str = "shuffle",
          steps_per_epoch: int | None = None, patience: int | None = None,
          target_val_loss: float | None = None, init: str = "uniform", init_scale: float = 0.5,
          divergence_loss: float = 1e4, snapshots: int = 5, backend: str = "auto",
          rng: np.random.Generator | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``W`` of shape (n_features + 1, n_outputs) on ``data`` (an ``slnn.data.Dataset``).

    Each epoch makes ``steps_per_epoch`` updates (default: one pass, ``ceil(n_train /
    batch_size)``), each from ``batch_size`` samples drawn by ``sampling``, then evaluates every
    split. It stops at ``epochs``, when the validation loss falls below ``target_val_loss``
    (``converged``), after ``patience`` epochs without a new best validation loss
    (``early_stopped``), or when the weights or the training loss blow up (``diverged``). A rule
    whose step does not have ``W``'s shape ends at once as ``shape_mismatch``. Nothing raises for
    those outcomes: they are results.
    """
    rng = rng if rng is not None else np.random.default_rng()
    act, upd = get_activation(activation), get_rule(rule)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {sorted(BACKENDS)}")
    x_tr, x_va, x_te = with_bias(data.x_train), with_bias(data.x_val), with_bias(data.x_test)
    t_tr, t_va, t_te = data.t_train, data.t_val, data.t_test
    n_in, n_out = x_tr.shape[1], t_tr.shape[1]
    W = init_weights(n_in, n_out, rng, init, init_scale)
    W0 = W.copy()
    empty = {c: np.empty(0) for c in HISTORY_COLUMNS}
    try:
        check_shape(upd, W.shape)
    except ShapeMismatch as e:
        return TrainResult("shape_mismatch", str(e), W0, W.copy(), empty)

    compiled = backend == "compiled" or (backend == "auto" and upd.fast is not None)
    if compiled and upd.fast is None:
        raise ValueError(f"update rule {rule!r} has no compiled form: use backend=numpy or auto")
    be = Backend(act, upd, compiled)
    stream = _IndexStream(x_tr.shape[0], sampling, rng)
    n_steps = steps_per_epoch or math.ceil(x_tr.shape[0] / batch_size)
    use_val = x_va.shape[0] > 0
    snap_at = _snapshot_epochs(epochs, snapshots)

    rows: list[tuple] = []
    snaps: dict[int, np.ndarray] = {}

    def record(epoch, step, cos):
        l_tr, l_va, l_te, e_tr, e_va, e_te, norm = be.evaluate_all(W, x_tr, t_tr, x_va, t_va, x_te, t_te)
        row = (epoch, step, l_tr, l_va, l_te, e_tr, e_va, e_te, cos, norm)
        rows.append(row)
        if on_epoch is not None:
            on_epoch(dict(zip(HISTORY_COLUMNS, row)))
        return row

    outcome, reason = "max_epochs", f"ran all {epochs} epochs"
    best, bad = math.inf, 0
    steps = 0
    start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        record(0, 0, math.nan)
        for epoch in range(1, epochs + 1):
            idx = stream.take(n_steps * batch_size)
            cos_sum, cos_n, finite = be.epoch(W, x_tr, t_tr, idx, batch_size, lr)
            steps += n_steps
            row = record(epoch, steps, cos_sum / cos_n if cos_n else math.nan)
            if epoch in snap_at:
                snaps[epoch] = W.copy()
            train_loss, val_loss = row[2], row[3]
            if not finite or not math.isfinite(train_loss) or train_loss > divergence_loss:
                outcome = "diverged"
                reason = (f"weights became non-finite in epoch {epoch}" if not finite else
                          f"training loss {train_loss:.4g} exceeded {divergence_loss:g} in epoch {epoch}")
                break
            if use_val and target_val_loss is not None and val_loss < target_val_loss:
                outcome, reason = "converged", f"validation loss {val_loss:.4g} < {target_val_loss:g} in epoch {epoch}"
                break
            if use_val and patience is not None:
                if val_loss < best:
                    best, bad = val_loss, 0
                else:
                    bad += 1
                    if bad >= patience:
                        outcome = "early_stopped"
                        reason = f"no new best validation loss for {patience} epochs (best {best:.4g})"
                        break
    seconds = time.perf_counter() - start
    history = {c: np.array([r[i] for r in rows], dtype=np.float64) for i, c in enumerate(HISTORY_COLUMNS)}
    return TrainResult(outcome, reason, W0, W.copy(), history, snaps, epochs_run=len(rows) - 1,
                       steps_run=steps, train_seconds=seconds)
