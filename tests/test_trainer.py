"""Tests for slnn.core.trainer and the compiled kernels: run with `python -m pytest tests/test_trainer.py -q`.

The full compiled-vs-NumPy grid compiles every activation x rule pair (~3 s each) and is marked
`slow`; deselect it with `-m 'not slow'`.

The compiled path may reassociate sums and fuse multiply-adds, so it is held to the NumPy
reference at a relative tolerance of 1e-12 (``RTOL``), not bit for bit; each path on its own is
bit-reproducible (same seed twice, identical bits).
"""

import math
import re
import warnings

import numpy as np
import pytest

from slnn.core.activations import ACTIVATIONS
from slnn.core.data import Dataset, load_dataset
from slnn.core.backend import Backend
from slnn.core.reference import epoch_numpy, evaluate_numpy
from slnn.core.rules import UPDATE_RULES
from slnn.core.trainer import HISTORY_COLUMNS, SAMPLINGS, init_weights, train, with_bias

ACT_NAMES = sorted(ACTIVATIONS)
COMPILED_RULES = sorted(n for n, r in UPDATE_RULES.items() if r.fast is not None)  # have a kernel
SPLITS = ("train", "val", "test")
RTOL = 1e-12  # compiled vs NumPy: the sums may be added in another order


@pytest.fixture(scope="module")
def petal():
    return load_dataset("iris_petal")


@pytest.fixture(scope="module")
def iris():
    return load_dataset("iris")


@pytest.fixture(scope="module")
def blobs():
    # wide enough for the compiled loops' SIMD bodies and remainders: d + 1 = 38 inputs (not a
    # multiple of 4), 5 outputs (one block of 4 and one left over), 75 training rows (odd)
    return load_dataset("blobs", n_samples=150, n_features=37, n_classes=5, seed=1)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _split(data, name):
    """(x with bias column, t) of one split, built here rather than by the trainer."""
    x, t = getattr(data, f"x_{name}"), getattr(data, f"t_{name}")
    return np.hstack([x, np.ones((x.shape[0], 1))]), t


def _evaluate(W, data, name, activation):
    """Independent loss and error: mean (t - z)^2 over samples and outputs, argmax mismatch rate."""
    x1, t = _split(data, name)
    z = ACTIVATIONS[activation].f(x1 @ W)  # (n, d+1) @ (d+1, k) -> (n, k)
    loss = np.mean((t - z) ** 2)
    error = np.mean([np.argmax(z[r]) != np.argmax(t[r]) for r in range(len(t))])
    return loss, error


# --- compiled kernel == NumPy reference ---

def _assert_backends_agree(data, activation, rule, batch_size, sampling, epochs=5, seed=7, **kw):
    args = dict(activation=activation, rule=rule, lr=0.2, epochs=epochs, batch_size=batch_size,
                sampling=sampling) | kw
    ref = train(data, backend="numpy", rng=_rng(seed), **args)
    fast = train(data, backend="compiled", rng=_rng(seed), **args)
    assert fast.outcome == ref.outcome
    assert fast.epochs_run == ref.epochs_run and fast.steps_run == ref.steps_run
    np.testing.assert_array_equal(fast.W_initial, ref.W_initial)
    # the runs moved away from the start, so agreement below is not 0 == 0
    assert not np.allclose(ref.W_final, ref.W_initial)
    np.testing.assert_allclose(fast.W_final, ref.W_final, rtol=RTOL, atol=0)
    assert fast.history.keys() == ref.history.keys()
    for c in HISTORY_COLUMNS:
        np.testing.assert_allclose(fast.history[c], ref.history[c], rtol=RTOL, atol=0,
                                   equal_nan=True, err_msg=c)
    return ref


@pytest.mark.parametrize("activation, rule", [("sigmoid", "input"), ("sigmoid", "kronecker")])
@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_compiled_matches_numpy(petal, activation, rule, batch_size, sampling):
    _assert_backends_agree(petal, activation, rule, batch_size, sampling)


@pytest.mark.parametrize("rule, batch_size", [("input", 1), ("input", 4)])
def test_compiled_matches_numpy_on_wide_data(blobs, rule, batch_size):
    # iris_petal's 3 x 3 weights never reach the vectorized loops; these 38 x 5 do
    _assert_backends_agree(blobs, "sigmoid", rule, batch_size, "shuffle", epochs=3, lr=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ACT_NAMES)
@pytest.mark.parametrize("rule", COMPILED_RULES)
def test_compiled_matches_numpy_full_grid(petal, activation, rule):
    for batch_size in (1, 4):
        for sampling in SAMPLINGS:
            _assert_backends_agree(petal, activation, rule, batch_size, sampling)


def test_compiled_matches_numpy_on_a_diverging_run(petal):
    # the cut-short epoch and the non-finite evaluation after it, on both paths
    args = dict(activation="linear", rule="input", lr=10.0, epochs=20, steps_per_epoch=1)
    a = train(petal, backend="numpy", rng=_rng(1), **args)
    b = train(petal, backend="compiled", rng=_rng(1), **args)
    assert a.outcome == b.outcome == "diverged"
    assert a.epochs_run == b.epochs_run
    np.testing.assert_allclose(b.W_final, a.W_final, rtol=RTOL)
    for c in HISTORY_COLUMNS:
        np.testing.assert_allclose(b.history[c], a.history[c], rtol=RTOL, equal_nan=True, err_msg=c)


def test_compiled_evaluate_matches_numpy_on_nan_outputs():
    # weights that went non-finite give NaN outputs; the error rate must still match the reference
    act, rule = ACTIVATIONS["linear"], UPDATE_RULES["input"]
    W = np.array([[1.0, np.nan, 2.0]])  # no features, bias only: z = W[0]
    x1 = np.ones((1, 1))
    t = np.array([[0.0, 1.0, 0.0]])
    ref = evaluate_numpy(W, x1, t, act)
    fast = Backend(act, rule, compiled=True).evaluate(W, x1, t)
    assert fast[1] == ref[1]


def test_compiled_error_takes_the_first_maximum_and_the_first_nan_as_argmax_does():
    # every row of 4 outputs drawn from {0, 1, nan, inf, -inf}, against one-hot targets and
    # targets with ties: the compiled error of each row alone is np.argmax's verdict. A bias-only
    # W is the output itself (1 x w, no 0 x inf), so any output can be set exactly.
    import itertools

    act, rule = ACTIVATIONS["linear"], UPDATE_RULES["input"]
    fast = Backend(act, rule, compiled=True)
    values = (0.0, 1.0, np.nan, np.inf, -np.inf)
    targets = [np.eye(4)[j] for j in range(4)] + [
        np.array(v) for v in ([1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.5] * 4)]
    x1 = np.ones((1, 1))
    checked = wrong = 0
    with np.errstate(invalid="ignore"):
        for z in itertools.product(values, repeat=4):
            W = np.array([z])
            for t in targets:
                expected = float(np.argmax(np.array(z)) != np.argmax(t))
                assert fast.evaluate(W, x1, t[None, :])[1] == expected, (z, t)
                checked += 1
                wrong += expected
    assert checked == 625 * 7 and 0 < wrong < checked


@pytest.mark.parametrize("lr", [1.0, 30.0])
def test_compiled_epoch_stops_at_the_update_that_made_a_weight_non_finite(blobs, lr):
    # linear x input at a learning rate that makes the weights overflow after a few hundred
    # updates (every delta is non-zero, so the cosine count is the count of updates made)
    act, rule = ACTIVATIONS["linear"], UPDATE_RULES["input"]
    x1, t = with_bias(blobs.x_train), blobs.t_train
    W0 = init_weights(x1.shape[1], t.shape[1], _rng(0), "uniform", 1e-3)
    idx = np.concatenate([_rng(s).permutation(x1.shape[0]) for s in range(20)]).astype(np.int64)
    fast, ref = Backend(act, rule, compiled=True), Backend(act, rule, compiled=False)

    def run(be, n_updates):
        W = W0.copy()
        with np.errstate(over="ignore", invalid="ignore"):
            out = be.epoch(W, x1, t, idx[:n_updates], 1, lr)
        return W, out

    W, (_, n, finite) = run(fast, len(idx))
    assert finite is False and 1 < n < len(idx)
    assert not np.isfinite(W).all()
    # it stopped right after the update that made a weight non-finite, with that update applied
    W_before, (_, _, finite_before) = run(fast, n - 1)
    assert finite_before is True and np.isfinite(W_before).all()
    W_at, (_, n_at, finite_at) = run(fast, n)
    assert finite_at is False and n_at == n and W_at.tobytes() == W.tobytes()
    # and that is the update at which the NumPy reference stops too
    assert run(ref, n - 1)[1][2] is True
    assert run(ref, n)[1][2] is False


def test_compiled_epoch_with_a_nan_input_diverges_where_the_reference_does(blobs):
    # a nan in x makes that sample's outputs nan while the weights are still finite: the epoch
    # goes on to that sample's update, which makes the weights nan, and ends there
    act, rule = ACTIVATIONS["sigmoid"], UPDATE_RULES["input"]
    x1, t = with_bias(blobs.x_train), blobs.t_train
    x1[5, 3] = np.nan
    idx = np.arange(x1.shape[0], dtype=np.int64)
    W_ref = init_weights(x1.shape[1], t.shape[1], _rng(0))
    W = W_ref.copy()
    with np.errstate(invalid="ignore"):
        _, _, ok_ref = epoch_numpy(W_ref, x1, t, idx, 1, 0.1, act, rule)
        _, n, ok = Backend(act, rule, compiled=True).epoch(W, x1, t, idx, 1, 0.1)
    assert ok_ref is False and ok is False
    assert n == 6  # samples 0-5 applied (the reference does not count the nan step's cosine)
    np.testing.assert_array_equal(np.isnan(W), np.isnan(W_ref))
    np.testing.assert_allclose(W, W_ref, rtol=RTOL, equal_nan=True)


# --- determinism ---

@pytest.mark.parametrize("backend", ["numpy", "compiled"])
def test_same_seed_same_run_different_seed_different_run(petal, backend):
    args = dict(activation="sigmoid", rule="input", lr=0.3, epochs=4, batch_size=4, backend=backend)
    a, b = train(petal, rng=_rng(3), **args), train(petal, rng=_rng(3), **args)
    c = train(petal, rng=_rng(4), **args)
    np.testing.assert_array_equal(a.W_final, b.W_final)
    for col in HISTORY_COLUMNS:
        np.testing.assert_array_equal(a.history[col], b.history[col])  # nan == nan here
    assert not np.array_equal(a.W_final, c.W_final)
    assert not np.array_equal(a.W_initial, c.W_initial)


@pytest.mark.parametrize("rule, batch_size", [("input", 1), ("input", 4), ("kronecker", 1)])
def test_compiled_backend_is_bit_reproducible(petal, blobs, rule, batch_size):
    # the compiled sums may differ from NumPy's in the last bits, but never from run to run
    data = petal if rule == "kronecker" else blobs
    args = dict(activation="sigmoid", rule=rule, lr=0.1, epochs=3, batch_size=batch_size,
                backend="compiled")
    a, b = train(data, rng=_rng(11), **args), train(data, rng=_rng(11), **args)
    assert a.W_final.tobytes() == b.W_final.tobytes()
    for col in HISTORY_COLUMNS:
        assert a.history[col].tobytes() == b.history[col].tobytes(), col


# --- grad_cosine ---

@pytest.mark.parametrize("backend", ["numpy", "compiled"])
def test_grad_cosine_of_input_rule_is_one(petal, backend):
    r = train(petal, activation="sigmoid", rule="input", lr=0.2, epochs=5, batch_size=4,
              backend=backend, rng=_rng(0))
    assert math.isnan(r.history["grad_cosine"][0])  # no update before epoch 1
    np.testing.assert_allclose(r.history["grad_cosine"][1:], 1.0, rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
@pytest.mark.parametrize("batch_size, steps", [(1, 1), (1, 3), (4, 1)])
def test_grad_cosine_of_kronecker_rule_replayed_by_hand(petal, backend, batch_size, steps):
    lr = 0.5
    r = train(petal, activation="sigmoid", rule="kronecker", lr=lr, epochs=1, batch_size=batch_size,
              steps_per_epoch=steps, sampling="sequential", backend=backend, rng=_rng(2))
    x1, t = _split(petal, "train")
    f, df = ACTIVATIONS["sigmoid"].f, ACTIVATIONS["sigmoid"].df
    W = r.W_initial.copy()
    cosines = []
    for u in range(steps):
        rows = range(u * batch_size, (u + 1) * batch_size)  # sequential: rows 0, 1, 2, ...
        step, grad = np.zeros((3, 3)), np.zeros((3, 3))
        for s in rows:
            net = x1[s] @ W                     # (3,) @ (3, 3) -> (3,)
            z = f(net)
            delta = (t[s] - z) * df(net)
            step += np.outer(z, delta) / batch_size      # the guide's kron(z^T, delta)
            grad += np.outer(x1[s], delta) / batch_size  # the true negative gradient
        cosines.append(np.sum(step * grad) / (np.linalg.norm(step) * np.linalg.norm(grad)))
        W += lr * step
    assert abs(np.mean(cosines)) < 0.999  # a real cosine, not the input rule's 1
    assert r.history["grad_cosine"][1] == pytest.approx(np.mean(cosines), rel=1e-10)
    np.testing.assert_allclose(r.W_final, W, rtol=1e-10)


# --- outcomes ---

def test_kronecker_on_iris_is_a_shape_mismatch(iris):
    r = train(iris, activation="sigmoid", rule="kronecker", epochs=5, rng=_rng(0))
    assert r.outcome == "shape_mismatch"
    assert r.epochs_run == 0 and r.steps_run == 0
    assert "(3, 3)" in r.reason and "(5, 3)" in r.reason
    assert r.W_initial.shape == (5, 3)
    np.testing.assert_array_equal(r.W_final, r.W_initial)
    assert all(len(r.history[c]) == 0 for c in HISTORY_COLUMNS)
    assert all(math.isnan(v) for v in r.final.values())


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
def test_huge_learning_rate_diverges_without_raising(petal, backend):
    # one update per epoch, so the blow-up takes more than one epoch to pass divergence_loss
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = train(petal, activation="linear", rule="input", lr=10.0, epochs=50, steps_per_epoch=1,
                  divergence_loss=1e4, backend=backend, rng=_rng(1))
    assert r.outcome == "diverged"
    assert 1 <= r.epochs_run < 50
    h = r.history
    assert len(h["epoch"]) == r.epochs_run + 1
    for c in HISTORY_COLUMNS:
        values = h[c][1:-1] if c == "grad_cosine" else h[c][:-1]
        assert np.isfinite(values).all(), c
    assert h["train_loss"][:-1].max() <= 1e4 < h["train_loss"][-1]
    assert f"epoch {r.epochs_run}" in r.reason
    # the recorded loss is the loss of the weights it returned
    assert h["train_loss"][-1] == pytest.approx(_evaluate(r.W_final, petal, "train", "linear")[0],
                                                rel=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
def test_non_finite_weights_diverge_without_raising(petal, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = train(petal, activation="linear", rule="input", lr=1e300, epochs=5, backend=backend,
                  rng=_rng(0))
    assert r.outcome == "diverged"
    assert "non-finite" in r.reason
    assert not np.isfinite(r.W_final).all()
    assert r.epochs_run < 5
    assert np.isfinite(r.history["train_loss"][:-1]).all()
    # the epoch that ended with non-finite weights has no figures (argmax of nan would say
    # class 0), and the final figures are those of the epoch before, computed here afresh
    last = {c: r.history[c][-1] for c in HISTORY_COLUMNS}
    assert last["epoch"] == r.epochs_run
    assert all(math.isnan(last[c]) for c in HISTORY_COLUMNS if c not in ("epoch", "step")), last
    assert r.final_epoch == r.epochs_run - 1 == 0  # lr 1e300: the first epoch blows up
    loss, error = _evaluate(r.W_initial, petal, "test", "linear")
    assert r.final["test_error"] == pytest.approx(error, abs=1e-15)
    assert r.final["test_loss"] == pytest.approx(loss, rel=1e-12)
    assert r.final["epoch"] == r.final_epoch


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
def test_divergence_by_loss_with_finite_weights_keeps_its_real_final_figures(petal, backend):
    r = train(petal, activation="linear", rule="input", lr=10.0, epochs=50, steps_per_epoch=1,
              divergence_loss=1e4, backend=backend, rng=_rng(1))
    assert r.outcome == "diverged" and np.isfinite(r.W_final).all()
    assert r.final_epoch == r.epochs_run
    loss, error = _evaluate(r.W_final, petal, "test", "linear")
    assert r.final["test_error"] == pytest.approx(error, abs=1e-15)
    assert r.final["train_loss"] > 1e4


def test_chance_error_answers_the_training_majority_on_the_test_split(petal, iris):
    for data in (petal, iris):
        r = train(data, activation="sigmoid", rule="kronecker", epochs=1, rng=_rng(0))
        majority = np.bincount(np.argmax(data.t_train, axis=1), minlength=3).argmax()
        test = np.argmax(data.t_test, axis=1)
        assert r.chance_error == pytest.approx(np.mean(test != majority), abs=1e-15)
        assert r.n_classes == 3
    assert r.outcome == "shape_mismatch" and r.final_epoch == -1  # iris: still known


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
def test_large_target_val_loss_converges_at_epoch_1(petal, backend):
    # outputs lie in (0, 1) and targets in {0, 1}, so the loss is below 1 < 10 after any epoch
    r = train(petal, activation="sigmoid", target_val_loss=10.0, epochs=20, backend=backend,
              rng=_rng(0))
    assert r.outcome == "converged"
    assert r.epochs_run == 1 and len(r.history["epoch"]) == 2
    assert "10" in r.reason


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
@pytest.mark.parametrize("patience", [1, 3])
def test_no_learning_stops_after_patience_epochs(petal, patience, backend):
    # lr = 0: W never moves, so every epoch's val loss equals epoch 1's. The best starts at epoch 1
    # (epoch 0 is recorded but does not seed the best), and each later epoch is one without a new
    # best, so the run stops at epoch 1 + patience.
    r = train(petal, activation="sigmoid", lr=1e-300, patience=patience, epochs=20, backend=backend,
              rng=_rng(0))
    assert r.outcome == "early_stopped"
    assert r.epochs_run == 1 + patience
    np.testing.assert_array_equal(r.W_final, r.W_initial)
    assert np.all(r.history["val_loss"] == r.history["val_loss"][0])
    assert str(patience) in r.reason


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
@pytest.mark.parametrize("ending", ["max_epochs", "early_stopped", "converged", "diverged"])
def test_epochs_in_chunks_give_the_run_of_one_epoch_at_a_time(petal, monkeypatch, backend, ending):
    """train() runs epochs in chunks (one backend call each, ending at each snapshot's epoch):
    the run is bit for bit the one made a single epoch per call, wherever the run ends, in the
    middle of a chunk or at its end, and the snapshots are the weights of their epochs."""
    import slnn.core.trainer as trainer

    options = {"max_epochs": {}, "early_stopped": {"patience": 3, "lr": 2.0},
               "converged": {"target_val_loss": 0.095},
               "diverged": {"activation": "linear", "lr": 3.0}}[ending]
    args = dict(activation="sigmoid", lr=0.5, epochs=40, snapshots=3, backend=backend) | options
    runs = {}
    for chunk_epochs in (1, 7, 1000):  # one epoch per call, uneven chunks, the whole run
        monkeypatch.setattr(trainer, "CHUNK_UPDATES", chunk_epochs * petal.n_train)
        runs[chunk_epochs] = train(petal, rng=_rng(3), **args)
    one = runs[1]
    assert one.outcome == ending, (one.outcome, one.reason)
    assert ending == "max_epochs" or one.epochs_run < 40  # it ended inside the run
    for r in (runs[7], runs[1000]):
        assert (r.outcome, r.reason, r.epochs_run, r.steps_run, r.final_epoch) == \
            (one.outcome, one.reason, one.epochs_run, one.steps_run, one.final_epoch)
        np.testing.assert_array_equal(r.W_final, one.W_final)
        for c in HISTORY_COLUMNS:
            np.testing.assert_array_equal(r.history[c], one.history[c], err_msg=c)
        assert r.snapshots.keys() == one.snapshots.keys()
        for e in one.snapshots:
            np.testing.assert_array_equal(r.snapshots[e], one.snapshots[e])


def test_plain_run_ends_at_max_epochs(petal):
    r = train(petal, activation="sigmoid", epochs=6, batch_size=4, backend="numpy", rng=_rng(0))
    assert r.outcome == "max_epochs"
    assert r.epochs_run == 6
    assert r.steps_run == 6 * math.ceil(petal.n_train / 4)


# --- history ---

@pytest.mark.parametrize("batch_size, steps_per_epoch", [(1, None), (4, None), (2, 7)])
def test_history_columns(petal, batch_size, steps_per_epoch):
    seen = []
    r = train(petal, activation="tanh", lr=0.1, epochs=4, batch_size=batch_size,
              steps_per_epoch=steps_per_epoch, backend="numpy", rng=_rng(5), on_epoch=seen.append)
    h = r.history
    assert set(h) == set(HISTORY_COLUMNS)
    n_steps = steps_per_epoch or -(-petal.n_train // batch_size)
    np.testing.assert_array_equal(h["epoch"], np.arange(r.epochs_run + 1))
    np.testing.assert_array_equal(h["step"], n_steps * h["epoch"])
    assert r.steps_run == n_steps * r.epochs_run
    for name in SPLITS:
        loss0, err0 = _evaluate(r.W_initial, petal, name, "tanh")
        assert h[f"{name}_loss"][0] == pytest.approx(loss0, rel=1e-12)
        assert h[f"{name}_error"][0] == pytest.approx(err0, abs=1e-15)
        lossN, errN = _evaluate(r.W_final, petal, name, "tanh")
        assert h[f"{name}_loss"][-1] == pytest.approx(lossN, rel=1e-12)
        assert h[f"{name}_error"][-1] == pytest.approx(errN, abs=1e-15)
    assert h["weight_norm"][0] == pytest.approx(np.sqrt(np.sum(r.W_initial ** 2)), rel=1e-12)
    assert h["weight_norm"][-1] == pytest.approx(np.sqrt(np.sum(r.W_final ** 2)), rel=1e-12)
    # the callback saw the same rows, in order
    assert [row["epoch"] for row in seen] == list(range(r.epochs_run + 1))
    for c in HISTORY_COLUMNS:
        np.testing.assert_array_equal([row[c] for row in seen], h[c])
    assert r.final["val_error"] == h["val_error"][-1]


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
def test_final_val_error_is_that_of_the_final_weights(petal, backend):
    r = train(petal, activation="sigmoid", lr=0.3, epochs=5, backend=backend, rng=_rng(9))
    loss, error = _evaluate(r.W_final, petal, "val", "sigmoid")
    assert r.final["val_error"] == pytest.approx(error, abs=1e-15)
    assert r.final["val_loss"] == pytest.approx(loss, rel=1e-12)


def test_with_bias_appends_a_column_of_ones_last():
    x = np.arange(6.0).reshape(3, 2)
    x1 = with_bias(x)
    np.testing.assert_array_equal(x1[:, :2], x)
    np.testing.assert_array_equal(x1[:, 2], 1.0)


# --- learning ---

def test_input_rule_learns_iris_petal(petal):
    r = train(petal, activation="sigmoid", rule="input", lr=0.5, epochs=100, rng=_rng(0))
    h = r.history
    assert r.outcome == "max_epochs"
    assert r.final["val_error"] < 0.2
    assert h["val_loss"][-1] < h["val_loss"][0]


@pytest.mark.parametrize("activation", ACT_NAMES)
def test_xor_is_not_learned_by_a_single_layer(activation):
    # for a strictly increasing f, argmax f(x @ W) = argmax (x @ W): the predicted class is decided
    # by the sign of one affine function of x, and no line separates XOR, so at least 1 of 4 rows is
    # wrong. (relu is only non-decreasing: its ties can represent XOR, see the next test, so for it
    # this is what gradient training does, not a theorem.)
    data = load_dataset("gates", gate="xor")
    for seed in range(3):
        r = train(data, activation=activation, rule="input", lr=0.5, epochs=200, backend="numpy",
                  rng=_rng(seed))
        assert r.history["train_error"].min() >= 0.25, (activation, seed)


def test_a_single_layer_does_learn_and():
    # the contrast that makes the xor test mean something: the same loop learns a separable gate
    data = load_dataset("gates", gate="and")
    r = train(data, activation="sigmoid", rule="input", lr=0.5, epochs=200, backend="numpy",
              rng=_rng(0))
    assert r.final["train_error"] == 0.0


def test_relu_ties_can_represent_xor():
    # net0 = 2 x0 + 2 x1 - 2, net1 = x0 + x1 - 0.5: class 1 (z1 > z0) exactly where
    # 0.5 < x0 + x1 < 1.5; at 00 both outputs are relu'd to 0 and the tie goes to class 0
    data = load_dataset("gates", gate="xor")
    W = np.array([[2.0, 1.0], [2.0, 1.0], [-2.0, -0.5]])
    assert _evaluate(W, data, "train", "relu")[1] == 0.0
    assert evaluate_numpy(W, with_bias(data.x_train), data.t_train, ACTIVATIONS["relu"])[1] == 0.0


# --- initialization ---

def test_uniform_init_lies_in_minus_scale_scale():
    scale = 0.3
    W = init_weights(200, 100, _rng(0), "uniform", scale)
    assert W.shape == (200, 100)
    assert np.abs(W).max() <= scale
    assert np.abs(W).max() > 0.99 * scale  # fills the interval, not a narrower one
    assert abs(W.mean()) < 0.01


def test_glorot_init_bound():
    n_in, n_out, scale = 200, 100, 1.5
    a = scale * math.sqrt(6 / (n_in + n_out))
    W = init_weights(n_in, n_out, _rng(1), "glorot", scale)
    assert np.abs(W).max() <= a
    assert np.abs(W).max() > 0.99 * a


@pytest.mark.parametrize("init, bound", [("uniform", 0.05), ("glorot", 0.05 * math.sqrt(6 / 6))])
def test_train_uses_init_and_init_scale(petal, init, bound):
    r = train(petal, epochs=1, init=init, init_scale=0.05, backend="numpy", rng=_rng(0))
    assert r.W_initial.shape == (3, 3)
    assert np.abs(r.W_initial).max() <= bound


def test_unknown_options_fail_with_the_valid_names(petal):
    with pytest.raises(ValueError, match=re.escape("['glorot', 'uniform']")):
        train(petal, init="zeros", epochs=1, backend="numpy", rng=_rng(0))
    with pytest.raises(ValueError, match="random.*sequential.*shuffle"):
        train(petal, sampling="cyclic", epochs=1, backend="numpy", rng=_rng(0))
    with pytest.raises(ValueError, match="auto.*compiled.*numpy"):
        train(petal, backend="gpu", epochs=1, rng=_rng(0))
    with pytest.raises(ValueError, match="'softmax'"):
        train(petal, activation="softmax", epochs=1, backend="numpy", rng=_rng(0))


# --- snapshots ---

def test_snapshots_are_inside_the_run_and_are_the_weights_then(petal):
    r = train(petal, activation="sigmoid", lr=0.3, epochs=8, snapshots=3, backend="numpy",
              rng=_rng(0))
    assert len(r.snapshots) == 3
    assert all(0 < e <= 8 for e in r.snapshots)
    for e, W in r.snapshots.items():
        assert W.shape == r.W_final.shape
        # the snapshot is W at the end of epoch e: it reproduces that epoch's recorded loss
        assert r.history["val_loss"][e] == pytest.approx(_evaluate(W, petal, "val", "sigmoid")[0],
                                                         rel=1e-12)
    # copies, not views of the live weights
    assert len({W.tobytes() for W in r.snapshots.values()}) == 3


def test_a_dataset_built_by_hand_trains():
    # Dataset is plain arrays: one feature, two well-separated classes, and no validation split
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    t = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    empty_x, empty_t = np.empty((0, 1)), np.empty((0, 2))
    data = Dataset("hand", x, t, empty_x, empty_t, x, t, ("x",), ("a", "b"))
    r = train(data, activation="sigmoid", lr=1.0, epochs=50, target_val_loss=10.0, patience=1,
              backend="numpy", rng=_rng(0))
    # with no validation split, neither target_val_loss nor patience can stop the run
    assert r.outcome == "max_epochs" and r.epochs_run == 50
    assert np.isnan(r.history["val_loss"]).all()
    assert r.final["test_error"] == 0.0


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("n, count", [(75, 75), (10, 4), (7, 16), (1, 1)])
def test_a_chunks_draws_are_those_of_one_epoch_at_a_time(sampling, n, count):
    """train() draws a chunk's sample indices in one call where it can; they must be the
    indices, and leave the generator in the state, of ``take`` called once per epoch (which is
    what NumPy's ``permuted`` and ``integers`` do today; this holds them to it)."""
    from slnn.core.trainer import _IndexStream

    one, many = _IndexStream(n, sampling, _rng(11)), _IndexStream(n, sampling, _rng(11))
    for epochs in (1, 5, 3):
        expected = np.concatenate([one.take(count) for _ in range(epochs)])
        got = many.take_epochs(epochs, count)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)
    assert one.rng.integers(0, 2**62) == many.rng.integers(0, 2**62)


def test_a_chunk_counts_the_evaluation_so_one_call_stays_short(monkeypatch):
    """With one update per epoch, an epoch is mostly the evaluation of three splits: a chunk's
    size counts those rows too, so no backend call runs more than CHUNK_UPDATES updates plus
    evaluated rows (a compiled call cannot be interrupted: Ctrl-C and progress wait for it)."""
    import slnn.core.trainer as trainer
    from slnn.core.backend import Backend
    from slnn.core.data import load_dataset

    digits = load_dataset("digits")
    rows = digits.n_train + len(digits.x_val) + len(digits.x_test)
    calls = []
    real = Backend.epochs

    def counting(self, W, sets, idx, n_epochs, *args):
        calls.append((n_epochs, len(idx)))
        return real(self, W, sets, idx, n_epochs, *args)

    monkeypatch.setattr(Backend, "epochs", counting)
    r = trainer.train(digits, activation="sigmoid", lr=0.1, epochs=300, steps_per_epoch=1,
                      snapshots=0, rng=_rng(0))
    assert r.epochs_run == 300
    assert sum(n for n, _ in calls) == 301  # epoch 0, then every epoch once
    assert all(n * (1 + rows) <= trainer.CHUNK_UPDATES or n == 1 for n, _ in calls), calls
    assert max(n for n, _ in calls) == trainer.CHUNK_UPDATES // (1 + rows)


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
def test_an_empty_training_split_is_a_result_not_a_crash(petal, backend):
    import dataclasses

    empty = dataclasses.replace(petal, x_train=petal.x_train[:0], t_train=petal.t_train[:0])
    r = train(empty, activation="sigmoid", epochs=5, backend=backend, rng=_rng(0))
    assert r.outcome == "diverged" and "training loss nan" in r.reason and r.epochs_run == 1


@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_a_pruned_run_stops_at_the_check_it_was_told_to_with_the_weights_of_that_epoch(backend):
    """``check_every=k``: a True from ``on_epoch`` at the k-th epoch stops the run there as
    ``pruned``, its history and weights those of a run that was given exactly that many epochs
    (same seed); a True at an epoch between checks is not a stop."""
    data = load_dataset("iris_petal")
    kw = dict(activation="tanh", rule="input", lr=0.05, epochs=40, patience=None,
              target_val_loss=None, backend=backend)
    asked = []

    def prune(row):
        asked.append(row["epoch"])
        return row["epoch"] >= 7  # true from epoch 7 on: the first check after it is epoch 10

    cut = train(data, rng=np.random.default_rng(3), on_epoch=prune, check_every=5, **kw)
    short = train(data, rng=np.random.default_rng(3), **{**kw, "epochs": 10})
    assert cut.outcome == "pruned" and "epoch 10" in cut.reason
    assert cut.epochs_run == 10 and asked == list(range(11))
    np.testing.assert_array_equal(cut.W_final, short.W_final)
    for col in HISTORY_COLUMNS:
        np.testing.assert_array_equal(cut.history[col], short.history[col])
    never = train(data, rng=np.random.default_rng(3), on_epoch=lambda row: False, check_every=5,
                  **kw)
    assert never.outcome == "max_epochs" and never.epochs_run == 40
