"""The report of a tuned study (tune, then confirm; slnn.report.tuning), on a small real search.

One search of two arms (iris_petal, rules input and kronecker, tanh) tunes the learning rate on
seeds 100-101 with a pruner and confirms on seeds 0-3; one small grid over the same arms is the
grid to compare with. The report's figures are checked against what the MLflow store holds,
computed here from the store with the MLflow client.
"""

from __future__ import annotations

import collections

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# real searches and grids as subprocesses, as the other sweep tests
pytestmark = pytest.mark.slow

STUDY = """\
# @package _global_
train:
  epochs: 20
data:
  seed: null
hydra:
  sweeper:
    params:
      data: iris_petal
      update: input,kronecker
      model.activation: tanh
    search:
      space:
        optim.lr: tag(log, interval(1e-3, 3))
      trials: 6
      batch: 3
      tune_seeds: range(100,102)
      confirm_seeds: range(4)
      check_every: 5
"""
TUNE_SEEDS, CONFIRM_SEEDS = {100, 101}, {0, 1, 2, 3}


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _children(uri: str, parent: str) -> list:
    c = _client(uri)
    exp = c.get_run(parent).info.experiment_id
    return list(c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'", max_results=5000))


def _sweep(slnn_train, cwd: Path, args: list[str]) -> tuple[str, str]:
    """Run a sweep in ``cwd`` with its own store; (store URI, parent run id)."""
    uri = f"sqlite:///{cwd}/mlflow.db"
    proc = slnn_train(["-m", *args, f"tracking.uri={uri}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    c = _client(uri)
    exp = c.get_experiment_by_name("slnn")
    parent = c.search_runs([exp.experiment_id], "tags.`slnn.sweep` = 'true'")[0].info.run_id
    return uri, parent


@pytest.fixture(scope="module")
def tuned_sweep(tmp_path_factory, slnn_train, grid_report):
    """(store URI, parent run id, the sweep's own report folder, its last line) of the small
    search, run with ``sweep.report_grid`` naming the small grid's report."""
    root = tmp_path_factory.mktemp("tuned")
    (root / "confs" / "experiment").mkdir(parents=True)
    (root / "confs" / "experiment" / "tinytune.yaml").write_text(STUDY)
    uri = f"sqlite:///{root}/mlflow.db"
    proc = slnn_train(["-m", "+experiment=tinytune", f"hydra.searchpath=[file://{root}/confs]",
                       f"sweep.report_grid={grid_report[2]}", f"tracking.uri={uri}"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parent = re.search(r"parent run ([0-9a-f]{32})", proc.stdout).group(1)
    own = re.search(r"; report: (\S+) \(rebuild", proc.stdout)
    assert own, proc.stdout[-2000:]
    return uri, parent, root / own.group(1), proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tuned(tuned_sweep, tmp_path_factory):
    """(store URI, parent run id, report folder) of the small search."""
    uri, parent, _, _ = tuned_sweep
    from slnn.report import report_for_parent

    folder = report_for_parent(uri, parent, out=tmp_path_factory.mktemp("tuned") / "report")
    return uri, parent, folder


def test_a_tuned_sweeps_own_report_compares_with_its_report_grid(tuned_sweep, grid_report,
                                                                 tmp_path):
    """``sweep.report_grid``: the report the sweep writes as it ends has the comparison that
    ``slnn-report --grid`` gives for the same store and grid."""
    from slnn.report import report_for_parent

    uri, parent, own, last = tuned_sweep
    by_hand = report_for_parent(uri, parent, out=tmp_path / "r", grid=grid_report[2])
    assert (own / "grid_comparison.csv").read_bytes() == \
        (by_hand / "grid_comparison.csv").read_bytes()
    md = (own / "report.md").read_text()
    assert "Against the grid's best cell" in md
    # the commands it gives: the sweep's own (which has sweep.report_grid), slnn-report --grid
    header = dict(re.findall(r"^- \*\*(.+?)\*\*: `?(.*?)`?$", md, re.M))
    assert "sweep.report_grid=" in header["regenerate"] and "--grid" not in header["regenerate"]
    assert header["or, with its store"].endswith(f"--grid {grid_report[2].name}")
    # the last line's rebuild command names the grid by its absolute path, as it does the store
    assert f"--grid {grid_report[2]}" in last and "no grid comparison" not in last


@pytest.fixture(scope="module")
def grid_report(tmp_path_factory, slnn_train):
    """(store URI, parent run id, report folder) of a small grid over the search's arms."""
    root = tmp_path_factory.mktemp("grid")
    uri, parent = _sweep(slnn_train, root, [
        "data=iris_petal", "update=input,kronecker", "model.activation=tanh",
        "optim.lr=0.01,0.1,1.0", "seed=range(4)", "train.epochs=20", "data.seed=null"])
    from slnn.report import report_for_parent

    return uri, parent, report_for_parent(uri, parent, out=root / "report")


def _store_trials(uri: str, parent: str) -> pd.DataFrame:
    """Every child run of the search as the store has it (tags, params, final metrics)."""
    rows = []
    for r in _children(uri, parent):
        t, m = r.data.tags, r.data.metrics
        rows.append({"stage": t.get("slnn.stage"), "arm": t.get("slnn.arm"),
                     "trial": int(t["slnn.trial"]), "status": r.info.status,
                     "outcome": t.get("slnn.outcome"), "lr": float(r.data.params["optim.lr"]),
                     "seed": int(r.data.params["seed"]),
                     "val_error": m.get("final/val_error", math.nan),
                     "val_loss": m.get("final/val_loss", math.nan),
                     "test_error": m.get("final/test_error", math.nan), "run_id": r.info.run_id})
    return pd.DataFrame(rows)


def test_the_tuning_table_is_what_the_store_holds(tuned):
    uri, parent, folder = tuned
    store = _store_trials(uri, parent)
    assert set(store["stage"]) == {"tune", "confirm"}
    table = pd.read_csv(folder / "tuning.csv")
    assert len(table) == 2
    for arm, runs in store.groupby("arm"):
        row = table[table["arm"] == arm].iloc[0]
        tune, confirm = runs[runs["stage"] == "tune"], runs[runs["stage"] == "confirm"]
        assert set(tune["seed"]) <= TUNE_SEEDS and set(confirm["seed"]) == CONFIRM_SEEDS
        # a trial is its value on every tuning seed: pruned if a seed's run was pruned, failed
        # if one never finished, else complete, scored by its seeds' mean validation error
        per_trial = {}
        for n, g in tune.groupby("trial"):
            assert set(g["seed"]) == TUNE_SEEDS
            if (g["outcome"] == "pruned").any():
                per_trial[n] = ("pruned", None, None)
            elif (g["status"] != "FINISHED").any():
                per_trial[n] = ("failed", None, None)
            else:
                v = g["val_error"].where(g["outcome"] != "diverged", 1.0).fillna(1.0)
                loss = g["val_loss"].where(g["outcome"] != "diverged", math.inf).fillna(math.inf)
                per_trial[n] = ("complete", v.mean(), loss.mean())
        states = collections.Counter(s for s, *_ in per_trial.values())
        assert (row["trials"], row["complete"], row["pruned"], row["failed"]) == (
            len(per_trial), states["complete"], states["pruned"], states["failed"])
        # the learning rate found: the completed trial with the lowest mean validation error,
        # a tie going to the lower mean validation loss (a diverged seed's: infinite), which the
        # confirming runs all ran at and name
        best = min((round(v, 12), loss, n) for n, (s, v, loss) in per_trial.items()
                   if s == "complete")[2]
        best_lr = tune[tune["trial"] == best]["lr"].iloc[0]
        assert confirm["lr"].nunique() == 1 and set(confirm["trial"]) == {best}
        assert row["trial"] == best
        assert row["lr"] == pytest.approx(best_lr, rel=1e-12)
        assert row["tune_val_error"] == pytest.approx(per_trial[best][1], abs=1e-12)
        assert row["tune_seeds"] == len(TUNE_SEEDS)
        # the confirmed test error: the mean over the confirming seeds
        te = confirm["test_error"].where(confirm["outcome"] != "diverged", 1.0)
        assert row["confirm_seeds"] == 4
        assert row["test_error"] == pytest.approx(te.mean(), abs=1e-12)
    md = (folder / "report.md").read_text()
    assert "## Tuning" in md and "tuned on seeds 100-101" in md and "confirmed on seeds 0-3" in md
    assert (folder / "tuning_slice.png").exists()


def test_the_answer_and_the_tests_use_only_the_confirming_runs(tuned):
    uri, parent, folder = tuned
    store = _store_trials(uri, parent)
    confirm = store[store["stage"] == "confirm"]
    summary = pd.read_csv(folder / "summary.csv")
    # one cell per arm, at the confirmed lr, over the 4 confirming seeds only
    assert len(summary) == 2 and set(summary["n_seeds"]) == {4}
    assert sorted(summary["lr"]) == pytest.approx(sorted(confirm["lr"].unique()))
    tests = pd.read_csv(folder / "tests.csv")
    best = tests[tests["family"] == "best_vs_best"]
    assert len(best) == 1 and int(best["n"].iloc[0]) == len(CONFIRM_SEEDS)
    # the runs.csv keeps every run with its stage, arm and trial (the tuning's too)
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == len(store) and set(runs["stage"]) == {"tune", "confirm"}
    assert set(runs.loc[runs["stage"] == "confirm", "seed"]) == CONFIRM_SEEDS


def test_pruned_trials_are_in_the_slice_data_at_their_last_validation_error(tuned):
    from slnn.report.datafiles import load_inputs
    from slnn.report.tuning import slice_data, split_stages

    uri, parent, folder = tuned
    store = _store_trials(uri, parent)
    pruned = store[store["outcome"] == "pruned"]
    assert len(pruned), "the search pruned no trial: make the study's pruner stop one"
    _, tune = split_stages(load_inputs(folder).sweep)
    s = slice_data(tune)
    tuning = store[store["stage"] == "tune"]
    assert len(s) == len(tuning.groupby(["arm", "trial"]))
    # a trial with a pruned seed is pruned, at the mean of its seeds' last validation errors
    got = s[s["state"] == "pruned"].set_index(["arm", "trial"])["val_error"].sort_index()
    cut = sorted(set(zip(pruned["arm"], pruned["trial"])))
    want = (tuning.assign(v=tuning["val_error"].where(tuning["outcome"] != "diverged", 1.0))
            .groupby(["arm", "trial"])["v"].mean().loc[cut].sort_index())
    assert list(got.index) == list(want.index)
    assert np.allclose(got.to_numpy(), want.to_numpy())


def _crossfit_by_hand(store: pd.DataFrame) -> dict:
    """Per (update): seeds 0-1 choose the lr (lowest mean validation error, then validation
    loss, then the larger lr) at which seeds 2-3 are reported, and the other way round; the mean
    test error over the 4 reported seeds."""
    out = {}
    for rule, r in store.groupby("update"):
        reported = []
        for choose, report in (({0, 1}, {2, 3}), ({2, 3}, {0, 1})):
            c = r[r["seed"].isin(choose)].groupby("lr")[["val_error", "val_loss"]].mean()
            c = c.assign(neg_lr=-c.index.to_numpy()).round(12)
            lr = c.sort_values(["val_error", "val_loss", "neg_lr"]).index[0]
            reported += list(r[(r["lr"] == lr) & r["seed"].isin(report)]["test_error"])
        out[rule] = float(np.mean(reported))
    return out


def test_the_grid_comparison_is_what_the_two_stores_hold(tuned, grid_report, tmp_path):
    from slnn.app.report_cli import main
    from slnn.report.inference import rate_interval

    uri, parent, folder = tuned
    guri, gparent, gfolder = grid_report
    assert main(["--from", str(folder), "--out", str(tmp_path / "r"), "--grid",
                 str(gfolder)]) == 0
    comp = pd.read_csv(tmp_path / "r" / "grid_comparison.csv")
    rows = []
    for r in _children(guri, gparent):
        m = r.data.metrics
        assert r.data.tags["slnn.outcome"] != "diverged"  # else score it 1 below
        rows.append({"update": r.data.tags["slnn.update"], "lr": float(r.data.params["optim.lr"]),
                     "seed": int(r.data.params["seed"]), "val_error": m["final/val_error"],
                     "val_loss": m["final/val_loss"], "test_error": m["final/test_error"]})
    by_hand = _crossfit_by_hand(pd.DataFrame(rows))
    store = _store_trials(uri, parent)
    confirm = store[store["stage"] == "confirm"]
    assert len(comp) == 2
    for row in comp.itertuples():
        assert row.grid_seeds == 4 and row.tuned_seeds == 4
        assert row.grid_test_error == pytest.approx(by_hand[row.update], abs=1e-12)
        mine = confirm[confirm["arm"].str.contains(f"update={row.update} ")]
        assert row.tuned_test_error == pytest.approx(mine["test_error"].mean(), abs=1e-12)
        lo, hi = rate_interval(mine["test_error"].to_numpy())
        assert (row.tuned_lo, row.tuned_hi) == pytest.approx((lo, hi), nan_ok=True)
        bound = row.grid_hi if np.isfinite(row.grid_hi) else row.grid_test_error
        assert row.no_worse == (row.tuned_test_error <= bound)
    # kept with the data: drawn again from the folder alone, the comparison is the same
    facts = json.loads((tmp_path / "r" / "sweep.json").read_text())
    assert "grid_runs.csv" in facts["files"]
    assert main(["--from", str(tmp_path / "r"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "grid_comparison.csv").read_bytes() == \
        (tmp_path / "r" / "grid_comparison.csv").read_bytes()
    md = (tmp_path / "again" / "report.md").read_text()
    assert "Against the grid's best cell" in md and "cross-fitted" in md


def test_grid_option_errors_are_one_line(tuned, grid_report, tmp_path, capsys):
    from slnn.app.report_cli import main

    _, _, folder = tuned
    _, _, gfolder = grid_report
    assert main(["--from", str(folder), "--out", str(tmp_path / "a"), "--grid",
                 str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no runs.csv and sweep.json there" in err
    # a grid study's report given --grid: it has nothing to compare
    assert main(["--from", str(gfolder), "--out", str(tmp_path / "b"), "--grid",
                 str(gfolder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no tuning stage" in err
    # a tuned report given as the grid
    assert main(["--from", str(folder), "--out", str(tmp_path / "c"), "--grid",
                 str(folder)]) == 2
    assert "a tuned study's report, not a grid's" in capsys.readouterr().err
