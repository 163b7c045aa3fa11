"""Reports, from a small real sweep: ``python -m pytest tests/test_report.py`` (about 2 minutes;
``-m 'not slow'`` keeps only the tests that need no sweep subprocess).

One sweep (2 rules x 2 activations x 2 learning rates x 2 seeds on iris_petal) is run once per
module into a temporary store and reported once; the tests then hold the report to numbers
computed independently from MLflow, check every figure is a real image embedded in the HTML, the
tidy frame round-trips, the verdict follows the data, and bad input gets one line, not a
traceback.
"""

from __future__ import annotations

import base64
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from slnn.report import ReportError, read_sweep, report_for_parent
from slnn.report.frames import TIDY_COLUMNS, METRICS
from slnn.report.stats import summary_table, t_halfwidth

SLNN_REPORT = Path(sys.executable).with_name("slnn-report")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = ["tracking.plot=false", "tracking.log_model=false", "sweep.report=false"]
GRID = ["update=input,kronecker", "model.activation=sigmoid,tanh", "optim.lr=0.1,1.0",
        "seed=0,1", "data=iris_petal", "train.epochs=6"]
EXPECTED_FIGURES = {"answer.png", "time_to_target.png", "performance_profile.png",
                    "curves_val_loss_iris_petal.png", "curves_val_error_iris_petal.png",
                    "test_error_heatmap.png", "grad_cosine_iris_petal.png", "outcomes.png"}


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def run_sweep(slnn_train, folder: Path, *args: str) -> subprocess.CompletedProcess:
    proc = slnn_train(["-m", *args, f"tracking.uri={sqlite_uri(folder)}",
                       f"hydra.sweep.dir={folder}/multirun"], cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def parent_of(uri: str) -> str:
    from mlflow import MlflowClient

    runs = MlflowClient(uri).search_runs(["1"], filter_string="tags.`slnn.sweep` = 'true'")
    assert len(runs) == 1
    return runs[0].info.run_id


def slnn_report(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([str(SLNN_REPORT), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


# --- the module's sweep and its report --------------------------------------------------------

@pytest.fixture(scope="module")
def sweep(tmp_path_factory, slnn_train):
    """(uri, parent run id, folder) of a real 16-run sweep."""
    folder = tmp_path_factory.mktemp("report_sweep")
    run_sweep(slnn_train, folder, *GRID, *FAST)
    uri = sqlite_uri(folder)
    return uri, parent_of(uri), folder


@pytest.fixture(scope="module")
def report(sweep):
    """The report folder of the module's sweep (target error 0.4: some runs reach it)."""
    uri, parent, folder = sweep
    return report_for_parent(uri, parent, out=folder / "report", target_error=0.4)


@pytest.fixture(scope="module")
def children(sweep):
    from mlflow import MlflowClient

    uri, parent, _ = sweep
    return MlflowClient(uri).search_runs(["1"], filter_string=f"tags.mlflow.parentRunId = '{parent}'")


@pytest.mark.slow
def test_summary_numbers_equal_those_computed_from_the_mlflow_runs(report, children):
    groups: dict[tuple, list[float]] = {}
    for r in children:
        key = (r.data.tags["slnn.update"], r.data.tags["slnn.activation"],
               float(r.data.params["optim.lr"]))
        groups.setdefault(key, []).append(r.data.metrics["final/test_error"])
    assert len(groups) == 8 and all(len(v) == 2 for v in groups.values())

    summary = pd.read_csv(report / "summary.csv")
    assert len(summary) == 8
    for _, row in summary.iterrows():
        v = np.array(groups[(row["update"], row["activation"], row["lr"])])
        assert row["n_seeds"] == len(v) == row["n_runs"]
        assert row["test_error_mean"] == pytest.approx(v.mean(), abs=1e-12)
        # two seeds: too few for an interval (a bootstrap of two values says little)
        assert np.isnan(row["test_error_lo"]) and np.isnan(row["test_error_hi"])
    # and the human-readable table shows those numbers
    md = (report / "report.md").read_text()
    first = summary.iloc[0]
    assert f"| {first['test_error_mean']:.3f} |" in md


@pytest.mark.slow
def test_every_figure_is_a_real_png(report):
    pngs = {p.name for p in report.glob("*.png")}
    assert pngs == EXPECTED_FIGURES
    for name in pngs:
        data = (report / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 10_000, (name, len(data))
        img = mpimg.imread(report / name)
        assert img.ndim == 3 and min(img.shape[:2]) > 200, name
        assert img[..., :3].std() > 0.01, f"{name} is blank"


@pytest.mark.slow
def test_html_is_self_contained_and_embeds_every_figure(report, sweep):
    html = (report / "report.html").read_text()
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(embedded) == len(EXPECTED_FIGURES)
    assert {base64.b64decode(b) for b in embedded} == {p.read_bytes() for p in report.glob("*.png")}
    assert "src=\"http" not in html and ".png\"" not in html  # nothing fetched from elsewhere
    _, parent, _ = sweep
    assert f"slnn-report --parent-run {parent}" in html
    assert "<table" in html and "verdict per data set" in html
    md = (report / "report.md").read_text()
    for name in EXPECTED_FIGURES:
        assert f"]({name})" in md


@pytest.mark.slow
def test_tidy_frame_round_trips_with_every_history_row(report, children):
    import mlflow.artifacts

    tidy = pd.read_parquet(report / "tidy.parquet")
    assert list(tidy.columns) == TIDY_COLUMNS
    rows, one = 0, None
    for r in children:
        path = mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path="history.csv",
                                                   tracking_uri=sqlite_uri(report.parent))
        h = pd.read_csv(path)
        rows += len(h) * len(METRICS)
        one = (r.info.run_id, h)
    assert len(tidy) == rows
    run_id, h = one
    got = tidy[(tidy["run_id"] == run_id) & (tidy["metric"] == "val_error")].sort_values("epoch")
    np.testing.assert_allclose(got["value"].to_numpy(), h["val_error"].to_numpy())
    assert got["step"].tolist() == h["step"].tolist()
    runs = pd.read_csv(report / "runs.csv")
    assert len(runs) == len(children) and set(runs["run_id"]) == {r.info.run_id for r in children}


@pytest.mark.slow
def test_verdict_compares_the_rules_from_the_numbers(report, children):
    md = (report / "report.md").read_text()
    verdict_lines = md.split("## Appendix: verdict per data set")[1].split("##")[0]
    # per (activation, lr) cell, which rule has the lower mean test error, from MLflow directly
    means: dict[tuple, dict[str, list]] = {}
    for r in children:
        key = (r.data.tags["slnn.activation"], float(r.data.params["optim.lr"]))
        means.setdefault(key, {}).setdefault(r.data.tags["slnn.update"], []).append(
            r.data.metrics["final/test_error"])
    lower = sum(np.mean(v["input"]) < np.mean(v["kronecker"]) - 1e-12 for v in means.values())
    assert (f"on iris_petal, paired by seed, `input` ends with the lower mean test error in "
            f"{lower} of 4 (activation, lr) cells") in verdict_lines


# --- the verdict follows the data -------------------------------------------------------------

def synthetic_runs(good: str, bad: str, *, seeds: int = 10) -> pd.DataFrame:
    """A runs frame where ``good`` ends near 0.05 and ``bad`` near 0.7 (from 0.65) in every cell."""
    rows = []
    rng = np.random.default_rng(0)
    for rule, level in ((good, 0.05), (bad, 0.7)):
        for act in ("sigmoid", "tanh"):
            for lr in (0.1, 1.0):
                for seed in range(seeds):
                    err = level + 0.01 * rng.standard_normal()
                    rows.append(dict(run_id=f"{rule}{act}{lr}{seed}", data="iris_petal",
                                     update=rule, activation=act, lr=lr, seed=seed,
                                     outcome="max_epochs", reason="", epochs_run=20.0,
                                     epochs_max=20.0, test_error=err, val_error=err,
                                     initial_test_error=0.65 + 0.01 * seed, chance_error=0.66))
    return pd.DataFrame(rows)


def test_verdict_changes_when_the_rules_swap_places():
    from slnn.report import analyse

    va = analyse(synthetic_runs("input", "kronecker")).verdict
    vb = analyse(synthetic_runs("kronecker", "input")).verdict
    assert va != vb
    assert va[0] == vb[0] == ("on iris_petal, the chance level (the test error of answering the "
                              "training split's majority class, mean over 10 seeds) is 0.660.")
    va, vb = va[1:], vb[1:]
    assert va[0].startswith("on iris_petal, paired by seed, `input` ends with the lower mean "
                            "test error in 4 of 4 (activation, lr) cells and `kronecker` in 0")
    assert vb[0].startswith("on iris_petal, paired by seed, `input` ends with the lower mean "
                            "test error in 0 of 4 (activation, lr) cells and `kronecker` in 4")
    # 10 seeds, every difference one way: exact p = 2 / 2^10 per cell, 13 tests in the family
    assert "has Holm p < 0.05 in 4 cells for `input` and 0 for `kronecker`" in va[0]
    learn = [v for v in va if v.startswith("on iris_petal, of 4 (activation, lr) cells `input`")][0]
    assert "lowers the test error significantly in 4" in learn
    stuck = [v for v in va if v.startswith("on iris_petal, of 4 (activation, lr) cells `kronecker`")][0]
    assert "lowers the test error with Holm p < 0.05 in none" in stuck


def test_verdict_names_any_rule_and_says_where_one_cannot_run():
    from slnn.report import analyse

    runs = synthetic_runs("alpha", "beta")
    sm = runs[runs["update"] == "beta"].assign(
        data="iris", outcome="shape_mismatch", test_error=np.nan, initial_test_error=np.nan,
        val_error=np.nan, reason="update rule 'beta' gives a step of shape (3, 3) but W has "
        "shape (5, 3) (...)")
    runs = pd.concat([runs, sm, runs[runs["update"] == "alpha"].assign(data="iris")])
    v = analyse(runs).verdict
    assert "on iris, `beta` could not run: 40 of 40 runs shape_mismatch ((3, 3) step vs (5, 3) W)." in v
    assert any(s.startswith("on iris_petal, paired by seed, `alpha` ends with the lower") for s in v)
    assert not any(s.startswith("on iris, paired by seed") for s in v)  # nothing to compare with


def test_summary_says_when_too_few_seeds_give_no_interval():
    runs = synthetic_runs("input", "kronecker", seeds=2)
    s = summary_table(runs)
    assert (s["n_seeds"] == 2).all() and s["test_error_lo"].isna().all()
    from slnn.report.render import display_table

    assert set(display_table(s)["test error 95% CI"]) == {"n/a (2 seeds)"}
    assert t_halfwidth(1.0, 2) == pytest.approx(12.706204736174707 / math.sqrt(2))


# --- runs the sweep machinery leaves behind: reruns, running, synthetic -----------------------

def _result(outcome: str, epochs: int, level: float):
    from slnn.core.trainer import HISTORY_COLUMNS, TrainResult

    n = epochs + 1
    h = {c: np.full(n, level) for c in HISTORY_COLUMNS}
    h["epoch"] = np.arange(n, dtype=float)
    h["step"] = h["epoch"] * 10
    h["grad_cosine"][0] = np.nan
    W = np.zeros((3, 3))
    return TrainResult(outcome, "synthetic", W, W, h, epochs_run=epochs, steps_run=epochs * 10)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory, new_sqlite_store):
    """(uri, client) of an empty store made once: migrating a new SQLite store takes seconds."""
    from slnn.tracking import recorder as slnn_recorder, store as slnn_store

    folder = tmp_path_factory.mktemp("toy_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)  # MLflow resolves the default artifact root against the working directory
        client = slnn_store.client_for(new_sqlite_store(folder))
        client.search_experiments()
        yield sqlite_uri(folder), client


def _experiment(client, name: str) -> str:
    from slnn.tracking import recorder as slnn_recorder, store as slnn_store

    return slnn_store.ensure_experiment(client, name)


def test_reruns_and_running_runs_are_handled_and_said(toy_store, tmp_path):
    """A cell rerun after a failure counts once (the FINISHED run); a run still open is left out
    and the report says how many are running."""
    from mlflow.entities import RunTag

    from slnn.tracking import recorder as slnn_recorder, store as slnn_store

    uri, client = toy_store
    exp = _experiment(client, "reruns")
    parent = client.create_run(exp, tags={"slnn.sweep": "true", "slnn.study": "sweep",
                                          "slnn.n_cells": "3"}).info.run_id

    def rec(rule, seed, h):
        return slnn_recorder.RunRecorder(
            client, exp, f"{rule}-{seed}", {"optim.lr": "0.1", "seed": str(seed)},
            {"slnn.update": rule, "slnn.activation": "sigmoid", "slnn.data": "toy",
             "slnn.config_hash": h, "slnn.outcome": "running"}, parent)

    old = rec("input", 0, "h0")
    old.fail(RuntimeError("boom"))
    rec("input", 0, "h0").finish(_result("max_epochs", 4, 0.2), "", plot=False, title="")
    rec("input", 1, "h1").finish(_result("max_epochs", 4, 0.3), "", plot=False, title="")
    rec("input", 2, "h2")  # still running
    client.log_batch(parent, tags=[RunTag("slnn.summary", "synthetic")])

    sweep = read_sweep(uri, parent)
    assert sweep.n_children == 4 and len(sweep.runs) == 3
    assert old.run_id not in set(sweep.runs["run_id"])
    assert sorted(sweep.runs["outcome"]) == ["max_epochs", "max_epochs", "running"]
    out = report_for_parent(uri, parent, out=tmp_path / "r")
    md = (out / "report.md").read_text()
    assert "1 of 3 runs are still running" in md
    assert "1 older run(s) of cells that were run again are left out" in md
    s = pd.read_csv(out / "summary.csv")
    assert s.loc[0, "n_runs"] == 2 and s.loc[0, "test_error_mean"] == pytest.approx(0.25)


def test_a_sweep_parent_without_children_is_a_one_line_error(toy_store, tmp_path):
    uri, client = toy_store
    exp = _experiment(client, "no_children")
    parent = client.create_run(exp, tags={"slnn.sweep": "true"}).info.run_id
    with pytest.raises(ReportError, match=f"sweep {parent} .* has no runs yet"):
        report_for_parent(uri, parent, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


# --- the command line -------------------------------------------------------------------------

@pytest.mark.slow
def test_bad_input_gets_one_line_and_exit_code_2(sweep, children, tmp_path, capsys):
    from mlflow import MlflowClient

    from slnn.app.report_cli import main

    uri, parent, folder = sweep
    MlflowClient(uri).create_experiment("empty")
    cases = {
        ("--parent-run", "nope"): "no run 'nope' at ",
        ("--experiment", "nope"): "no experiment 'nope' at .* \\(experiments there: Default, empty, slnn\\)",
        ("--experiment", "empty"): "experiment 'empty' at .* has no sweep",
        ("--parent-run", children[0].info.run_id):
            f"run \\w+ at .* is not a sweep's parent run .* try --parent-run {parent}$",
        ("--target-error", "0"): "--target-error must be in \\(0, 1\\]",
    }
    for i, (args, message) in enumerate(cases.items()):
        if i < 2:  # the console script itself, as a user runs it
            proc = slnn_report(*args, "--tracking-uri", uri, cwd=tmp_path)
            code, err = proc.returncode, proc.stderr
        else:
            code, err = main([*args, "--tracking-uri", uri]), capsys.readouterr().err
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert re.match(f"slnn-report: error: {message}", lines[0]), lines[0]
    with pytest.MonkeyPatch.context() as mp:  # no mlflow.db here: MLflow must not make an empty one
        mp.chdir(tmp_path)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert main([]) == 2
    assert "no tracking store at" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_cli_reports_the_newest_sweep_into_reports_study(sweep, tmp_path):
    uri, parent, _ = sweep
    proc = slnn_report("--experiment", "slnn", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # an ad-hoc grid's report has a folder of its own, named after its parent run
    html = tmp_path / "reports" / f"sweep-{parent[:8]}" / "report.html"
    assert html.exists() and str(html) in proc.stdout and parent in proc.stdout


def test_help_explains_every_option():
    proc = subprocess.run([str(SLNN_REPORT), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for opt in ("--experiment", "--parent-run", "--tracking-uri", "--out", "--target-error",
                "--attach", "examples:"):
        assert opt in proc.stdout


@pytest.mark.slow
def test_all_shape_mismatch_sweep_gives_a_report_that_says_why(slnn_train, tmp_path):
    run_sweep(slnn_train, tmp_path, "data=iris", "update=kronecker", "seed=0,1", "train.epochs=2",
              *FAST)
    uri = sqlite_uri(tmp_path)
    out = report_for_parent(uri, parent_of(uri), out=tmp_path / "r")
    md = (out / "report.md").read_text()
    assert "no curves could be drawn" in md
    assert "`kronecker` could not run: 2 of 2 runs shape_mismatch ((3, 3) step vs (5, 3) W)" in md
    assert {p.name for p in out.glob("*.png")} == {"outcomes.png"}  # no empty figures
    assert md.count("*Not drawn:") == 5  # the answer, time to target, curves, heatmap, cosine
    assert "**`kronecker` cannot run on iris.**" in md
    assert len(pd.read_parquet(out / "tidy.parquet")) == 0


@pytest.mark.slow
def test_every_multirun_writes_and_attaches_its_report(slnn_train, tmp_path):
    from mlflow import MlflowClient

    proc = run_sweep(slnn_train, tmp_path, "update=input,kronecker", "data=iris_petal",
                     "train.epochs=2", "tracking.plot=false", "tracking.log_model=false")
    m = re.search(r"; report: (\S+)", proc.stdout)
    assert m, proc.stdout[-2000:]
    folder = Path(m.group(1))
    uri = sqlite_uri(tmp_path)
    assert folder == tmp_path / "reports" / f"sweep-{parent_of(uri)[:8]}"
    assert (folder / "report.html").exists()
    names = {Path(a.path).name for a in MlflowClient(uri).list_artifacts(parent_of(uri), "report")}
    assert {"report.html", "report.md", "tidy.parquet", "summary.csv", "outcomes.png"} <= names


# --- words no stronger than the tests (cases an independent re-analysis found) ---------------

def test_a_cell_whose_runs_failed_or_diverged_does_not_say_every_run_diverged():
    from slnn.report import analyse

    runs = synthetic_runs("input", "custom", seeds=8)
    cell = (runs["update"] == "custom") & (runs["activation"] == "tanh") & (runs["lr"] == 1.0)
    failed = cell & (runs["seed"] >= 2)
    runs.loc[failed, ["outcome", "test_error", "val_error", "epochs_run"]] = ["failed", np.nan,
                                                                             np.nan, np.nan]
    runs.loc[cell & ~failed, ["outcome", "test_error", "val_error"]] = ["diverged", np.nan, np.nan]
    a = analyse(runs)
    s = a.summary.join(a.learn)
    row = s[(s["update"] == "custom") & (s["activation"] == "tanh") & (s["lr"] == 1.0)].iloc[0]
    assert row["learns"] == "every run that ran diverged (2 of 8 ran; 6 failed)"
    line = [v for v in a.verdict if v.startswith("on iris_petal, of 4 (activation, lr) cells "
                                                 "`custom`")][0]
    assert "diverged in every run that ran in 1" in line and "diverged in every run in" not in line


def test_the_headline_says_no_test_and_compares_the_best_cells_over_the_seeds_both_trained():
    from slnn.report import analyse

    runs = synthetic_runs("input", "custom", seeds=8)
    runs = runs[(runs["activation"] == "sigmoid") & (runs["lr"] == 0.1)].copy()
    custom = runs["update"] == "custom"
    runs.loc[custom & (runs["seed"] >= 2), ["outcome", "test_error", "val_error",
                                             "epochs_run"]] = ["failed", np.nan, np.nan, np.nan]
    # the 2 seeds custom trained: the same errors as input's, so every difference is 0
    both = runs["seed"] < 2
    runs.loc[custom & both, "test_error"] = runs.loc[~custom & both, "test_error"].to_numpy()
    runs.loc[custom & both, "val_error"] = runs.loc[~custom & both, "val_error"].to_numpy()
    a = analyse(runs)
    head = " ".join(a.headline)
    # custom has no seed reported at a cell chosen without it (the other half never ran): no
    # best-vs-best test, so the answer compares nothing and says what happened instead
    assert "`custom` failed in 6 of 8 runs" in head and "significant" not in head
    assert not (a.tests["family"] == "best_vs_best").any()
    row = a.answer.table.set_index("update").loc["input"]
    assert row["test_error"] == pytest.approx(runs[~custom]["test_error"].mean())  # all 8 seeds


def test_significantly_is_never_said_of_zero_cells():
    from slnn.report import analyse

    a = synthetic_runs("input", "kronecker", seeds=3)
    b = synthetic_runs("input", "no_bias", seeds=3)
    runs = pd.concat([a, b[b["update"] == "no_bias"]])
    words = " ".join(analyse(runs).headline + analyse(runs).verdict)
    assert not re.search(r"significantly \w+ in (0|none)\b", words), words


def test_a_rule_worse_than_chance_is_said_to_be_above_chance_level():
    from slnn.report import analyse

    runs = synthetic_runs("input", "kronecker", seeds=4)
    bad = runs["update"] == "kronecker"
    runs.loc[bad, "test_error"] = 0.9 + 0.01 * runs.loc[bad, "seed"]
    runs.loc[bad, "initial_test_error"] = 0.9 + 0.01 * ((runs.loc[bad, "seed"] + 1) % 4)
    a = analyse(runs)
    s = a.summary.join(a.learn)
    k = s[s["update"] == "kronecker"]
    assert (k["learn_kind"] == "no significant change; above chance level").all()
    assert (k["test_error_lo"] > k["chance_error"]).all()  # what the words rest on
    line = [v for v in a.verdict if "cells `kronecker`" in v][0]
    assert "(0 of them near chance level, 4 above it)" in line
    assert "below the chance level (the training split's majority class, 0.660 on iris_petal) in 0 " \
           "and above it in 4" in line


@pytest.mark.parametrize("data_seed, says", [
    ("None", "a seed fixes the split, the initial weights"),
    ("0", "the split is not drawn per seed but fixed by data.seed (0)")])
def test_the_statistics_note_says_what_a_seed_fixes_from_the_runs(data_seed, says):
    from slnn.report import analyse
    from slnn.report.sections import stats_note

    runs = synthetic_runs("input", "kronecker", seeds=3).assign(data_seed=data_seed)
    a = analyse(runs)
    note = stats_note(len(a.tests), runs, a.tests)[0]
    assert says in note
    # 3 seeds: the exact test cannot go below 0.25, so none of the tests could be significant
    n = int(np.isfinite(a.tests["p"]).sum())
    assert n and f"In {n} of the {n} tests at most 5 seeds differ" in note


def test_the_chance_level_of_a_cell_is_over_the_seeds_its_errors_are_over():
    """With data.seed=null each seed has its own split and chance level: a cell's chance level
    is the mean over the seeds that trained, the same seeds as its errors and interval."""
    from slnn.report.stats import summary_table

    runs = synthetic_runs("input", "kronecker", seeds=6)
    runs["chance_error"] = 0.1 + 0.05 * runs["seed"]
    cell = (runs["update"] == "input") & (runs["activation"] == "tanh") & (runs["lr"] == 1.0)
    gone = cell & (runs["seed"] >= 4)
    runs.loc[gone, ["outcome", "test_error", "val_error"]] = ["diverged", np.nan, np.nan]
    s = summary_table(runs).set_index(["update", "activation", "lr"])
    assert s.loc[("input", "tanh", 1.0), "chance_error"] == pytest.approx(
        np.mean([0.1 + 0.05 * k for k in range(4)]))
    assert s.loc[("input", "sigmoid", 0.1), "chance_error"] == pytest.approx(
        np.mean([0.1 + 0.05 * k for k in range(6)]))


def test_runs_of_one_seed_in_a_cell_count_once_as_their_mean():
    """data.seed=0,1 puts two runs of each seed in a cell: the seed is the unit, so each seed's
    value is the mean of its two runs, in the summary and in the paired tests alike."""
    from slnn.report import analyse

    one = synthetic_runs("input", "kronecker", seeds=4).assign(data_seed="0")
    two = one.assign(data_seed="1", run_id=one["run_id"] + "b",
                     test_error=one["test_error"] + 0.02 * one["seed"])
    runs = pd.concat([one, two], ignore_index=True)
    a = analyse(runs)
    s = a.summary.set_index(["update", "activation", "lr"])
    row = s.loc[("input", "sigmoid", 0.1)]
    mine = runs[(runs["update"] == "input") & (runs["activation"] == "sigmoid")
                & (runs["lr"] == 0.1)]
    by_seed = mine.groupby("seed")["test_error"].mean()
    assert row["n_seeds"] == 4 and row["n_runs"] == 8
    assert row["test_error_mean"] == pytest.approx(by_seed.mean())
    from slnn.report.inference import rate_interval  # the interval of the 4 seeds' means

    assert (row["test_error_lo"], row["test_error_hi"]) == pytest.approx(rate_interval(by_seed))
    t = a.tests[(a.tests["family"] == "head_to_head") & (a.tests["activation"] == "sigmoid")
                & (a.tests["lr"] == 0.1)].iloc[0]
    other = runs[(runs["update"] == "kronecker") & (runs["activation"] == "sigmoid")
                 & (runs["lr"] == 0.1)].groupby("seed")["test_error"].mean()
    assert t["n"] == 4 and t["diff"] == pytest.approx((by_seed - other).mean())


def test_the_rules_table_picks_the_best_lr_by_the_reports_own_rule():
    """A learning rate whose low validation error averages only the runs that did not diverge is
    not the best one: the rules table follows the best-cell rule of the rest of the report."""
    from slnn.report import analyse
    from slnn.report.rulecheck import _best_rows

    runs = synthetic_runs("input", "no_bias", seeds=6)
    runs = runs[runs["activation"] == "sigmoid"].copy()
    risky = (runs["update"] == "input") & (runs["lr"] == 1.0)
    runs.loc[risky, ["test_error", "val_error"]] -= 0.03  # better, on the runs that survive
    runs.loc[risky & (runs["seed"] == 0), ["outcome", "test_error", "val_error"]] = [
        "diverged", np.nan, np.nan]
    a = analyse(runs)
    best = a.summary[a.summary["best"].astype(bool) & (a.summary["update"] == "input")]
    assert list(best["lr"]) == [0.1]
    rows = _best_rows(a.summary, a.learn)
    assert rows.loc[("iris_petal", "input", "sigmoid"), "lr"] == 0.1


def test_a_study_of_three_rules_without_input_names_every_rule_in_the_headline():
    from slnn.report import analyse

    a = synthetic_runs("ascent", "kronecker", seeds=6)
    c = synthetic_runs("no_derivative", "kronecker", seeds=6)
    c = c[c["update"] == "no_derivative"].assign(test_error=lambda d: d["test_error"] - 0.03,
                                                 val_error=lambda d: d["val_error"] - 0.03)
    runs = pd.concat([a, c], ignore_index=True)
    result = analyse(runs)
    head = " ".join(result.headline)
    # no input: the first rule is the reference, and every other rule is named against it
    assert result.answer.reference == "ascent"
    for r in ("ascent", "kronecker", "no_derivative"):
        assert f"`{r}`" in head
    assert set(result.answer.table["update"]) == {"ascent", "kronecker", "no_derivative"}
    assert len(head.split()) <= 60


def test_cells_tied_with_the_last_one_named_are_counted_and_zero_is_never_negative():
    from slnn.report import analyse
    from slnn.report.verdict import fmt

    runs = synthetic_runs("input", "kronecker", seeds=3)
    bad = runs["update"] == "kronecker"
    runs.loc[bad, ["outcome", "test_error", "val_error"]] = ["diverged", np.nan, np.nan]
    a = analyse(runs)
    line = [v for v in a.verdict if "`kronecker` diverged in 12 of 12" in v][0]
    assert line.count(": 3 of 3") == 3 and "and 1 more cell at that rate" in line
    head = " ".join(a.headline)
    assert "`kronecker` diverges in 12 of 12 runs" in head
    assert fmt(-0.0004) == "0.000" and fmt(-0.0006) == "-0.001"


def test_the_half_that_did_not_diverge_counts_seeds_on_both_sides():
    """10 seeds with two runs each (data.seed=0,1): a cell where one seed diverged in both runs
    still has 9 of its 10 seeds trained, more than half, so the rule keeps a best cell."""
    from slnn.report.stats import summary_table

    one = synthetic_runs("input", "kronecker", seeds=10).assign(data_seed="0")
    runs = pd.concat([one, one.assign(data_seed="1", run_id=one["run_id"] + "b")],
                     ignore_index=True)
    runs = runs[runs["activation"] == "sigmoid"].copy()
    gone = (runs["update"] == "input") & (
        ((runs["lr"] == 0.1) & (runs["seed"] == 0)) | ((runs["lr"] == 1.0) & (runs["seed"] < 4)))
    runs.loc[gone, ["outcome", "test_error", "val_error"]] = ["diverged", np.nan, np.nan]
    s = summary_table(runs)
    s = s[s["update"] == "input"].set_index("lr")
    assert list(s["n_seeds"]) == [9, 6] and list(s["n_seeds_ran"]) == [10, 10]
    assert list(s["n_ran"]) == [20, 20] and s["best"].sum() == 1


def test_a_pair_is_named_once_when_data_sets_have_different_rules():
    from slnn.report import analyse

    a = synthetic_runs("alpha", "kronecker", seeds=4)
    i = synthetic_runs("input", "kronecker", seeds=4)
    iris = pd.concat([a, i[i["update"] == "input"]], ignore_index=True)
    blobs = pd.concat([a[a["update"] == "alpha"], i[i["update"] == "input"]],
                      ignore_index=True).assign(data="blobs")
    head = " ".join(analyse(pd.concat([iris, blobs], ignore_index=True)).headline)
    named = re.findall(r"`(\w+)` against `(\w+)` in", head)
    assert len(named) == len({frozenset(p) for p in named}), named


# --- a report is a function of its data files ------------------------------------------------

@pytest.mark.slow
def test_the_report_from_its_data_files_is_the_report_from_the_store(report, sweep, tmp_path):
    """The store's report is drawn from the data files it wrote; ``--from`` draws it again from
    them alone, with no store: the same report.md (the generated line aside) and tables."""
    import json

    from slnn.report import report_from

    uri, parent, _ = sweep
    facts = json.loads((report / "sweep.json").read_text())
    assert facts["parent_run_id"] == parent and facts["study"] == "sweep"
    assert facts["files"] == ["sweep.json", "runs.csv", "tidy.parquet", "identity.csv"]
    assert facts["target_error"] == 0.4 and facts["n_children"] == 16
    identity = pd.read_csv(report / "identity.csv")
    assert len(identity) and (identity["max_abs_diff"] < 1e-12).all()
    again = report_from(report, tmp_path / "again")
    generated = re.compile(r"^- \*\*generated\*\*: .*$", re.M)
    md, md_again = (report / "report.md").read_text(), (again / "report.md").read_text()
    assert len(generated.findall(md)) == 1
    assert generated.sub("", md_again) == generated.sub("", md)
    for name in ("summary.csv", "tests.csv", "runs.csv", "tidy.parquet", "identity.csv"):
        assert (again / name).read_bytes() == (report / name).read_bytes(), name
    assert uri not in md and str(report) not in md
