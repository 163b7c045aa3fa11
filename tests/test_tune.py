"""Tune, then confirm (``hydra.sweeper.search``), through ``slnn-train -m`` as users run it: the
runs a search leaves in the store, its budget, its seeds, a pruned trial, a killed search
resumed, and two searches of one study at once. Faults are driven by events (lines in the
sweep's ledger), never by sleeps."""

from __future__ import annotations

import collections
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
STUDY = """# @package _global_
train:
  epochs: {epochs}
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
      trials: {trials}
      batch: {batch}
      tune_seeds: range(100,102)
      confirm_seeds: range(3)
      check_every: 5
      pruner: {pruner}
"""
ARMS = ("data=iris_petal update=input model.activation=tanh",
        "data=iris_petal update=kronecker model.activation=tanh")


def study(tmp_path: Path, *, epochs=30, trials=6, batch=3, pruner="median") -> list[str]:
    folder = tmp_path / "confs" / "experiment"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny_search.yaml").write_text(STUDY.format(epochs=epochs, trials=trials,
                                                          batch=batch, pruner=pruner))
    return ["-m", "+experiment=tiny_search", f"hydra.searchpath=[file://{tmp_path}/confs]",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "sweep.report=false",
            "tracking.log_model=false", f"hydra.sweep.dir={tmp_path}/multirun"]


def env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def runs(tmp_path: Path) -> list:
    from slnn.tracking.store import client_for

    client = client_for(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("slnn")
    out, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        out += page
        token = page.token
        if not token:
            return [r for r in out if "slnn.stage" in r.data.tags and "slnn.link_to" not in r.data.tags]


def trials_in_journal(tmp_path: Path) -> dict[str, list]:
    import optuna

    from slnn.sweep.search import journal

    storage = journal(tmp_path / "mlflow.db.optuna")
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).trials
            for s in optuna.get_all_study_summaries(storage)}


def check_search(tmp_path: Path, trials: int) -> dict:
    """What every search must leave: per arm exactly ``trials`` trial numbers, each run once
    (one FINISHED run per trial, no number twice), confirmation on seeds 0-2 only, tuning on
    100-101 only, each confirmation at the arm's best trial's learning rate."""
    got = runs(tmp_path)
    tune = [r for r in got if r.data.tags["slnn.stage"] == "tune" and r.info.status == "FINISHED"]
    confirm = [r for r in got if r.data.tags["slnn.stage"] == "confirm"
               and r.info.status == "FINISHED"]
    per_arm = collections.Counter(r.data.tags["slnn.arm"] for r in tune)
    assert per_arm == {arm: 2 * trials for arm in ARMS}, sorted(
        (r.data.tags["slnn.arm"], r.data.tags["slnn.trial"], r.data.tags["slnn.code_hash"])
        for r in tune)
    numbers = collections.defaultdict(list)
    for r in tune:
        numbers[r.data.tags["slnn.arm"]].append(int(r.data.tags["slnn.trial"]))
    # each trial number once per tuning seed: its value on every tuning seed
    assert all(sorted(n) == sorted(list(range(trials)) * 2) for n in numbers.values()), numbers
    seeds = collections.defaultdict(set)
    for r in tune:
        seeds[(r.data.tags["slnn.arm"], r.data.tags["slnn.trial"])].add(r.data.params["seed"])
    assert set(map(frozenset, seeds.values())) == {frozenset({"100", "101"})}
    assert {int(r.data.params["seed"]) for r in confirm} == {0, 1, 2}
    for arm in ARMS:
        mine = [r for r in confirm if r.data.tags["slnn.arm"] == arm]
        assert len(mine) == 3 and len({r.data.params["optim.lr"] for r in mine}) == 1
        by_trial = collections.defaultdict(list)
        for r in tune:
            if r.data.tags["slnn.arm"] == arm:
                by_trial[int(r.data.tags["slnn.trial"])].append(r)
        # a trial's score: the mean final validation error over its seeds (a diverged run: 1);
        # pruned ones are out; a tie goes to the lower mean final validation loss (a diverged
        # run's: infinite), then to the lower trial number
        def err(r):
            return 1.0 if r.data.tags["slnn.outcome"] == "diverged" else \
                r.data.metrics["final/val_error"]

        def loss(r):
            v = r.data.metrics.get("final/val_loss", math.nan)
            return math.inf if r.data.tags["slnn.outcome"] == "diverged" or \
                not math.isfinite(v) else v

        scores = {n: (round(sum(map(err, rs)) / len(rs), 12), sum(map(loss, rs)) / len(rs), n)
                  for n, rs in by_trial.items()
                  if all(r.data.tags["slnn.outcome"] != "pruned" for r in rs)}
        best = min(scores, key=scores.get)
        assert int(mine[0].data.tags["slnn.trial"]) == best
        assert mine[0].data.params["optim.lr"] == by_trial[best][0].data.params["optim.lr"]
    journal_trials = trials_in_journal(tmp_path)
    assert len(journal_trials) == len(ARMS)
    for ts in journal_trials.values():
        assert {t.number for t in ts if t.number < trials} == set(range(trials))
        assert all(t.state.is_finished() for t in ts)
    return {"tune": tune, "confirm": confirm}


@pytest.mark.slow
def test_a_search_tunes_each_arm_with_one_budget_then_confirms_on_fresh_seeds(tmp_path):
    proc = subprocess.run([BIN / "slnn-train", *study(tmp_path)], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "a search of 2 arm(s)" in proc.stdout
    got = check_search(tmp_path, trials=6)
    pruned = [r for r in got["tune"] if r.data.tags["slnn.outcome"] == "pruned"]
    assert pruned, "the median pruner cut no trial: the test's premise failed"
    from slnn.tracking.store import client_for

    client = client_for(f"sqlite:///{tmp_path}/mlflow.db")
    for r in pruned:  # a child of the parent, its curve up to the epoch it was cut at
        assert r.data.tags["mlflow.parentRunId"] and r.info.status == "FINISHED"
        curve = client.get_metric_history(r.info.run_id, "curves/val_loss")
        last = max(m.step for m in curve)
        assert last % 5 == 0 and 0 < last < 30 and r.data.metrics["final/epoch"] == last
    assert f"{len(pruned)} pruned" in proc.stdout


@pytest.mark.slow
def test_a_killed_search_resumes_without_repeating_a_trial(tmp_path):
    """The launcher is killed with SIGKILL once its second batch of trials has started (two
    batches of 2 per arm ended or running in the ledger); the same command finishes the search:
    every trial number ran once, and the trials the first session finished were not run again."""
    args = study(tmp_path, trials=6, batch=2)
    first = subprocess.Popen([BIN / "slnn-train", *args], cwd=tmp_path, env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 600
    while True:  # the event: 10 cells ended (a batch is 2 arms x 2 trials x 2 seeds = 8 cells)
        ledgers = list((tmp_path / "multirun").rglob("progress.jsonl"))
        if ledgers and sum(len(p.read_text().splitlines()) for p in ledgers) >= 10:
            break
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = {r.info.run_id for r in runs(tmp_path) if r.info.status == "FINISHED"}
    again = subprocess.run([BIN / "slnn-train", *args], cwd=tmp_path, env=env(),
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    got = check_search(tmp_path, trials=6)
    # no trial ran twice: each finished run of the first session is still the only run of its
    # trial, and none of its cells was run again
    finished_first = [r for r in got["tune"] if r.info.run_id in before]
    assert finished_first, "the kill came before any trial finished: the premise failed"
    assert len({(r.data.tags["slnn.arm"], r.data.tags["slnn.trial"], r.data.params["seed"])
                for r in got["tune"]}) == len(got["tune"])


@pytest.mark.slow
def test_two_searches_of_one_study_at_once_share_its_trials(tmp_path):
    """A second search of the same study started while the first runs (once the first has
    ended a cell) shares the first's Optuna studies: together they run each trial number once,
    and the budget is the study's, not twice it."""
    args = study(tmp_path, trials=6, batch=2)
    first = subprocess.Popen([BIN / "slnn-train", *args], cwd=tmp_path, env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while not any(p.read_text().strip()
                  for p in (tmp_path / "multirun").rglob("progress.jsonl")):
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = subprocess.run([BIN / "slnn-train", *args], cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=900)
    out_first, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out_first[-2000:]
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    got = check_search(tmp_path, trials=6)
    assert len({(r.data.tags["slnn.arm"], r.data.tags["slnn.trial"]) for r in got["tune"]}) \
        == len(got["tune"]) // 2 == 12


def test_a_bad_search_fails_in_one_line_before_any_store_exists(tmp_path):
    args = study(tmp_path, pruner="hyperband")
    proc = subprocess.run([BIN / "slnn-train", *args], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("slnn-train: error: hydra.sweeper.search.pruner='hyperband': "
                                   "choose one of ['median', 'halving', 'none']")
    assert not (tmp_path / "mlflow.db").exists()
