"""Tests for slnn.check: the numerical reference, the verdicts, the gallery, the loader, the CLI.

Run with `python -m pytest tests/test_check.py -q`. NumPy only; a few seconds.
"""

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from slnn.check import checker, gallery
from slnn.check.checker import (ACTIVATIONS, DEFAULT_SHAPES, LOSSES, check_batch, check_rule, make_batches,
                                numeric_gradient, shape_fit)
from slnn.check.cli import main
from slnn.check.loader import RuleLoadError, digest, load_rule

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


@pytest.fixture(scope="module")
def results():
    """check_rule for each gallery rule, once."""
    return {name: {r.activation: r for r in check_rule(g.step)} for name, g in gallery.GALLERY.items()}


@pytest.mark.parametrize("rule", [grad_matmul, grad_einsum, grad_loop])
def test_gradient_written_three_ways_is_gradient_everywhere(rule):
    res = check_rule(rule)
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
        assert by_shape[2, 3].verdict not in ("gradient", "shape_mismatch")
        assert not by_shape[2, 3].verdict.startswith("other_loss_gradient")
        assert by_shape[3, 1].fit == "broadcast" and by_shape[3, 1].step_shapes == [(1, 1)]
        assert by_shape[5, 3].fit == "wrong" and by_shape[2, 4].fit == "wrong"
        for key in [(3, 1), (5, 3), (2, 4)]:
            assert by_shape[key].verdict == "shape_mismatch" and by_shape[key].cosine_mean is None
        assert r.fits_only == ["d=2,k=3"]
        assert r.verdict == by_shape[2, 3].verdict       # the verdict where it fits
        assert r.shape == "broadcast"                   # the silent misfit is the one reported


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
    assert len({round(b.cosine, 6) for b in singles}) == len(singles)   # not one constant


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
    # relu: f' = 0 units get pushed anyway, so it is no gradient of any loss checked
    assert r["relu"].verdict in ("descent", "not_descent")
    assert r["tanh"].verdict == "descent"


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


def test_softmax_cross_entropy_gradient_is_recognised_per_shape():
    def softmax_rule(x, net, z, t, delta):
        p = np.exp(net - net.max(axis=1, keepdims=True))
        return x.T @ (t - p / p.sum(axis=1, keepdims=True)) / len(x)

    for r in check_rule(softmax_rule, activations=["tanh"]):
        for s in r.shapes:
            if s.n_outputs >= 2:
                assert s.verdict == "other_loss_gradient:softmax_cross_entropy"
            else:                                     # softmax of one output: no such loss
                assert not s.verdict.startswith("other_loss_gradient")


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
    assert back["fits_only"] == ["d=2,k=3"] and back["shapes"][1]["shape"] == "broadcast"
    assert back["shapes"][1]["step"] == [[1, 1]] and back["shapes"][1]["W"] == [4, 1]


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
    assert "broadcast" in summary
    assert "d=3,k=1     (4, 1)  (1, 1)  broadcast" in out


def test_cli_json(capsys):
    assert main(["--builtin", "no_derivative", "--json"]) == 0
    out, _ = capsys.readouterr()
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
    bad = subprocess.run([sys.executable, "-m", "slnn.check", f"{path}:my_step"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "non-finite" in bad.stderr and "my_step" in bad.stderr
    t0 = time.perf_counter()
    good = subprocess.run([sys.executable, "-m", "slnn.check", "--builtin", "kronecker",
                           "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and len(json.loads(good.stdout)) == len(ACT_NAMES)
    assert time.perf_counter() - t0 < 15       # "a few seconds"; ~0.5 s on a laptop


def test_cli_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "FILE.py:FUNC" in capsys.readouterr().out


def test_check_imports_numpy_only():
    code = ("import sys, slnn.check.cli; heavy = {'hydra', 'mlflow', 'numba', 'pandas', 'sklearn'}; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))")
    done = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
