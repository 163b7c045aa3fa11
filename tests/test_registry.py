"""The best run of a sweep goes to the Model Registry under an alias, and loads back from it."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from slnn.app.schema import to_config
from slnn.tracking.model_registry import RegistryError, register_best
from slnn.tracking.recorder import MODEL_METRICS
from slnn.app.run import build_dataset, run_one


@pytest.fixture()
def sweep_store(tmp_path, monkeypatch, compose, new_sqlite_store):
    """Three real runs (different learning rates) under one hand-made parent run."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = new_sqlite_store(tmp_path)
    client = MlflowClient(uri)
    exp = client.create_experiment("reg")
    parent = client.create_run(exp, tags={"slnn.sweep": "true", "slnn.study": "regtest"}).info.run_id
    cfgs, runs = [], []
    for lr in ("0.05", "0.5", "2.0"):
        cfg = compose("data=iris_petal", "model.activation=sigmoid", f"optim.lr={lr}",
                      "train.epochs=15", f"tracking.uri={uri}", "tracking.experiment=reg")
        runs.append(run_one(cfg, parent_run_id=parent, quiet=True).run_id)
        cfgs.append(cfg)
    old = mlflow.get_tracking_uri()
    yield uri, client, parent, runs, cfgs
    mlflow.set_tracking_uri(old)


def _expected_best(client, runs):
    rows = [(client.get_run(r).data.metrics["final/val_loss"],
             client.get_run(r).data.metrics["final/val_error"], r) for r in runs]
    return min(rows)[2]


def test_registers_the_lowest_validation_loss_with_alias(sweep_store):
    uri, client, parent, runs, cfgs = sweep_store
    name, version, run_id = register_best(uri, parent)
    assert name == "slnn-regtest"
    assert run_id == _expected_best(client, runs)
    mv = client.get_model_version_by_alias(name, "best")
    assert (str(mv.version), mv.run_id) == (version, run_id)
    assert "registered_model" not in client.get_run(run_id).data.tags  # the tag is on the parent
    assert client.get_run(parent).data.tags["slnn.registered_model"].startswith(f"{name}@best")
    # the model says what it is, that it is the sweep's best, and carries the run's figures
    model_id = client.get_run(run_id).data.tags["slnn.model_id"]
    lm = client.get_logged_model(model_id)
    assert (lm.name, lm.source_run_id) == ("input-sigmoid-iris_petal", run_id)
    assert lm.tags["slnn.best_of_sweep"] == parent
    assert lm.params["optim.lr"] == client.get_run(run_id).data.params["optim.lr"]
    run_metrics = client.get_run(run_id).data.metrics
    linked = {m.key: m for m in lm.metrics}
    assert {k: m.value for k, m in linked.items()} == {
        k: v for k, v in run_metrics.items() if k.startswith(MODEL_METRICS)}
    assert {(m.dataset_name, m.run_id) for m in linked.values()} == {("iris_petal", run_id)}
    # logging the model's metrics added no point to the run's history
    assert len(client.get_metric_history(run_id, "final/test_error")) == 1
    # listed under "Logged models" on the best run's page and on the sweep's
    for r in (run_id, parent):
        assert [m.model_id for m in client.get_run(r).outputs.model_outputs] == [model_id]
    # the registered model predicts what the run's own weights predict
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@best")
    data = build_dataset(to_config(cfgs[runs.index(run_id)]))
    frame = pd.DataFrame(data.raw(data.x_test), columns=list(data.feature_names))
    W = np.load(client.download_artifacts(run_id, "weights/final.npy"), allow_pickle=False)
    z = 1.0 / (1.0 + np.exp(-(np.hstack([data.x_test, np.ones((data.n_test, 1))]) @ W)))
    expected = np.array(data.class_names)[np.argmax(z, axis=1)]
    assert list(model.predict(frame)["predicted"]) == list(expected)


def test_ties_in_validation_loss_are_broken_by_validation_error_never_test(sweep_store):
    uri, client, parent, runs, _ = sweep_store
    # two runs tie on the latest val_loss; the second has the lower validation error, the first
    # the lower test error: the choice is made on validation only
    a, b = runs[0], runs[2]
    for run, val_error, test_error in ((a, 0.3, 0.0), (b, 0.1, 0.9)):
        client.log_batch(run, metrics=[Metric("final/val_loss", 1e-6, 0, 10_000),
                                       Metric("final/val_error", val_error, 0, 10_000),
                                       Metric("final/test_error", test_error, 0, 10_000)])
    name, _, run_id = register_best(uri, parent, name="tie-test")
    assert run_id == b
    # and a second registration makes a new version that takes the alias over
    client.log_batch(a, metrics=[Metric("final/val_error", 0.0, 0, 20_000)])
    _, version, run_id = register_best(uri, parent, name="tie-test")
    assert run_id == a and version == "2"
    assert client.get_model_version_by_alias("tie-test", "best").run_id == a


def test_a_sweep_with_nothing_trained_says_so(tmp_path, monkeypatch, compose,
                                              new_sqlite_store):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = new_sqlite_store(tmp_path)
    client = MlflowClient(uri)
    exp = client.create_experiment("none")
    parent = client.create_run(exp).info.run_id
    cfg = compose("data=iris", "update=kronecker", f"tracking.uri={uri}", "tracking.experiment=none")
    assert run_one(cfg, parent_run_id=parent, quiet=True).outcome == "shape_mismatch"
    with pytest.raises(RegistryError, match="no run that trained"):
        register_best(uri, parent)


def test_the_best_run_read_page_by_page_is_the_newest_finished_per_cell_lowest_loss(
        tmp_path, monkeypatch, new_sqlite_store):
    """``best_run`` reads a sweep's children a page at a time (``tracking.runs.PAGE``, 2 here):
    its choice equals one made here over every run at once. A cell run twice counts by its
    newest FINISHED run; a newer FAILED run of a cell does not hide its FINISHED one; a run that
    did not train, or belongs to another parent, is never chosen. The runs carry their final
    figures as the curves' latest points, as runs logged before ``final/`` did."""
    import slnn.tracking.runs
    from slnn.tracking.model_registry import best_run
    from slnn.tracking.runs import iter_runs

    monkeypatch.setattr(slnn.tracking.runs, "PAGE", 2)
    client = MlflowClient(new_sqlite_store(tmp_path))
    exp = client.create_experiment("pages", artifact_location=(tmp_path / "a").as_uri())
    parent = client.create_run(exp).info.run_id
    other = client.create_run(exp).info.run_id
    # (cell, start ms, status, outcome, val_loss, parent)
    spec = [("a", 1, "FINISHED", "max_epochs", 0.50, parent),
            ("a", 5, "FINISHED", "converged", 0.90, parent),      # a's newest: 0.90, not 0.50
            ("b", 2, "FINISHED", "max_epochs", 0.70, parent),
            ("b", 6, "FAILED", "failed", 0.01, parent),           # newer, but not FINISHED
            ("c", 3, "FINISHED", "diverged", 0.05, parent),       # did not train to a result
            ("d", 4, "FINISHED", "early_stopped", 0.65, parent),
            ("e", 7, "FINISHED", "max_epochs", 0.10, other)]      # another sweep's
    ids = []
    for cell, start, status, outcome, loss, p in spec:
        run = client.create_run(exp, start_time=start, tags={
            "mlflow.parentRunId": p, "slnn.config_hash": cell, "slnn.outcome": outcome})
        client.log_batch(run.info.run_id, metrics=[Metric("val_loss", loss, 0, 0),
                                                   Metric("val_error", loss / 2, 0, 0)])
        client.set_terminated(run.info.run_id, status)
        ids.append(run.info.run_id)
    read = [r.info.run_id for r in iter_runs(client, [exp])]
    assert sorted(read) == sorted(ids + [parent, other])  # every run once, over 5 pages
    trained = {"max_epochs", "converged", "early_stopped"}
    newest = {}
    for run_id, (cell, start, status, outcome, loss, p) in zip(ids, spec):
        if p == parent and status == "FINISHED" and (cell not in newest or start > newest[cell][0]):
            newest[cell] = (start, outcome, loss, run_id)
    expected = min((loss, run_id) for _, outcome, loss, run_id in newest.values()
                   if outcome in trained)[1]
    assert expected == ids[5]  # d (0.65): a counts as 0.90, b as 0.70, c diverged, e is not ours
    best, got_parent = best_run(client, parent)
    assert (best.info.run_id, got_parent.info.run_id) == (expected, parent)


@pytest.mark.slow
def test_slnn_report_register_flag(sweep_store, slnn_train, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    uri, client, parent, runs, _ = sweep_store
    exe = Path(sys.executable).with_name("slnn-report")
    proc = subprocess.run([str(exe), "--parent-run", parent, "--tracking-uri", uri,
                           "--out", str(tmp_path / "rep"), "--register", "cli-model"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    mv = client.get_model_version_by_alias("cli-model", "best")
    assert mv.run_id == _expected_best(client, runs)
    assert f"registered run {mv.run_id} as cli-model" in proc.stdout
    assert (tmp_path / "rep" / "report.html").exists()
