"""The training loop: a single-layer network ``z = f([x, 1] @ W)`` trained by a chosen update
rule; plain values in, plain results out (no Hydra, no MLflow), e.g. from a notebook::

    train(load_dataset("iris_petal"), rule="kronecker", lr=0.1, rng=np.random.default_rng(3))

The settings are typed specs that check their values once, when made (``ModelSpec``,
``UpdateSpec``, ``OptimSpec``, ``TrainSpec``, held by a ``RunSpec``); the command line's
``Config`` is a ``RunSpec`` and is passed here as it is."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Optional

import numpy as np

from slnn.core.activations import ACTIVATIONS, get_activation
from slnn.core.backend import Backend, Stops
from slnn.core.compiled.templates import (GOES_ON, LOSS_BLEW_UP, NO_PROGRESS, NOT_FINITE,
                                          TARGET_REACHED)
from slnn.core.errors import ConfigError
from slnn.core.errors import check_choice as _choice  # one line, with the nearest choice
from slnn.core.errors import check_positive as _positive
from slnn.core.outcomes import Outcome
from slnn.core.rules import (CUSTOM, UPDATE_RULES, ShapeMismatch, check_shape, resolve_rule,
                             rule_choices)

SAMPLINGS = ("shuffle", "random", "sequential")
# updates plus evaluated rows per backend call at most (whole epochs; one epoch if an epoch is
# longer): Python's cost per call is paid once per chunk, a call stays a fraction of a second on
# the built-in data sets, and the chunk's sample indices stay small (1 MB)
CHUNK_UPDATES = 1 << 17
PRUNED = -1  # why a run stopped, beside the backends' reasons: a search's pruner said so
INITS = ("uniform", "glorot")
BACKENDS = ("auto", "compiled", "numpy")
HISTORY_COLUMNS = (
    "epoch", "step", "train_loss", "val_loss", "test_loss", "train_error", "val_error",
    "test_error", "grad_cosine", "weight_norm",
)
LOSSES = ("train_loss", "val_loss", "test_loss")


def chance_error(t_train: np.ndarray, t_test: np.ndarray) -> float:
    """The test error of always answering the training split's commonest class (one-hot targets,
    (n, k); ties to the lowest class index): the chance level a predictor could know, unlike the
    test split's own majority. nan for an empty split."""
    if t_train.shape[0] == 0 or t_test.shape[0] == 0:
        return math.nan
    majority = int(np.argmax(t_train.sum(axis=0)))
    return float(1.0 - t_test[:, majority].sum() / t_test.shape[0])


@dataclass
class ModelSpec:
    """The network: ``z = activation([x, 1] @ W)``, ``W`` drawn by ``init`` (see ``init_weights``)."""

    activation: str = "sigmoid"
    init: str = "uniform"
    init_scale: float = 0.5

    def __post_init__(self):
        _choice("model.activation", self.activation, ACTIVATIONS)
        _choice("model.init", self.init, INITS)
        _positive("model.init_scale", self.init_scale, 0.5, allow_zero=True)


@dataclass
class UpdateSpec:
    """Which update rule trains ``W``: a key of ``slnn.core.rules.UPDATE_RULES``, or ``custom``
    with ``fn`` naming the user's ``FILE.py:FUNCTION`` (``slnn.core.custom``)."""

    rule: str = "input"
    fn: Optional[str] = None

    def __post_init__(self):
        _choice("update.rule", self.rule, rule_choices())
        if self.rule == CUSTOM and not self.fn:
            raise ConfigError("update=custom needs update.fn=FILE.py:FUNCTION (your step "
                              "function), e.g. update.fn=my_rules.py:my_step")
        if self.fn and self.rule != CUSTOM:
            raise ConfigError(f"update.fn={self.fn} is given but update={self.rule} is a built-in "
                              f"rule: set update=custom to train {self.fn}, or drop update.fn")


@dataclass
class OptimSpec:
    """Plain SGD with a fixed learning rate ``lr`` (the guide: 0.1)."""

    lr: float = 0.1

    def __post_init__(self):
        _positive("optim.lr", self.lr, 0.1)


@dataclass
class TrainSpec:
    """The training loop; see ``train`` for what each setting does."""

    epochs: int = 100
    batch_size: int = 1
    sampling: str = "shuffle"
    steps_per_epoch: Optional[int] = None  # None: one pass over the training set
    patience: Optional[int] = None  # None: no early stopping
    target_val_loss: Optional[float] = None  # the guide stops at 0.1
    divergence_loss: float = 1.0e4
    snapshots: int = 5
    backend: str = "auto"

    def __post_init__(self):
        _positive("train.epochs", self.epochs, 100)
        _positive("train.batch_size", self.batch_size, 1)
        _choice("train.sampling", self.sampling, SAMPLINGS)
        _choice("train.backend", self.backend, BACKENDS)
        if self.steps_per_epoch is not None:
            _positive("train.steps_per_epoch", self.steps_per_epoch, 10)
        if self.patience is not None:
            _positive("train.patience", self.patience, 10)
        if self.target_val_loss is not None:
            _positive("train.target_val_loss", self.target_val_loss, 0.1)
        _positive("train.divergence_loss", self.divergence_loss, 1e4)
        _positive("train.snapshots", self.snapshots, 5, allow_zero=True)


@dataclass
class RunSpec:
    """Everything ``train`` needs besides the data and the random generator."""

    model: ModelSpec = field(default_factory=ModelSpec)
    update: UpdateSpec = field(default_factory=UpdateSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    train: TrainSpec = field(default_factory=TrainSpec)

    def __post_init__(self):
        rule = self.update.rule
        if self.train.backend == "compiled" and (rule == CUSTOM or UPDATE_RULES[rule].fast is None):
            raise ConfigError(f"update={rule} has no compiled form: set train.backend=auto (or "
                              "numpy), which trains it on the NumPy path")

    @classmethod
    def of(cls, **options) -> "RunSpec":
        """A spec from flat keywords: ``RunSpec.of(activation="tanh", lr=0.5, epochs=20)``; each
        keyword goes to the part that has a field of that name (``rule`` to ``update``)."""
        parts = {"model": ModelSpec, "update": UpdateSpec, "optim": OptimSpec, "train": TrainSpec}
        given: dict[str, dict] = {p: {} for p in parts}
        owner = {f.name: p for p, c in parts.items() for f in fields(c)}
        for key, value in options.items():
            if key not in owner:
                raise TypeError(f"unknown training option {key!r}: choose from {sorted(owner)}")
            given[owner[key]][key] = value
        return cls(**{p: c(**given[p]) for p, c in parts.items()})


@dataclass
class TrainResult:
    """What one training run produced.

    ``history`` maps each name in ``HISTORY_COLUMNS`` to an array with one entry per epoch,
    starting with epoch 0 (the initial weights, before any update). An epoch that ended with
    non-finite weights has nan for every figure (losses, errors, grad_cosine, weight_norm): the
    argmax of nan outputs is class 0, an artefact, not an error rate.

    ``final_epoch`` is the last epoch whose figures are finite (weights finite, and the loss of
    every non-empty split finite); ``final`` is that epoch's row. For a run that diverged with
    non-finite weights it is the epoch before; for one that diverged by its training loss with
    finite weights it is the last epoch, whose figures are real. -1 when it never trained.
    ``chance_error`` is the test error of answering the training split's majority class
    (``chance_error``) and ``n_classes`` is k (uniform guessing errs 1 - 1/k).
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
    final_epoch: Optional[int] = None  # None: the last epoch of the history
    chance_error: float = math.nan
    n_classes: int = 0

    def __post_init__(self):
        if self.final_epoch is None:
            e = self.history.get("epoch", np.empty(0))
            self.final_epoch = int(e[-1]) if len(e) else -1

    @property
    def final(self) -> dict[str, float]:
        """The figures of ``final_epoch`` (nan where the run never trained)."""
        if self.final_epoch < 0 or len(self.history["epoch"]) == 0:
            return {c: math.nan for c in HISTORY_COLUMNS}
        i = int(np.flatnonzero(self.history["epoch"] == self.final_epoch)[0])
        return {c: float(v[i]) for c, v in self.history.items()}


def with_bias(x: np.ndarray) -> np.ndarray:
    """``[x, 1]``: append the bias input as the last column, (n, d) -> (n, d + 1)."""
    return np.hstack([x, np.ones((x.shape[0], 1))])


def init_weights(n_in: int, n_out: int, rng: np.random.Generator, init: str = "uniform",
                 scale: float = 0.5) -> np.ndarray:
    """Initial ``W`` of shape (n_in, n_out), ``n_in = n_features + 1``.

    ``uniform``: U[-scale, scale] (the guide: scale 0.5). ``glorot``: U[-a, a] with
    ``a = scale * sqrt(6 / (n_in + n_out))`` (Glorot and Bengio's choice is scale 1). ``init`` is
    one of ``INITS``, as ``ModelSpec`` checked.
    """
    a = scale if init == "uniform" else scale * math.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-a, a, size=(n_in, n_out))


class _IndexStream:
    """The order in which samples are visited, continued across epochs (``sampling``: one of
    ``SAMPLINGS``, as ``TrainSpec`` checked)."""

    def __init__(self, n: int, sampling: str, rng: np.random.Generator):
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

    def take_epochs(self, epochs: int, count: int) -> np.ndarray:
        """``epochs`` successive ``take(count)`` draws, concatenated: the same indices and the
        same generator state after, in one call to the generator where the draws allow it
        (NumPy's ``permuted`` row by row and ``integers`` draw as the single calls would; the
        tests hold this to one ``take`` at a time)."""
        if self.sampling == "random":
            return self.rng.integers(0, self.n, size=epochs * count)
        if count == self.n and len(self._buf) == 0:
            rows = np.tile(np.arange(self.n, dtype=np.int64), (epochs, 1))
            return (self.rng.permuted(rows, axis=1) if self.sampling == "shuffle" else rows).ravel()
        return np.concatenate([self.take(count) for _ in range(epochs)])


def _snapshot_epochs(epochs: int, n: int) -> set[int]:
    if n <= 0:
        return set()
    return {int(round(e)) for e in np.linspace(0, epochs, n + 2)[1:-1]} - {0}


def train(data, spec: RunSpec | None = None, *, rng: np.random.Generator | None = None,
          on_epoch: Callable[[dict], bool | None] | None = None, check_every: int = 0,
          **options) -> TrainResult:
    """Train ``W`` of shape (n_features + 1, n_outputs) on ``data`` (an ``slnn.core.data.Dataset``).

    ``spec`` is a ``RunSpec`` (the command line passes its whole config, which is one); or give
    its fields as keywords, e.g. ``train(data, activation="tanh", rule="input", lr=0.1)``.
    Each epoch makes ``steps_per_epoch`` updates (default: one pass, ``ceil(n_train /
    batch_size)``), each from ``batch_size`` samples drawn by ``sampling``, then evaluates every
    split. It stops at ``epochs``, when the validation loss falls below ``target_val_loss``
    (``converged``), after ``patience`` epochs without a new best validation loss
    (``early_stopped``), or when the weights or the training loss blow up (``diverged``). A rule
    whose step does not have ``W``'s shape ends at once as ``shape_mismatch``. Nothing raises for
    those outcomes: they are results. ``on_epoch(row)`` is called with each history row; with
    ``check_every=k``, epochs run in chunks that end at every k-th epoch, and ``on_epoch``
    returning True at such an epoch stops the run there as ``pruned`` (a search's pruner).
    """
    if spec is None:
        spec = RunSpec.of(**options)
    elif options:
        raise TypeError("give either a RunSpec or keywords, not both")
    m, t = spec.model, spec.train
    epochs, batch_size = t.epochs, t.batch_size
    rng = rng if rng is not None else np.random.default_rng()
    act, upd = get_activation(m.activation), resolve_rule(spec.update.rule, spec.update.fn)
    x_tr, x_va, x_te = with_bias(data.x_train), with_bias(data.x_val), with_bias(data.x_test)
    t_tr, t_va, t_te = data.t_train, data.t_val, data.t_test
    sets = ((x_tr, t_tr), (x_va, t_va), (x_te, t_te))
    n_in, n_out = x_tr.shape[1], t_tr.shape[1]
    W = init_weights(n_in, n_out, rng, m.init, m.init_scale)
    W0 = W.copy()
    empty = {c: np.empty(0) for c in HISTORY_COLUMNS}
    chance = chance_error(t_tr, t_te)
    try:
        check_shape(upd, W.shape)
    except ShapeMismatch as e:
        return TrainResult(Outcome.SHAPE_MISMATCH, str(e), W0, W.copy(), empty,
                           chance_error=chance, n_classes=n_out)

    # RunSpec has checked that train.backend=compiled names a rule with a compiled form
    compiled = t.backend == "compiled" or (t.backend == "auto" and upd.fast is not None)
    be = Backend(act, upd, compiled)
    stream = _IndexStream(x_tr.shape[0], t.sampling, rng)
    n_steps = t.steps_per_epoch or math.ceil(x_tr.shape[0] / batch_size)
    use_val = x_va.shape[0] > 0
    snap_at = _snapshot_epochs(epochs, t.snapshots)

    rows: list[tuple] = []
    snaps: dict[int, np.ndarray] = {}
    sized = [n > 0 for n in (x_tr.shape[0], x_va.shape[0], x_te.shape[0])]
    final_epoch = -1

    def record(epoch, step, cos, figures, w_finite) -> bool:
        nonlocal final_epoch
        if not w_finite:  # figures of non-finite weights would be artefacts: none
            row = (epoch, step) + (math.nan,) * (len(HISTORY_COLUMNS) - 2)
        else:
            l_tr, l_va, l_te, e_tr, e_va, e_te, norm = figures
            row = (epoch, step, l_tr, l_va, l_te, e_tr, e_va, e_te, cos, norm)
            if all(math.isfinite(v) for v, has in zip((l_tr, l_va, l_te), sized) if has):
                final_epoch = epoch
        rows.append(row)
        return bool(on_epoch(dict(zip(HISTORY_COLUMNS, row)))) if on_epoch is not None else False

    # the checks after each epoch, as the backends take them: nan / -1 for none
    stops = Stops(t.divergence_loss,
                  t.target_val_loss if use_val and t.target_val_loss is not None else math.nan,
                  t.patience if use_val and t.patience is not None else -1)
    best_bad = np.array([math.inf, 0.0])  # best validation loss, epochs since
    per_epoch = n_steps * batch_size
    # epochs run in chunks, one backend call each (the compiled path: Python once per chunk); a
    # chunk ends at each snapshot's epoch, so that the snapshot is W as that epoch left it. Its
    # size counts each epoch's updates and evaluated rows, so that a call stays short (Ctrl-C
    # and the progress line wait for it) however few updates an epoch makes
    work = per_epoch + x_tr.shape[0] + x_va.shape[0] + x_te.shape[0]
    chunk = max(1, CHUNK_UPDATES // max(1, work))
    snap_order = sorted(snap_at)
    why = GOES_ON
    epoch = steps = 0
    start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # epoch 0: every split evaluated on the initial weights, through the same compiled
        # function as the others (so a run compiles one), with no updates and no checks
        out = np.empty((1, 9))
        be.epochs(W, sets, np.empty(0, dtype=np.int64), 1, batch_size, spec.optim.lr,
                  Stops(math.inf, math.nan, -1), np.array([math.inf, 0.0]), out)
        record(0, 0, math.nan, out[0, 1:8].tolist(), True)
        while epoch < epochs and why == GOES_ON:
            n = min(epochs - epoch, chunk)
            upcoming = [e for e in snap_order if e > epoch]
            if upcoming:
                n = min(n, upcoming[0] - epoch)
            if check_every > 0:  # a chunk ends at each check, so a run stops where it is told
                n = min(n, check_every - epoch % check_every)
            # the same draws, in the same order, as one epoch at a time
            idx = stream.take_epochs(n, per_epoch)
            out = np.empty((n, 9))
            stop = False
            done, why = be.epochs(W, sets, idx, n, batch_size, spec.optim.lr, stops, best_bad, out)
            for row in out[:done].tolist():  # Python floats: cheaper to look at than NumPy's
                epoch += 1
                steps += n_steps
                stop = record(epoch, steps, row[0], row[1:8], row[8] == 1.0)
            if epoch in snap_at:
                snaps[epoch] = W.copy()
            if stop and why == GOES_ON and check_every > 0 and epoch % check_every == 0:
                why = PRUNED
    if why == PRUNED:
        outcome, reason = Outcome.PRUNED, f"stopped by the search's pruner in epoch {epoch}"
    elif why == NOT_FINITE:
        outcome, reason = Outcome.DIVERGED, f"weights became non-finite in epoch {epoch}"
    elif why == LOSS_BLEW_UP:
        outcome = Outcome.DIVERGED
        reason = (f"training loss {rows[-1][2]:.4g} exceeded {t.divergence_loss:g} in epoch "
                  f"{epoch}")
    elif why == TARGET_REACHED:
        outcome = Outcome.CONVERGED
        reason = f"validation loss {rows[-1][3]:.4g} < {t.target_val_loss:g} in epoch {epoch}"
    elif why == NO_PROGRESS:
        outcome = Outcome.EARLY_STOPPED
        reason = f"no new best validation loss for {t.patience} epochs (best {best_bad[0]:.4g})"
    else:
        outcome, reason = Outcome.MAX_EPOCHS, f"ran all {epochs} epochs"
    seconds = time.perf_counter() - start
    history = {c: np.array([r[i] for r in rows], dtype=np.float64) for i, c in enumerate(HISTORY_COLUMNS)}
    return TrainResult(outcome, reason, W0, W.copy(), history, snaps, epochs_run=len(rows) - 1,
                       steps_run=steps, train_seconds=seconds, final_epoch=final_epoch,
                       chance_error=chance, n_classes=n_out)
