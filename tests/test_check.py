"""Tests for slnn.check: the numerical reference, the verdicts, the gallery, the loader, the CLI.

Run with `python -m pytest -n 0 tests/test_check.py -q` (about a minute); the 30-seed sweep
of every rule is marked slow.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slnn.check import checker, gallery
from slnn.app import check_cli as cli
from scipy import stats

from slnn.check.checker import (ACTIVATIONS, DEFAULT_SHAPES, LOSSES, check_batch, check_rule, make_batches,
                                numeric_gradient, shape_fit)
from slnn.app.check_cli import main
from slnn.core.rulefile import RuleLoadError, digest, load_rule

ACT_NAMES = list(ACTIVATIONS)


@pytest.fixture(scope="module")
def batches():
    """The checker's own batches, per data shape (same seed as check_rule's default)."""
    rng = np.random.default_rng(0)
    return {(d, k): make_batches(rng, d, k) for d, k in DEFAULT_SHAPES}


def _analytic(act, b):
    """-dL/dW of each loss, from the textbook formulas (what the numerical reference must match)."""
    n = len(b.x)
    net = b.x @ b.W
    z, fp = act.f(net), act.df(net)
    sm = np.exp(net - net.max(axis=1, keepdims=True))
    sm /= sm.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ce = b.x.T @ ((b.t - z) / (z * (1 - z)) * fp) / n    # dBCE/dz = (z - t) / (z (1 - z))
    return {
        "mean_squared": b.x.T @ ((b.t - z) * fp) / n,
        "sum_squared": b.x.T @ ((b.t - z) * fp),
        "cross_entropy": ce,
        "softmax_cross_entropy": b.x.T @ (b.t - sm) / n,
    }


# --- the numerical reference ---

@pytest.mark.parametrize("name", ACT_NAMES)
def test_central_differences_match_the_analytic_gradient(name, batches):
    act = ACTIVATIONS[name]
    worst = {}
    for (d, k), bs in batches.items():
        for b in bs:
            for loss, expected in _analytic(act, b).items():
                if not LOSSES[loss].applies(act, b.x, b.W, b.t):
                    continue
                got = -numeric_gradient(LOSSES[loss], act, b.x, b.W, b.t)
                rel = np.linalg.norm(got - expected) / np.linalg.norm(expected)
                worst[loss] = max(worst.get(loss, 0.0), rel)
    assert worst["mean_squared"] < 1e-9, worst      # 10x inside the verdicts' 1e-8
    assert max(worst.values()) < 1e-9, worst
    if name in ("sigmoid", "guide_tanh"):           # outputs in (0, 1): cross-entropy checked
        assert "cross_entropy" in worst
    else:
        assert "cross_entropy" not in worst


def test_batches_avoid_relu_kink_and_dead_batches(batches):
    for (d, k), bs in batches.items():
        assert [len(b.x) for b in bs] == list(checker.DEFAULT_BATCH_SIZES)
        assert any(len(b.x) == 1 for b in bs) and any(len(b.x) > 1 for b in bs)
        for b in bs:
            net = b.x @ b.W
            assert b.x.shape == (len(b.x), d + 1) and np.all(b.x[:, -1] == 1)
            assert np.abs(net).min() > 4 * checker.H * np.abs(b.x).max()
            assert (net > 0).any()
    # relu's f' = 0 units occur, including on target units (where dropping f' matters)
    relu_off_target = [((b.x @ b.W < 0) & (b.t == 1)).any() for bs in batches.values() for b in bs]
    assert sum(relu_off_target) >= 5


@pytest.mark.parametrize("step, w, fit", [
    ((3, 3), (3, 3), "right"), ((1, 1), (4, 1), "broadcast"), ((1, 3), (6, 3), "broadcast"),
    ((3,), (6, 3), "broadcast"), ((), (6, 3), "broadcast"), ((1, 4), (4, 1), "wrong"),
    ((3, 6), (6, 3), "wrong"), ((2, 3), (3, 3), "wrong"), ((1, 6, 3), (6, 3), "wrong"),
])
def test_shape_fit(step, w, fit):
    assert shape_fit(step, w) == fit


# --- verdicts ---

def grad_matmul(x, net, z, t, delta):
    return x.T @ delta / len(x)


def grad_einsum(x, net, z, t, delta):
    return np.einsum("ni,nj->ij", x, delta) / x.shape[0]


def grad_loop(x, net, z, t, delta):
    n, d1 = x.shape
    k = delta.shape[1]
    step = [[0.0] * k for _ in range(d1)]
    for s in range(n):
        for i in range(d1):
            for j in range(k):
                step[i][j] += x[s][i] * delta[s][j] / n
    return step                                  # a list of lists: any array-like of numbers


def grad_float32(x, net, z, t, delta):
    return (x.T @ delta / len(x)).astype(np.float32)


def grad_float16(x, net, z, t, delta):
    return (x.T @ delta / len(x)).astype(np.float16)


def softmax_ce(x, net, z, t, delta):
    p = np.exp(net - net.max(axis=1, keepdims=True))
    return x.T @ (t - p / p.sum(axis=1, keepdims=True)) / len(x)


def first_sample_only(x, net, z, t, delta):
    return np.outer(x[0], delta[0])              # the gradient where n == 1, not elsewhere


def random_sign(x, net, z, t, delta):
    return _SIGNS.choice([-1.0, 1.0]) * x.T @ delta / len(x)


_SIGNS = np.random.default_rng(2024)


def half_gradient(x, net, z, t, delta):
    return 0.5 * x.T @ delta / len(x)


def per_output_factor(x, net, z, t, delta):
    return x.T @ delta / len(x) * np.arange(1.0, delta.shape[1] + 1)   # column j times j


# the verdict per activation (in ACT_NAMES order) each rule must get, whatever the seed
EXPECTED = {
    "input": ["gradient"] * 5,
    "kronecker": ["not_descent"] * 5,
    "no_derivative": ["other_loss_gradient:cross_entropy", "descent", "descent", "gradient",
                      "not_descent"],
    "ascent": ["not_descent"] * 5,
    "outer_transposed": ["not_descent"] * 5,
    "sum_not_mean": ["other_loss_gradient:sum_squared"] * 5,
    "sigmoid_shortcut": ["gradient", "not_descent", "gradient_scaled", "not_descent",
                         "not_descent"],
    "no_bias": ["shape_mismatch"] * 5,
    "grad_float32": ["gradient"] * 5,
    "softmax_ce": ["other_loss_gradient:softmax_cross_entropy"] * 5,
    "first_sample_only": ["not_descent"] * 5,
    "random_sign": ["not_descent"] * 5,
    "half_gradient": ["gradient_scaled"] * 5,
    "per_output_factor": ["descent"] * 5,
}
EXTRA = {f.__name__: f for f in (grad_float32, softmax_ce, first_sample_only, random_sign,
                                 half_gradient, per_output_factor)}
ALL_RULES = {**{name: g.step for name, g in gallery.GALLERY.items()}, **EXTRA}
assert set(ALL_RULES) == set(EXPECTED) and set(gallery.GALLERY) <= set(EXPECTED)


@pytest.fixture(scope="module")
def results():
    """check_rule (seed 0, the default batches) for each gallery rule and each extra rule, once:
    the verdicts at seed 0 and the tests that read one rule's results share them."""
    return {name: {r.activation: r for r in check_rule(step)} for name, step in ALL_RULES.items()}


@pytest.mark.parametrize("rule", [grad_matmul, grad_einsum, grad_loop])
def test_gradient_written_three_ways_is_gradient_everywhere(rule):
    res = check_rule(rule, n_batches=200)
    assert [r.activation for r in res] == ACT_NAMES
    for r in res:
        assert r.verdict == "gradient", (r.activation, r.verdict, r.max_rel_dev)
        assert r.max_rel_dev < 1e-9 and abs(r.cosine_min - 1) < 1e-12
        assert r.shape == "right" and r.fits_only is None
        assert [s.verdict for s in r.shapes] == ["gradient"] * len(DEFAULT_SHAPES)


def test_kronecker_shape_mismatch_where_it_does_not_fit(results):
    for r in results["kronecker"].values():
        by_shape = {(s.n_features, s.n_outputs): s for s in r.shapes}
        assert by_shape[2, 3].fit == "right"
        assert by_shape[2, 3].verdict == "not_descent"
        assert by_shape[5, 3].step_shapes == [(3, 3)] and by_shape[3, 2].step_shapes == [(2, 2)]
        for key in [(5, 3), (2, 4), (3, 2)]:
            s = by_shape[key]
            assert s.fit == "wrong" and s.verdict == "shape_mismatch" and s.cosine_mean is None
            assert s.n_compared == 0 and s.downhill_ci is None
            # a misfit is called on one cycle of batch sizes only
            assert [b.n for b in s.batches] == list(checker.DEFAULT_BATCH_SIZES)
        assert r.fits_only == ["d=2,k=3"]
        assert r.verdict == by_shape[2, 3].verdict       # the verdict where it fits
        assert r.n_compared == by_shape[2, 3].n_compared == checker.DEFAULT_N_BATCHES
        assert r.shape == "wrong"


@pytest.mark.parametrize("name", ACT_NAMES)
def test_kronecker_per_sample_cosine_is_cos_z_x(name, results):
    shape = next(s for s in results["kronecker"][name].shapes if (s.n_features, s.n_outputs) == (2, 3))
    singles = [b for b in shape.batches if b.n == 1]
    assert len(singles) >= 3
    f = ACTIVATIONS[name].f
    for b in singles:
        x = b.batch.x[0]
        z = f(x @ b.batch.W)
        expected = z @ x / (np.linalg.norm(z) * np.linalg.norm(x))
        assert b.cosine == pytest.approx(expected, abs=1e-9)
    assert len({round(b.cosine, 6) for b in singles}) > 0.9 * len(singles)   # not one constant


@pytest.mark.parametrize("name", ACT_NAMES)
def test_kronecker_cosine_on_samples_drawn_here(name):
    # the test's own samples (not make_batches'): x with a bias, 3 outputs, any W
    rng = np.random.default_rng(7)
    act = ACTIVATIONS[name]
    for _ in range(20):
        x = np.append(rng.normal(size=2), 1.0)[None, :]           # (1, 3)
        W = rng.normal(size=(3, 3))
        t = np.eye(3)[[rng.integers(3)]]
        z = act.f(x @ W)[0]
        if np.abs(x @ W).min() < 0.01 or not np.any((t - z) * act.df(x @ W)):
            continue                                              # kink or zero gradient
        got = check_batch(gallery.kronecker, act, checker.Batch(x, W, t)).cosine
        assert got == pytest.approx(z @ x[0] / (np.linalg.norm(z) * np.linalg.norm(x)), abs=1e-9)


def test_no_derivative_verdicts(results):
    r = results["no_derivative"]
    assert r["sigmoid"].verdict == "other_loss_gradient:cross_entropy"
    assert r["linear"].verdict == "gradient"         # f' = 1: the same formula
    # relu: f' = 0 units get pushed anyway; uphill on about 1 batch in 200
    assert r["relu"].verdict == "not_descent"
    assert 0.98 < r["relu"].downhill_share < 0.999
    # tanh: uphill on about 1 batch in 10,000, so descent, though not on every batch
    assert r["tanh"].verdict == "descent" and r["tanh"].downhill_share > 0.999


def test_ascent_is_not_descent_with_cosine_minus_one(results):
    for r in results["ascent"].values():
        assert r.verdict == "not_descent"
        assert r.cosine_mean == pytest.approx(-1, abs=1e-9)
        assert r.cosine_min == pytest.approx(-1, abs=1e-9)


def test_random_direction_is_not_descent():
    rng = np.random.default_rng(12345)

    def random_step(x, net, z, t, delta):
        return rng.normal(size=(x.shape[1], delta.shape[1]))

    for r in check_rule(random_step):
        assert r.verdict == "not_descent"
        assert r.cosine_min < 0 < max(b.cosine for s in r.shapes for b in s.batches)


def test_wrong_shape_rule_is_shape_mismatch():
    def transposed_loop(x, net, z, t, delta):
        return np.zeros((delta.shape[1], x.shape[1] + 1))     # never W's shape

    for r in check_rule(transposed_loop):
        assert r.verdict == "shape_mismatch" and r.shape == "wrong"
        assert r.cosine_mean is None and r.max_rel_dev is None and r.fits_only is None


def test_broadcast_shape_rule_is_shape_mismatch_not_checked_by_broadcasting():
    def column_means(x, net, z, t, delta):
        return (x.T @ delta / len(x)).mean(axis=0, keepdims=True)   # (1, k)

    for r in check_rule(column_means):
        assert r.verdict == "shape_mismatch" and r.shape == "broadcast"


def test_sum_not_mean_is_detected_at_batch_level(results):
    for r in results["sum_not_mean"].values():
        assert r.verdict == "other_loss_gradient:sum_squared"
        assert r.cosine_min == pytest.approx(1, abs=1e-12)
    # with batches of one sample only, summing and averaging cannot be told apart
    for r in check_rule(gallery.sum_not_mean, batch_sizes=(1, 1)):
        assert r.verdict == "gradient"


def test_constant_multiple_is_gradient_scaled():
    res = check_rule(lambda x, net, z, t, delta: 2 * x.T @ delta / len(x))
    for r in res:
        assert r.verdict == "gradient_scaled" and r.scale == pytest.approx(2, rel=1e-9)


def test_sigmoid_shortcut_depends_on_the_activation(results):
    r = results["sigmoid_shortcut"]
    assert r["sigmoid"].verdict == "gradient"
    assert r["guide_tanh"].verdict == "gradient_scaled"     # z (1 - z) = f'(net) / 2 there
    assert r["guide_tanh"].scale == pytest.approx(0.5, rel=1e-9)
    assert r["tanh"].verdict == "not_descent"


def test_softmax_cross_entropy_gradient_is_recognised(results):
    assert all(k >= 2 for _, k in DEFAULT_SHAPES)    # softmax of one output: no such loss
    for r in results["softmax_ce"].values():  # check_rule(softmax_ce)
        assert r.verdict == "other_loss_gradient:softmax_cross_entropy", r.activation
        assert [s.verdict for s in r.shapes] == [r.verdict] * len(DEFAULT_SHAPES)
        assert r.shapes[0].batches[-1].loss_rel_dev["softmax_cross_entropy"] < 1e-9
    # with a single output the loss is constant, so the same rule is no gradient there
    (r,) = check_rule(softmax_ce, activations=["tanh"], shapes=[(3, 1)], n_batches=64)
    assert not r.verdict.startswith("other_loss_gradient")


def test_outer_transposed_fits_only_the_square_shape(results):
    for r in results["outer_transposed"].values():
        assert r.fits_only == ["d=2,k=3"] and r.verdict != "gradient"


@pytest.mark.parametrize("name", list(gallery.GALLERY))
def test_gallery_shape_functions_match_the_steps(name, results):
    rule = gallery.GALLERY[name]
    for s in results[name]["sigmoid"].shapes:
        assert s.step_shapes == [tuple(rule.step_shape(*s.w_shape))]


def test_rule_gets_copies():
    def vandal(x, net, z, t, delta):
        step = x.T @ delta / len(x)
        for a in (x, net, z, t, delta):
            a[...] = 0.0
        return step

    assert {r.verdict for r in check_rule(vandal)} == {"gradient"}


def test_same_seed_same_result_other_seed_other_batches():
    a = check_rule(gallery.kronecker, activations=["sigmoid"], seed=3)[0]
    b = check_rule(gallery.kronecker, activations=["sigmoid"], seed=3)[0]
    c = check_rule(gallery.kronecker, activations=["sigmoid"], seed=4)[0]
    assert a.cosine_mean == b.cosine_mean and a.cosine_mean != c.cosine_mean


def test_json_of_results_is_plain(results):
    row = results["kronecker"]["sigmoid"].to_json()
    text = json.dumps(row, allow_nan=False)
    back = json.loads(text)
    assert back["fits_only"] == ["d=2,k=3"] and back["shapes"][1]["shape"] == "wrong"
    assert back["shapes"][1]["step"] == [[3, 3]] and back["shapes"][1]["W"] == [6, 3]
    assert back["n_compared"] == 1000 and back["downhill"] == round(1000 * back["downhill_share"])
    assert back["downhill_ci"][0] < back["downhill_share"] < back["downhill_ci"][1]
    assert back["tolerance"] == 1e-8 and back["dtypes"] == ["float64"]


# --- the downhill share, its interval and the thresholds ---

def _cp(k, n, level=0.95):
    """The Clopper-Pearson interval from the beta quantiles (not binomtest's code)."""
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else stats.beta.ppf(a, k, n - k + 1)
    hi = 1.0 if k == n else stats.beta.ppf(1 - a, k + 1, n - k)
    return lo, hi


@pytest.mark.parametrize("rule", ["kronecker", "no_derivative"])
def test_downhill_share_and_interval_against_an_independent_computation(rule, results):
    for r in results[rule].values():
        fitting = [b for s in r.shapes if s.fit == "right" for b in s.batches]
        k = sum(b.cosine > 1e-8 for b in fitting)
        assert (r.downhill, r.n_compared) == (k, len(fitting))
        assert r.downhill_share == k / len(fitting)
        assert r.downhill_ci == pytest.approx(_cp(k, len(fitting)), abs=1e-9)
        for s in r.shapes:
            if s.fit == "right":
                k = sum(b.cosine > 1e-8 for b in s.batches)
                assert s.downhill == k and s.downhill_ci == pytest.approx(_cp(k, len(s.batches)))


def _fake(n, uphill):
    """Checks of ``n`` batches, ``uphill`` of them pointing uphill (cosine -0.5), no gradient."""
    b = checker.Batch(np.ones((1, 2)), np.ones((2, 1)), np.ones((1, 1)))
    return [checker.BatchCheck(b, (2, 1), "right", cosine=-0.5 if i < uphill else 0.5,
                               rel_dev=1.0, scale=1.0, scale_rel_dev=1.0) for i in range(n)]


def test_descent_threshold_is_the_interval_reaching_0_999():
    for n in (10, 25, 26, 200, 1000, 4000):
        # the largest number of uphill batches whose interval still reaches 0.999
        allowed = max(u for u in range(n) if _cp(n - u, n)[1] >= checker.DESCENT_SHARE) \
            if _cp(n, n)[1] >= checker.DESCENT_SHARE else -1
        assert checker.verdict_of(_fake(n, 0))[0] == "descent"
        if allowed >= 0:
            assert checker.verdict_of(_fake(n, allowed))[0] == "descent"
        assert checker.verdict_of(_fake(n, allowed + 1))[0] == "not_descent"
    # as documented: one uphill batch is too many up to 25 batches; 8 of 4000 are allowed
    assert checker.verdict_of(_fake(25, 1))[0] == "not_descent"
    assert checker.verdict_of(_fake(26, 1))[0] == "descent"
    assert checker.verdict_of(_fake(4000, 8))[0] == "descent"
    assert checker.verdict_of(_fake(4000, 9))[0] == "not_descent"


def test_a_cosine_of_zero_is_not_downhill():
    def zero_step(x, net, z, t, delta):
        return np.zeros((x.shape[1], delta.shape[1]))

    for r in check_rule(zero_step, n_batches=40):
        assert r.verdict == "not_descent" and r.downhill == 0


# --- precision ---

def test_tolerance_follows_the_precision():
    assert checker.tolerance(np.float64) == 1e-8
    assert checker.tolerance(np.float32) == pytest.approx(1e-8 * 2 ** 14.5)     # 2.3e-4
    assert checker.tolerance(np.float16) == pytest.approx(1e-8 * 2 ** 21)       # 2.1e-2
    assert checker.tolerance(np.longdouble) == 1e-8                             # never below
    x = np.random.default_rng(0).normal(size=(3, 4))
    assert checker.step_dtype(x) == np.float64
    assert checker.step_dtype(x.astype(np.float32)) == np.float32
    assert checker.step_dtype(x.astype(np.float32).astype(float)) == np.float32   # converted
    assert checker.step_dtype(x.astype(np.float16).tolist()) == np.float16


@pytest.mark.parametrize("rule, dtype", [(grad_float32, "float32"), (grad_float16, "float16")])
def test_a_lower_precision_gradient_is_gradient(rule, dtype):
    for r in check_rule(rule, n_batches=400):
        assert r.verdict == "gradient", (r.activation, r.max_rel_dev)
        assert r.dtypes == [dtype] and r.tolerance == checker.tolerance(dtype)
        assert r.max_rel_dev > 1e-8        # the float64 tolerance would have refused it
    # the tolerance is the step's, not a loose one for everybody: 1e-6 off is not the gradient
    off = check_rule(lambda x, net, z, t, delta: (1 + 1e-6) * x.T @ delta / len(x),
                     n_batches=100)
    assert {r.verdict for r in off} == {"gradient_scaled"}


def test_a_float32_gradient_from_a_file_is_gradient(tmp_path):
    # the loader hands the checker float64 arrays: the values still say float32
    path = _write(tmp_path, "import numpy as np\ndef my_step(x, net, z, t, delta):\n"
                            "    return (x.T @ delta / len(x)).astype(np.float32)\n")
    res = check_rule(load_rule(f"{path}:my_step"), activations=["sigmoid", "relu"], n_batches=200)
    assert {r.verdict for r in res} == {"gradient"} and res[0].dtypes == ["float32"]
    from slnn.check.report import summarize
    text = summarize(res, "rule")
    assert "(to within 2.3e-4 relative on every batch checked): it is gradient descent" in text
    assert 'The step is float32, so "equals" means within 2.3e-4 relative' in text


# --- other rules ---

def test_scaled_rules(results):
    for r in check_rule(half_gradient, n_batches=200):
        assert r.verdict == "gradient_scaled" and r.scale == pytest.approx(0.5, rel=1e-9)
    for r in check_rule(per_output_factor, n_batches=200):   # not one constant: descent
        assert r.verdict == "descent" and r.downhill_share == 1


def test_first_sample_only_and_random_sign_are_not_descent(results):
    for r in results["first_sample_only"].values():  # check_rule(first_sample_only)
        assert r.verdict == "not_descent"
        single = [b for s in r.shapes for b in s.batches if b.n == 1]
        assert all(b.rel_dev < 1e-9 for b in single)          # the gradient where n == 1
        assert 0.85 < r.downhill_share < 0.999
    for r in check_rule(random_sign, n_batches=200):
        assert r.verdict == "not_descent"
        assert 0.4 < r.downhill_share < 0.6
        assert {round(abs(b.cosine), 9) for s in r.shapes for b in s.batches} == {1.0}


# --- the same verdict whatever the seed ---

def _verdicts(rule, seed, activations=None):
    return [r.verdict for r in check_rule(ALL_RULES[rule], seed=seed, activations=activations)]


@pytest.mark.parametrize("rule", list(EXPECTED))
def test_verdicts_at_seed_0(rule, results):
    assert [r.verdict for r in results[rule].values()] == EXPECTED[rule]


# the rules whose verdict rests on the downhill share near a threshold: uphill on about 1 batch
# in 10,000 (no_derivative with tanh), 1 in 200 (with relu), 1 in 100 (first_sample_only, every
# activation). no_derivative's other activations are exact identities, far from any threshold:
# the slow tier's 30 seeds check them with every activation of every rule
NEAR = {"no_derivative": ["tanh", "relu"], "first_sample_only": None}


@pytest.mark.parametrize("rule", list(NEAR))
def test_verdicts_near_the_threshold_are_the_same_for_5_seeds(rule):
    acts = NEAR[rule] or ACT_NAMES
    want = dict(zip(ACT_NAMES, EXPECTED[rule]))
    for seed in range(1, 5):
        assert _verdicts(rule, seed, acts) == [want[a] for a in acts], seed


@pytest.mark.slow
@pytest.mark.parametrize("rule", list(EXPECTED))
def test_verdicts_are_the_same_for_30_seeds(rule):
    for seed in range(30):
        assert _verdicts(rule, seed) == EXPECTED[rule], seed


# --- loader ---

GOOD = "import numpy as np\n\ndef my_step(x, net, z, t, delta):\n    return x.T @ delta / len(x)\n"


def _write(tmp_path, text, name="rule.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_rule_from_a_file_anywhere_and_check_it(tmp_path):
    path = _write(tmp_path, GOOD)
    rule = load_rule(f"{path}:my_step")
    assert rule.digest == digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert str(tmp_path) not in sys.path
    assert {r.verdict for r in check_rule(rule, activations=["sigmoid", "relu"])} == {"gradient"}


def test_load_rule_imports_the_file_not_a_module_on_sys_path(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "json.py").write_text("def my_step(x, net, z, t, delta):\n    return 'wrong one'\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    mine = tmp_path / "mine"
    mine.mkdir()
    path = _write(mine, GOOD, name="json.py")       # same name as the stdlib and the decoy
    rule = load_rule(f"{path}:my_step")
    x = np.ones((2, 3))
    assert rule(x, None, None, None, np.ones((2, 4))).shape == (3, 4)
    assert sys.modules["json"] is json             # nothing shadowed
    assert not (mine / "__pycache__").exists()     # nothing written next to the user's file


def test_digest_changes_with_the_bytes(tmp_path):
    path = _write(tmp_path, GOOD)
    before = digest(path)
    path.write_text(GOOD + "# edited\n")
    assert digest(path) != before and len(before) == 64


@pytest.mark.parametrize("text, func, words", [
    (None, "my_step", ["no such file"]),
    (GOOD, "other_step", ["no function 'other_step'", "my_step"]),
    ("my_step = 3\n", "my_step", ["'my_step' is a int, not a function"]),
    ("def my_step(x, net, z, t, delta)\n    return x\n", "my_step", ["syntax error", "line 1"]),
    ("import numpy as np\nnp.frobnicate()\ndef my_step(x, net, z, t, delta):\n    return x\n",
     "my_step", ["importing the file raised AttributeError", "frobnicate", "line 2"]),
    ("import sys\nsys.exit(3)\n", "my_step", ["importing the file raised SystemExit"]),
    ("def my_step(x, z, delta):\n    return x.T @ delta\n", "my_step",
     ["my_step(x, z, delta) cannot be called with the five arrays", "(x, net, z, t, delta)"]),
], ids=["missing-file", "missing-function", "not-callable", "syntax-error", "import-exception",
        "import-exit", "signature"])
def test_loader_errors_are_one_line_naming_file_and_function(tmp_path, text, func, words):
    path = tmp_path / "rule.py"
    if text is not None:
        path.write_text(text)
    with pytest.raises(RuleLoadError) as info:
        load_rule(f"{path}:{func}")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{func}: ")
    for w in words:
        assert w in msg, msg


def test_loader_rejects_a_spec_without_a_function(tmp_path):
    with pytest.raises(RuleLoadError, match="expected FILE.py:FUNCTION") as info:
        load_rule(str(tmp_path / "rule.py"))
    assert str(tmp_path / "rule.py") in str(info.value)


@pytest.mark.parametrize("body, words", [
    ("return x.T @ delta / 0.0 if False else 1 / 0", ["the function raised ZeroDivisionError",
                                                       "division by zero", "line 3"]),
    ("raise ValueError('shapes\\n  do not match')", ["raised ValueError: shapes do not match"]),
    ("x.T @ delta", ["returned None", "missing return"]),
    ("return 'a step'", ["returned a str, not an array of real numbers"]),
    ("return [[1.0, 2.0], [3.0]]", ["returned a list that is not an array of numbers"]),
    ("return np.array([['a', 'b']])", ["array of <U1, not an array of real numbers"]),
    ("return x.T @ delta * 1j", ["array of complex128"]),
    ("return x.T @ delta / 0.0", ["non-finite values", "nan or inf",
                                  "after RuntimeWarning at line 3: divide by zero"]),
    ("return np.full((x.shape[1], delta.shape[1]), np.inf)", ["non-finite values"]),
], ids=["exception", "multiline-message", "none", "str", "ragged", "strings", "complex",
        "nan", "inf"])
def test_loaded_rule_failures_are_one_line_naming_file_and_function(tmp_path, body, words):
    path = _write(tmp_path, f"import numpy as np\ndef my_step(x, net, z, t, delta):\n    {body}\n")
    rule = load_rule(f"{path}:my_step")
    with pytest.raises(RuleLoadError) as info:
        check_rule(rule, activations=["sigmoid"])
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}:my_step: ")
    for w in words:
        assert w in msg, msg


def test_loaded_rule_output_goes_to_stderr(tmp_path, capsys):
    path = _write(tmp_path, "print('hello from import')\n" + GOOD.replace(
        "    return", "    print('hello from call')\n    return"))
    check_rule(load_rule(f"{path}:my_step"), activations=["linear"], shapes=[(2, 3)],
               batch_sizes=(1,))
    out, err = capsys.readouterr()
    assert out == "" and "hello from import" in err and "hello from call" in err


# --- CLI ---

REPO = Path(__file__).resolve().parents[1]


def test_cli_table_and_summary_for_a_file(tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    assert main([f"{path}:my_step"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("activation"))
    for name, line in zip(ACT_NAMES, lines[header + 1:]):
        assert line.split()[:2] == [name, "gradient"] and line.split()[-1] == "right"
    assert digest(path)[:12] in lines[0]
    summary = lines[-1]
    assert "it is gradient descent" in summary and "not a proof" in summary


def test_cli_summary_is_no_stronger_than_the_verdicts(capsys):
    assert main(["--builtin", "kronecker"]) == 0
    out, _ = capsys.readouterr()
    summary = out.splitlines()[-1]
    assert "gradient descent" not in summary and "equals the negative gradient" not in summary
    assert "not a descent direction" in summary
    assert "only on d=2,k=3 (exactly where n_features + 1 == n_outputs)" in summary
    assert "d=3,k=2     (4, 2)  (2, 2)  wrong" in out
    r = {r.activation: r for r in check_rule(gallery.kronecker, activations=["sigmoid"])}["sigmoid"]
    lo, hi = (f"{100 * v:.2f}%" for v in r.downhill_ci)
    assert (f"It pointed downhill on {r.downhill} of 1000 (95% CI {lo} to {hi}) with sigmoid"
            in summary)
    assert "descent needs that interval to reach 99.9%" in summary


def test_cli_json(capsys):
    assert main(["--builtin", "no_derivative", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert len(out.encode()) > 1 << 16         # more than a pipe holds (see the closed-pipe test)
    rows = json.loads(out)
    assert [r["activation"] for r in rows] == ACT_NAMES
    for r in rows:
        assert {"activation", "verdict", "cosine_mean", "cosine_min", "max_rel_dev", "shape",
                "fits_only", "shapes", "rule"} <= set(r)
        assert {"n_features", "n_outputs", "W", "step", "shape", "verdict"} <= set(r["shapes"][0])
    by = {r["activation"]: r for r in rows}
    assert by["sigmoid"]["verdict"] == "other_loss_gradient:cross_entropy"
    assert by["linear"]["verdict"] == "gradient" and by["linear"]["max_rel_dev"] < 1e-9


def test_cli_json_shape_mismatch_has_nulls(capsys):
    assert main(["--builtin", "no_bias", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["verdict"] == "shape_mismatch" and r["cosine_mean"] is None for r in rows)


@pytest.mark.parametrize("argv, words", [
    ([], "either FILE.py:FUNC or --builtin"),
    (["--builtin", "nope"], "unknown --builtin 'nope'"),
    (["--builtin", "input", "x.py:f"], "exactly one"),
    (["--seed", "x", "--builtin", "input"], "--seed"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["no_colon.py"], "expected FILE.py:FUNCTION"),
    (["missing.py:my_step"], "missing.py:my_step: no such file"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("slnn-check: error: ") and words in err


def test_cli_process_exit_code_and_stderr(tmp_path):
    path = _write(tmp_path, "import numpy as np\ndef my_step(x, net, z, t, delta):\n"
                            "    return x.T @ delta / 0.0\n")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    bad = subprocess.run([sys.executable, "-m", "slnn.app.check_cli", f"{path}:my_step"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "non-finite" in bad.stderr and "my_step" in bad.stderr
    good = subprocess.run([sys.executable, "-m", "slnn.app.check_cli", "--builtin", "no_bias",
                           "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0 and len(json.loads(good.stdout)) == len(ACT_NAMES)


def test_cli_help_exits_0(capsys):
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "FILE.py:FUNC" in out and "--expect V,V" in out
    assert "reaches 0.999" in out
    assert "1 a verdict outside --expect, 2 bad input, 130 interrupted" in out


def test_check_imports_numpy_only():
    code = ("import sys, slnn.app.check_cli; heavy = {'hydra', 'mlflow', 'numba', 'pandas', 'sklearn'}; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))")
    done = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


# --- exit codes: --expect, a closed pipe, Ctrl-C (through the installed console script) ---

SCRIPT = str(Path(sys.executable).with_name("slnn-check"))


def _run(args, **kw):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=180, **kw)


def test_expect_exit_codes_from_the_console_script():
    # no_bias: shape_mismatch, found on the first batches, so these runs are quick
    ok = _run(["--builtin", "no_bias", "--expect", "gradient,shape_mismatch"])
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    bad = _run(["--builtin", "no_bias", "--expect", "gradient,descent", "--json"])
    assert bad.returncode == 1
    assert len(json.loads(bad.stdout)) == len(ACT_NAMES)          # the output is still there
    assert bad.stderr == ("slnn-check: verdict outside --expect gradient,descent: sigmoid, tanh, "
                          "guide_tanh, linear, relu: shape_mismatch\n")
    usage = _run(["--builtin", "input", "--expect", "gradient,downhill"])
    assert usage.returncode == 2 and usage.stdout == ""
    assert usage.stderr.count("\n") == 1
    assert usage.stderr.startswith("slnn-check: error: --expect 'gradient,downhill': 'downhill' "
                                   "is not a verdict")


@pytest.mark.parametrize("expect, words", [
    ("other_loss_gradient", "tanh, guide_tanh: descent; linear: gradient; relu: not_descent"),
    ("other_loss_gradient,descent,gradient,not_descent", None),
    ("other_loss_gradient:cross_entropy,descent,gradient,not_descent", None),
    ("other_loss_gradient:sum_squared,descent,gradient,not_descent",
     "sigmoid: other_loss_gradient:cross_entropy"),
    ("descent,gradient", "sigmoid: other_loss_gradient:cross_entropy; relu: not_descent"),
])
def test_expect_matches_verdicts(expect, words, results):
    expected = cli.parse_expect(expect)
    misses = cli.unexpected(results["no_derivative"].values(), expected)
    if words is None:
        assert misses == []
    else:
        line = cli.expect_line(misses, expected)
        assert line == f"slnn-check: verdict outside --expect {expect}: {words}"


def test_expect_counts_a_partial_fit_as_shape_mismatch(results):
    kron = results["kronecker"].values()
    misses = cli.unexpected(kron, ("not_descent",))
    assert [m[0] for m in misses] == ACT_NAMES
    assert {m[1] for m in misses} == {"not_descent on d=2,k=3 only, shape_mismatch elsewhere"}
    assert cli.unexpected(kron, ("not_descent", "shape_mismatch")) == []


def test_expect_through_main(capsys):
    assert main(["--builtin", "outer_transposed", "--expect", "descent"]) == 1
    out, err = capsys.readouterr()
    assert "outer_transposed" in out.splitlines()[0]
    assert err == ("slnn-check: verdict outside --expect descent: sigmoid, tanh, guide_tanh, "
                   "linear, relu: not_descent on d=2,k=3 only, shape_mismatch elsewhere\n")


def test_expect_is_refused_with_compare(capsys):
    assert main(["--builtin", "kronecker", "--compare", "--expect", "descent"]) == 2
    assert "give it without --compare" in capsys.readouterr().err


def test_json_into_a_closed_pipe_ends_quietly():
    # what `slnn-check --json | head -1` does: read the first line, close the pipe
    proc = subprocess.Popen([SCRIPT, "--builtin", "input", "--json", "--expect", "gradient"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"[\n"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=180) == 0 and err == ""
    # (test_cli_json: the output is larger than a pipe's buffer, so the writer met the closed pipe)


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    path = _write(tmp_path, "import os, signal\ndef my_step(x, net, z, t, delta):\n"
                            "    os.kill(os.getpid(), signal.SIGINT)\n    return x.T @ delta\n")
    done = _run([f"{path}:my_step"])
    assert done.returncode == 130 and done.stdout == ""
    assert done.stderr == "slnn-check: interrupted (Ctrl-C)\n"
