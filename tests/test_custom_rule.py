"""A rule of the user's own (``update=custom update.fn=FILE.py:FUNCTION``) and the gallery's
mistakes as trainable rules: the numbers against independent computation, every bad input
against its one-line message and exit code 2, and resume against a changed rule file.

    python -m pytest tests/test_custom_rule.py -m 'not slow'     # in-process, and the refusals
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from slnn.core.activations import ACTIVATIONS
from slnn.core.data import load_dataset
from slnn.core.outcomes import Outcome
from slnn.core.rules import UPDATE_RULES
from slnn.core.trainer import RunSpec, train, with_bias

RULES_PY = textwrap.dedent('''\
    import numpy as np

    def my_step(x, net, z, t, delta):            # the gradient, written with einsum
        return np.einsum("ni,nk->ik", x, delta) / x.shape[0]

    def loop_step(x, net, z, t, delta):          # the gradient, one sample at a time
        out = np.zeros((x.shape[1], delta.shape[1]))
        for i in range(x.shape[0]):
            out += np.outer(x[i], delta[i])
        return out / x.shape[0]

    def mutating(x, net, z, t, delta):           # modifies its arguments: it gets copies
        delta *= 2.0
        x[:] = 0.0
        return np.zeros((x.shape[1], delta.shape[1]))

    def transposed(x, net, z, t, delta):
        return delta.T @ x

    def boom(x, net, z, t, delta):
        raise RuntimeError("nope")

    def nan_step(x, net, z, t, delta):
        return x.T @ delta * np.nan

    def text(x, net, z, t, delta):
        return "a step"

    def late_boom(x, net, z, t, delta):          # fine on the first batches, then raises
        late_boom.calls = getattr(late_boom, "calls", 0) + 1
        if late_boom.calls > 50:
            raise ValueError("too many calls")
        return x.T @ delta / len(x)
    ''')


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "my_rules.py"
    path.write_text(RULES_PY)
    return path


@pytest.fixture(scope="module")
def petal():
    return load_dataset("iris_petal")


def _spec(**kw):
    base = dict(activation="sigmoid", lr=0.2, epochs=15, backend="numpy")
    return RunSpec.of(**{**base, **kw})


# --- in process: the user's rule trains as the gradient does ---------------------------------

@pytest.mark.parametrize("func", ["my_step", "loop_step"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_custom_gradient_trains_exactly_as_the_input_rule(petal, rules_file, func, batch_size):
    custom = train(petal, _spec(rule="custom", fn=f"{rules_file}:{func}", batch_size=batch_size),
                   rng=np.random.default_rng(3))
    builtin = train(petal, _spec(rule="input", batch_size=batch_size, backend="compiled"),
                    rng=np.random.default_rng(3))
    assert custom.outcome == builtin.outcome == Outcome.MAX_EPOCHS
    np.testing.assert_allclose(custom.W_final, builtin.W_final, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(custom.history["val_loss"], builtin.history["val_loss"], rtol=1e-10)
    # it learned: the validation loss fell
    assert custom.history["val_loss"][-1] < 0.8 * custom.history["val_loss"][0]


def test_a_rule_that_modifies_its_arguments_cannot_corrupt_training(petal, rules_file):
    r = train(petal, _spec(rule="custom", fn=f"{rules_file}:mutating", epochs=3),
              rng=np.random.default_rng(0))
    np.testing.assert_array_equal(r.W_final, r.W_initial)  # a zero step, nothing else changed
    # the cosine with the gradient is computed from the unmodified delta: a zero step has none
    assert np.isnan(r.history["grad_cosine"][1:]).all()


def test_a_custom_rule_has_no_compiled_form(rules_file):
    from slnn.core.errors import ConfigError

    with pytest.raises(ConfigError, match="update=custom has no compiled form"):
        _spec(rule="custom", fn=f"{rules_file}:my_step", backend="compiled")


def test_an_error_inside_the_rule_mid_training_is_one_line(petal, rules_file):
    from slnn.core.rulefile import RuleLoadError

    with pytest.raises(RuleLoadError) as e:
        train(petal, _spec(rule="custom", fn=f"{rules_file}:late_boom"), rng=np.random.default_rng(0))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{rules_file}:late_boom: the function raised "
                                              "ValueError: too many calls")


# --- the gallery's mistakes train, each step as the formula says -----------------------------

def _first_update(petal, rule, activation="sigmoid", lr=0.5):
    """W after one update on the first training sample, and the sample's x, t and W0."""
    r = train(petal, RunSpec.of(activation=activation, rule=rule, lr=lr, epochs=1, steps_per_epoch=1,
                                sampling="sequential", backend="numpy"),
              rng=np.random.default_rng(1))
    x = with_bias(petal.x_train[:1])
    return r, x, petal.t_train[:1]


EXPECTED_STEPS = {  # written out again here, from the gallery's docstrings, not imported
    "no_derivative": lambda x, z, t, fp: x.T @ (t - z),
    "ascent": lambda x, z, t, fp: -x.T @ ((t - z) * fp),
    "sum_not_mean": lambda x, z, t, fp: x.T @ ((t - z) * fp),
    "sigmoid_shortcut": lambda x, z, t, fp: x.T @ ((t - z) * z * (1 - z)),
    "outer_transposed": lambda x, z, t, fp: ((t - z) * fp).T @ x,
}


@pytest.mark.parametrize("rule", sorted(EXPECTED_STEPS))
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_a_gallery_rule_updates_w_by_its_formula(petal, rule, activation):
    r, x, t = _first_update(petal, rule, activation)
    act = ACTIVATIONS[activation]
    net = x @ r.W_initial
    z, fp = act.f(net), act.df(net)
    np.testing.assert_allclose(r.W_final, r.W_initial + 0.5 * EXPECTED_STEPS[rule](x, z, t, fp),
                               rtol=1e-12, atol=1e-14)


def test_no_bias_can_never_train_and_ends_shape_mismatch(petal):
    r = train(petal, _spec(rule="no_bias"), rng=np.random.default_rng(0))
    assert r.outcome == Outcome.SHAPE_MISMATCH
    assert "(2, 3)" in r.reason and "(3, 3)" in r.reason and "iris_petal" not in r.reason
    np.testing.assert_array_equal(r.W_final, r.W_initial)


def test_outer_transposed_fits_only_where_n_features_plus_1_equals_n_outputs(petal):
    iris = load_dataset("iris")
    r = train(iris, _spec(rule="outer_transposed"), rng=np.random.default_rng(0))
    assert r.outcome == Outcome.SHAPE_MISMATCH and "(3, 5)" in r.reason and "(5, 3)" in r.reason
    assert train(petal, _spec(rule="outer_transposed"), rng=np.random.default_rng(0)).outcome \
        == Outcome.MAX_EPOCHS


def test_no_derivative_learns_with_sigmoid_and_ascent_climbs(petal):
    nd = train(petal, _spec(rule="no_derivative", epochs=40), rng=np.random.default_rng(2))
    assert nd.final["val_error"] < 0.5 * nd.history["val_error"][0]
    up = train(petal, _spec(rule="ascent", epochs=40), rng=np.random.default_rng(2))
    assert up.final["train_loss"] > up.history["train_loss"][0]
    # the trainer's cosine with the gradient: -1 for ascent on every update
    np.testing.assert_allclose(up.history["grad_cosine"][1:], -1.0, atol=1e-9)


def test_the_gallery_is_the_registry_one_definition_each():
    from slnn.check import gallery

    for name, g in gallery.GALLERY.items():
        assert UPDATE_RULES[name] is g
    assert gallery.no_derivative is UPDATE_RULES["no_derivative"].step


# --- the config: update.fn is absolute, checked against update= ------------------------------

def test_update_fn_is_made_absolute_against_the_working_folder(compose, tmp_path, monkeypatch):
    from slnn.app.schema import config_hash, to_config

    monkeypatch.chdir(tmp_path)
    cfg = compose("update=custom", "update.fn=sub/../my_rules.py:my_step")
    c = to_config(cfg)
    assert c.update.fn == f"{tmp_path}/my_rules.py:my_step"
    assert cfg["update"]["fn"] == c.update.fn  # the config a worker gets and the hash see it too
    assert config_hash(cfg) != config_hash(compose("update=input"))


def test_resume_plans_a_rerun_when_the_rule_file_changed():
    from slnn.sweep.grid import Cell
    from slnn.sweep.resume import NEW, REUSED, RULE_CHANGED, plan
    from slnn.tracking.runs import FinishedRun

    def cell(h, digest):
        return Cell([], None, h, "data1", {}, rule_digest=digest)

    finished = {"a": [FinishedRun("r1", "a", "code", "data1", None, 1, "sha-old")],
                "b": [FinishedRun("r2", "b", "code", "data1", None, 1, None)]}
    p = plan([cell("a", "sha-new"), cell("b", None), cell("c", "sha-new")], finished, "code")
    assert p.why == {"a": RULE_CHANGED, "b": REUSED, "c": NEW}
    assert p.line() == "1 reused, 1 rerun because the rule file changed, 1 new"
    assert plan([cell("a", "sha-old")], finished, "code").why == {"a": REUSED}


# --- the command line: every bad input is one line, exit 2, before anything starts -----------

def _refused(proc, tmp_path, pattern):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.fullmatch("slnn-train: error: " + pattern, lines[0]), lines[0]
    for made in ("mlflow.db", "mlruns", "outputs", "multirun"):
        assert not (tmp_path / made).exists(), made


BAD = [
    (["update.fn=missing.py:my_step"], r"{f}/missing.py:my_step: no such file '{f}/missing.py'"),
    (["update.fn=my_rules.py:nothing"],
     r"{f}/my_rules.py:nothing: the file has no function 'nothing' \(it defines: .*my_step.*\)"),
    (["update.fn=my_rules.py:boom"],
     r"{f}/my_rules.py:boom: the function raised RuntimeError: nope \(line \d+\) "
     r"\(activation sigmoid\)"),
    (["update.fn=my_rules.py:text"],
     r"{f}/my_rules.py:text: the function returned a str, not an array of real numbers "
     r"\(activation sigmoid\)"),
    (["update.fn=my_rules.py:transposed", "data=iris"],
     r"{f}/my_rules.py:transposed: the function returned a step of shape \(3, 5\) for a batch of "
     r"1, but W has shape \(5, 3\) .*the step must have W's shape"),
    (["update.fn=my_rules.py:nan_step"],
     r"{f}/my_rules.py:nan_step: the function returned non-finite values \(9 of 9 entries nan or "
     r"inf, for x of shape \(1, 3\)\) \(activation sigmoid\)"),
]


@pytest.mark.parametrize("overrides, pattern", BAD, ids=[b[0][0].split(":")[-1] for b in BAD])
def test_a_bad_rule_is_refused_with_one_line(slnn_train, rules_file, overrides, pattern):
    tmp_path = rules_file.parent
    proc = slnn_train(["update=custom", "data=iris_petal", *overrides], cwd=tmp_path)
    _refused(proc, tmp_path, pattern.format(f=re.escape(str(tmp_path))))


def test_update_custom_without_update_fn_and_update_fn_with_a_builtin_are_refused(slnn_train,
                                                                                   tmp_path):
    proc = slnn_train(["update=custom"], cwd=tmp_path)
    _refused(proc, tmp_path, re.escape("update=custom needs update.fn=FILE.py:FUNCTION (your step "
                                       "function), e.g. update.fn=my_rules.py:my_step"))
    proc = slnn_train(["update=input", "update.fn=my_rules.py:my_step"], cwd=tmp_path)
    f = f"{tmp_path}/my_rules.py:my_step"
    _refused(proc, tmp_path, re.escape(f"update.fn={f} is given but update=input is a built-in "
                                       f"rule: set update=custom to train {f}, or drop update.fn"))


@pytest.mark.slow
def test_a_bad_rule_in_a_sweep_is_refused_before_any_cell(slnn_train, rules_file):
    tmp_path = rules_file.parent
    proc = slnn_train(["-m", "update=custom,input", "update.fn=my_rules.py:boom", "data=iris_petal",
                       "seed=0,1"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        f"slnn-train: error: {tmp_path}/my_rules.py:boom: the function raised RuntimeError: nope "
        f"(line 21) (activation sigmoid); no run was started"], proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


# --- end to end: a single run from an empty folder, a sweep, resume after an edit ------------

def _runs(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("slnn")
    return [r for r in client.search_runs([exp.experiment_id], max_results=100)
            if r.data.tags.get("slnn.sweep") != "true"]


@pytest.mark.slow
def test_a_custom_rule_single_run_from_an_empty_folder(slnn_train, tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "my_rules.py").write_text(RULES_PY)
    work = tmp_path / "empty"
    work.mkdir()
    proc = slnn_train(["update=custom", "update.fn=../elsewhere/my_rules.py:my_step",
                       "data=iris_petal", "train.epochs=10", "seed=4", "tracking.plot=false"],
                      cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "custom-my_step-sigmoid-lr0.1-s4-iris_petal: max_epochs after 10 epochs" in proc.stdout
    [run] = _runs(f"sqlite:///{work}/mlflow.db")
    tags, params = run.data.tags, run.data.params
    path = folder / "my_rules.py"
    assert tags["slnn.update"] == "custom"
    assert tags["slnn.rule_digest"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert tags["slnn.rule_fn"] == params["update.fn"] == f"{path.resolve()}:my_step"
    assert params["update.rule"] == "custom"
    # the numbers are the gradient's: the same run with update=input, computed here in-process
    from slnn.app.schema import to_config

    from conftest import compose_config

    c = to_config(compose_config("data=iris_petal", "train.epochs=10", "seed=4"))
    ref = train(load_dataset(c.data, run_seed=4), c, rng=np.random.default_rng(4))
    assert run.data.metrics["final/val_error"] == pytest.approx(ref.final["val_error"], abs=1e-12)
    assert run.data.metrics["final/val_loss"] == pytest.approx(ref.final["val_loss"], rel=1e-9)


@pytest.mark.slow
def test_a_two_cell_sweep_and_resume_rerun_only_when_the_rule_file_changes(slnn_train, rules_file):
    tmp_path = rules_file.parent
    args = ["-m", "update=custom,input", "update.fn=my_rules.py:my_step", "data=iris_petal",
            "train.epochs=5", "sweep.report=false", "tracking.plot=false"]
    first = slnn_train(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 cells: 0 reused, 2 new; 2 to run" in first.stdout
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runs = {r.data.tags["slnn.update"]: r for r in _runs(uri)}
    assert set(runs) == {"custom", "input"}
    old = hashlib.sha256(rules_file.read_bytes()).hexdigest()
    assert runs["custom"].data.tags["slnn.rule_digest"] == old
    assert "slnn.rule_digest" not in runs["input"].data.tags
    assert "update.fn" not in runs["input"].data.params  # the built-in cell dropped it
    # the same numbers for both: my_step is the gradient
    assert runs["custom"].data.metrics["final/val_loss"] == pytest.approx(
        runs["input"].data.metrics["final/val_loss"], rel=1e-9)

    again = slnn_train(args, cwd=tmp_path)
    assert "2 cells: 2 reused, 0 new; 0 to run" in again.stdout, again.stdout

    rules_file.write_text(RULES_PY + "\n# edited\n")
    edited = slnn_train(args, cwd=tmp_path)
    assert edited.returncode == 0, edited.stderr[-3000:]
    assert "2 cells: 1 reused, 1 rerun because the rule file changed, 0 new; 1 to run" \
        in edited.stdout, edited.stdout
    new = hashlib.sha256(rules_file.read_bytes()).hexdigest()
    customs = [r for r in _runs(uri) if r.data.tags["slnn.update"] == "custom"]
    assert sorted(r.data.tags["slnn.rule_digest"] for r in customs) == sorted([old, new])


# --- the report's section: rules next to their checker verdicts -------------------------------

def test_the_report_checks_each_rule_and_states_the_cos_zx_identity_only_where_it_held():
    import pandas as pd

    from slnn.report.rulecheck import applies, check_rules

    runs = pd.DataFrame({"update": ["kronecker", "no_derivative", "input", "no_derivative"],
                         "activation": ["tanh", "sigmoid", "sigmoid", "linear"]})
    assert applies(runs) and not applies(runs[runs["update"] != "no_derivative"])
    checks = check_rules(runs)
    nd = checks["no_derivative"].by_activation()
    assert list(nd) == ["sigmoid", "linear"]
    assert nd["sigmoid"].verdict == "other_loss_gradient:cross_entropy"
    assert nd["linear"].verdict == "gradient"  # f' = 1: dropping it changes nothing
    n, worst, lo, mean, hi = checks["kronecker"].single["tanh"]
    assert n >= 4 and worst < 1e-10 and lo < 0 < hi  # tanh outputs can point against x
    # the gradient's cosine is 1 whatever cos(z, x) is: the identity does not hold for it
    assert max(s[1] for s in checks["input"].single.values()) > 1e-3


def test_the_report_checks_a_user_rule_only_from_a_given_file_that_is_unchanged(rules_file):
    import pandas as pd

    from slnn.report.rulecheck import allow_rule_files, check_rules

    fn = f"{rules_file}:my_step"
    digest = hashlib.sha256(rules_file.read_bytes()).hexdigest()
    runs = pd.DataFrame({"update": ["custom"], "activation": ["sigmoid"], "rule_fn": [fn],
                         "rule_digest": [digest]})
    # the store names the file, but no file was given: not run
    rc = check_rules(runs)["custom"]
    assert rc.label == "`custom` (my_rules.py:my_step)" and rc.results is None
    assert "pass --rule-file" in rc.note and digest[:12] in rc.note
    with allow_rule_files([rules_file]):
        rc = check_rules(runs)["custom"]
    assert rc.note == "" and rc.by_activation()["sigmoid"].verdict == "gradient"
    rules_file.write_text(RULES_PY + "\n# edited\n")
    rc = check_rules(runs, rule_files=[rules_file])["custom"]
    now = hashlib.sha256(rules_file.read_bytes()).hexdigest()
    assert rc.results is None and rc.note == (
        f"no file given with --rule-file has the sha256 its runs recorded ({digest[:12]}...; "
        f"given: my_rules.py {now[:12]}): not checked; pass --rule-file with the file these "
        "runs trained with")


# --- slnn-check --compare, end to end ---------------------------------------------------------

@pytest.mark.slow
def test_compare_runs_the_study_and_writes_a_report_whose_headline_answers(rules_file):
    import os
    import subprocess
    import sys

    import pandas as pd

    tmp_path = rules_file.parent
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    check = Path(sys.executable).with_name("slnn-check")
    proc = subprocess.run([str(check), "my_rules.py:transposed", "--compare", "--seeds", "3",
                           "--lrs", "0.3", "--data", "iris_petal", "--epochs", "10"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # the check comes first: the transposed outer product is not a descent direction, and fits
    # only where the step is square
    assert re.search(r"^sigmoid\s+not_descent\*", out, re.M), out
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert f"runs go to experiment slnn-compare in {uri}" in out
    folder = tmp_path / "reports" / "compare-transposed"
    assert f"report: {folder}/report.md" in out
    report = (folder / "report.md").read_text()
    headline = report.split("\n\n")[1].strip("*")
    assert f"slnn-check: --compare: {headline}" in out
    # 3 seeds: no test could be significant, and the answer says so instead of "no difference"
    assert headline.startswith("Too few seeds to tell them apart on iris_petal"), headline
    # the headline's numbers are the runs' own: each rule's mean final test error over 4 seeds
    runs = pd.read_csv(folder / "runs.csv")
    assert sorted(runs["update"]) == ["custom"] * 3 + ["input"] * 3
    assert "rule_fn" not in runs.columns and runs["rule_digest"].dropna().nunique() == 1
    means = runs.groupby("update")["test_error"].mean()
    for rule in ("custom", "input"):  # one cell each: the best cell's error is the mean
        assert f"| iris_petal | `{rule}` | sigmoid, lr 0.3 | {means[rule]:.3f}" in report
    # the section beside the checker: the same verdict for the same file
    section = report.split("## Rules and their checker verdicts")[1].split("\n## ")[0]
    assert "| iris_petal | custom | sigmoid | not_descent (fits only d=2,k=3) |" in section
    assert "`custom` (my_rules.py:transposed):" in section


@pytest.mark.slow
def test_compare_refuses_a_broken_rule_before_training(rules_file):
    import os
    import subprocess
    import sys

    tmp_path = rules_file.parent
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    check = Path(sys.executable).with_name("slnn-check")
    proc = subprocess.run([str(check), "my_rules.py:boom", "--compare"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["slnn-check: error: my_rules.py:boom: the function raised "
                                        "RuntimeError: nope (line 21)"], proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("argv, message", [
    (["x.py:f", "--seeds", "3"], "--seeds applies only with --compare"),
    (["x.py:f", "--compare", "--json"], "--compare writes a report; give it without --json"),
    (["--builtin", "input", "--compare"], "--compare compares a rule with input: pick another rule"),
])
def test_compare_options_are_checked(capsys, argv, message, tmp_path, monkeypatch):
    from slnn.app.check_cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.py").write_text("def f(x, net, z, t, delta):\n    return x.T @ delta\n")
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [f"slnn-check: error: {message}"]
    assert not (tmp_path / "mlflow.db").exists()


def test_a_rule_that_raises_or_warns_under_the_checker_does_not_stop_the_report(monkeypatch):
    import warnings

    import pandas as pd

    from slnn.core import rules
    from slnn.report.rulecheck import check_rules, explanations

    def boom(x, net, z, t, delta):
        raise RuntimeError("boom")

    def noisy(x, net, z, t, delta):
        warnings.warn("a warning from the rule", stacklevel=2)
        return x.T @ delta / len(x)

    monkeypatch.setitem(rules.UPDATE_RULES, "boom", rules.UpdateRule("boom", boom))
    monkeypatch.setitem(rules.UPDATE_RULES, "noisy", rules.UpdateRule("noisy", noisy))
    runs = pd.DataFrame({"update": ["boom", "noisy"], "activation": ["sigmoid", "sigmoid"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that escaped would fail here
        checks = check_rules(runs)
    assert checks["boom"].results is None
    assert checks["boom"].note == "the checker could not run it (RuntimeError: boom)"
    assert checks["noisy"].by_activation()["sigmoid"].verdict == "gradient"
    empty = pd.DataFrame(columns=["data", "update", "activation", "lr", "val_error_mean"])
    assert explanations({"boom": checks["boom"]}, empty, pd.DataFrame(index=empty.index),
                        pd.DataFrame()) == ["`boom`: the checker could not run it (RuntimeError: boom)."]
