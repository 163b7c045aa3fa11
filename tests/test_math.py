"""Tests for the math in slnn: activations, update rules, the shape rule.

Run with `python -m pytest tests/test_math.py -q`. Pure NumPy, no compilation: runs in about a second.
"""

import re

import numpy as np
import pytest

from slnn.core.activations import ACTIVATIONS, get_activation
from slnn.core.reference import epoch_numpy
from slnn.core.rules import (UPDATE_RULES, ShapeMismatch, check_shape, get_rule, input_fast,
                        input_step, kronecker_fast, kronecker_step)

ACT_NAMES = sorted(ACTIVATIONS)
H = 1e-6  # central-difference step: error O(H^2) ~ 1e-12, rounding O(eps / H) ~ 1e-10


def _central_diff(fun, x, h=H):
    return (fun(x + h) - fun(x - h)) / (2 * h)


def _forward(W, x, t, act):
    """net, z, delta for inputs x (n, d+1), weights W (d+1, k), targets t (n, k)."""
    net = x @ W                       # (n, d+1) @ (d+1, k) -> (n, k)
    z = act.f(net)                    # (n, k)
    delta = (t - z) * act.df(net)     # (n, k) * (n, k) -> (n, k)
    return net, z, delta


def _sample(rng, n, d, k):
    """n random inputs with the bias 1 in the last column, and random one-hot targets."""
    x = np.hstack([rng.normal(size=(n, d)), np.ones((n, 1))])  # (n, d+1)
    t = np.eye(k)[rng.integers(0, k, size=n)]                  # (n, k)
    return x, t


def _weights_off_the_kink(rng, x, shape, margin=0.05):
    # relu's derivative jumps at net = 0: keep every net at least `margin` away from it, so
    # a step of H in one weight cannot cross it. Same W for every activation, for simplicity.
    for _ in range(1000):
        W = rng.normal(scale=0.7, size=shape)
        if np.abs(x @ W).min() > margin:
            return W
    raise AssertionError("no W found with every net away from 0")


# --- activations ---

@pytest.mark.parametrize("name", ACT_NAMES)
def test_df_matches_central_difference_of_f(name):
    act = ACTIVATIONS[name]
    x = np.linspace(-6.0, 6.0, 241)
    x = x[np.abs(x) > 1e-3]  # relu's kink at 0 (the subgradient there is a convention)
    numeric = _central_diff(act.f, x)
    np.testing.assert_allclose(act.df(x), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activation_works_on_scalars_as_on_arrays(name):
    # the compiled kernel calls f and df on scalars, the NumPy path on arrays
    act = ACTIVATIONS[name]
    x = np.array([-2.5, -0.3, 0.7, 3.0])
    assert [float(act.f(v)) for v in x] == pytest.approx(act.f(x).tolist(), rel=1e-15)
    assert [float(act.df(v)) for v in x] == pytest.approx(act.df(x).tolist(), rel=1e-15)


def test_guide_tanh_is_tanh_squashed_into_0_1():
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(ACTIVATIONS["guide_tanh"].f(x), (np.tanh(x) + 1) / 2, rtol=1e-15)
    # and it is sigmoid at twice the argument: (tanh(x) + 1) / 2 = 1 / (1 + exp(-2x))
    np.testing.assert_allclose(ACTIVATIONS["guide_tanh"].f(x), 1 / (1 + np.exp(-2 * x)), rtol=1e-12)


# --- the input rule is the negative gradient ---

def _loss(W, x, t, act):
    # mean over samples of 0.5 * sum_k (t_k - z_k)^2; for n = 1 this is 0.5 * sum((t - z)^2)
    return 0.5 * np.sum((t - act.f(x @ W)) ** 2) / x.shape[0]


def _numeric_grad(W, x, t, act):
    g = np.zeros_like(W)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            E = np.zeros_like(W)
            E[i, j] = H
            g[i, j] = (_loss(W + E, x, t, act) - _loss(W - E, x, t, act)) / (2 * H)
    return g


@pytest.mark.parametrize("name", ACT_NAMES)
@pytest.mark.parametrize("n", [1, 5])
def test_input_step_is_minus_the_numeric_gradient(name, n):
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(11 + n)
    d, k = 3, 4
    x, t = _sample(rng, n, d, k)
    W = _weights_off_the_kink(rng, x, (d + 1, k))
    net, z, delta = _forward(W, x, t, act)
    step = input_step(x, net, z, t, delta)
    assert step.shape == W.shape
    numeric = _numeric_grad(W, x, t, act)
    assert np.abs(numeric).max() > 1e-3  # a non-trivial gradient, not 0 == 0
    np.testing.assert_allclose(-step, numeric, rtol=1e-6, atol=1e-9)


def test_kronecker_step_is_not_the_gradient():
    # the guide's Step 12 as written, where it runs at all (d + 1 == k): not a descent direction
    act = ACTIVATIONS["sigmoid"]
    rng = np.random.default_rng(5)
    x, t = _sample(rng, 1, 2, 3)
    W = rng.normal(size=(3, 3))
    net, z, delta = _forward(W, x, t, act)
    numeric = _numeric_grad(W, x, t, act)
    assert not np.allclose(-kronecker_step(x, net, z, t, delta), numeric, rtol=1e-3, atol=1e-6)


def test_input_update_worked_by_hand():
    # linear activation, 1 feature + bias, 2 outputs, eta = 0.5; every number is exact in binary.
    #   x = [0.5, 1]                 (feature 0.5, bias 1)
    #   W = [[0.5, -0.25],
    #        [0.25, 0   ]]
    #   net = x @ W = [0.5*0.5 + 1*0.25, 0.5*(-0.25) + 1*0] = [0.5, -0.125];  z = net (linear)
    #   t = [1, 0]:  delta = (t - z) * 1 = [0.5, 0.125]
    #   input step = x^T delta = [[0.5*0.5, 0.5*0.125],   = [[0.25, 0.0625],
    #                             [1*0.5,   1*0.125  ]]      [0.5,  0.125 ]]
    #   W + 0.5 * step = [[0.5 + 0.125, -0.25 + 0.03125],   = [[0.625, -0.21875],
    #                     [0.25 + 0.25,  0    + 0.0625 ]]      [0.5,    0.0625 ]]
    act = ACTIVATIONS["linear"]
    x = np.array([[0.5, 1.0]])
    W = np.array([[0.5, -0.25], [0.25, 0.0]])
    t = np.array([[1.0, 0.0]])
    net, z, delta = _forward(W, x, t, act)
    expected = np.array([[0.625, -0.21875], [0.5, 0.0625]])
    np.testing.assert_array_equal(W + 0.5 * input_step(x, net, z, t, delta), expected)
    # the NumPy reference epoch makes the same update from the same sample
    W2 = W.copy()
    epoch_numpy(W2, x, t, np.array([0]), 1, 0.5, act, UPDATE_RULES["input"])
    np.testing.assert_array_equal(W2, expected)


# --- the kronecker rule against its formula ---

def test_kronecker_step_one_sample_is_outer_z_delta():
    rng = np.random.default_rng(2)
    k = 3
    z = rng.uniform(size=(1, k))
    delta = rng.normal(size=(1, k))
    x = rng.normal(size=(1, 7))  # unused by the rule; any width
    step = kronecker_step(x, None, z, None, delta)
    assert step.shape == (k, k)
    expected = np.array([[z[0, i] * delta[0, j] for j in range(k)] for i in range(k)])
    np.testing.assert_allclose(step, expected, rtol=1e-15)


def test_kronecker_step_batch_is_mean_of_outer_products():
    rng = np.random.default_rng(3)
    n, k = 6, 4
    z, delta, x = rng.uniform(size=(n, k)), rng.normal(size=(n, k)), rng.normal(size=(n, 2))
    expected = sum(np.outer(z[s], delta[s]) for s in range(n)) / n
    np.testing.assert_allclose(kronecker_step(x, None, z, None, delta), expected, rtol=1e-12)
    # a mean, not a sum: the single-sample steps do not add up to it
    assert not np.allclose(kronecker_step(x, None, z, None, delta), expected * n)


@pytest.mark.parametrize("rule", sorted(n for n, r in UPDATE_RULES.items() if r.fast is not None))
def test_fast_form_accumulates_to_the_numpy_step(rule):
    # the per-sample `fast` form the kernel compiles, run here as plain Python
    r = UPDATE_RULES[rule]
    rng = np.random.default_rng(4)
    n, d, k = 5, 2, 3
    x, t = _sample(rng, n, d, k)
    z, delta = rng.uniform(size=(n, k)), rng.normal(size=(n, k))
    out = np.zeros(r.step_shape(d + 1, k))
    for s in range(n):
        r.fast(out, x[s], None, z[s], t[s], delta[s])
    np.testing.assert_allclose(out / n, r.step(x, None, z, t, delta), rtol=1e-12)
    assert r.fast in (input_fast, kronecker_fast)


# --- the shape rule ---

def test_check_shape_passes_where_n_features_plus_1_equals_n_outputs():
    check_shape(get_rule("kronecker"), (3, 3))  # iris_petal: 2 features + bias, 3 classes
    for shape in [(3, 3), (5, 3), (3, 1), (65, 10)]:
        check_shape(get_rule("input"), shape)  # the gradient always has W's shape


def test_check_shape_rejects_iris_with_both_shapes_in_the_message():
    with pytest.raises(ShapeMismatch) as e:
        check_shape(get_rule("kronecker"), (5, 3))
    msg = str(e.value)
    assert "(3, 3)" in msg and "(5, 3)" in msg
    assert "\n" not in msg
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("d", [1, 2, 4])
def test_check_shape_rejects_a_single_output_that_numpy_would_broadcast(d):
    W = np.zeros((d + 1, 1))
    rng = np.random.default_rng(d)
    x, t = _sample(rng, 1, d, 1)
    act = ACTIVATIONS["sigmoid"]
    net, z, delta = _forward(W, x, t, act)
    step = kronecker_step(x, net, z, t, delta)
    assert step.shape == (1, 1)
    # NumPy would add the (1, 1) step to every weight without complaint...
    assert (W + step).shape == W.shape
    # ...so the shape check is what stops it
    with pytest.raises(ShapeMismatch) as e:
        check_shape(get_rule("kronecker"), W.shape)
    assert "(1, 1)" in str(e.value) and str((d + 1, 1)) in str(e.value)


# --- registries ---

def _assert_lists_sorted_names(message, names):
    positions = [message.find(repr(n)) for n in names]
    assert all(p >= 0 for p in positions), (message, names)
    assert positions == sorted(positions), message


def test_get_activation_unknown_name_lists_sorted_valid_names():
    with pytest.raises(ValueError, match=re.escape("'softmax'")) as e:
        get_activation("softmax")
    _assert_lists_sorted_names(str(e.value), sorted(ACTIVATIONS))
    assert set(ACTIVATIONS) >= {"sigmoid", "tanh", "guide_tanh", "linear", "relu"}


def test_get_rule_unknown_name_lists_sorted_valid_names():
    with pytest.raises(ValueError, match=re.escape("'transpose'")) as e:
        get_rule("transpose")
    _assert_lists_sorted_names(str(e.value), sorted(UPDATE_RULES))
    assert set(UPDATE_RULES) >= {"input", "kronecker"}


def test_registry_names_match_entries():
    for name, act in ACTIVATIONS.items():
        assert get_activation(name) is act and act.name == name
    for name, rule in UPDATE_RULES.items():
        assert get_rule(name) is rule and rule.name == name
