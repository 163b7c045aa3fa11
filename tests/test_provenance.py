"""A faithful record (the UI's view of a run): provenance tags, full-resolution metric histories
whose Min/Max/Latest equal history.csv, the data set as the run's input, the network as a
LoggedModel, and resume that reruns cells when the code or the data changed. Everything is read
back through MLflow's client, as the UI reads it. Run with
`python -m pytest tests/test_provenance.py -q`."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import slnn
import slnn.app.run
from slnn.tracking.recorder import EPOCH_METRICS, thin

ROOT = Path(slnn.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_sqlite_store):
    root = tmp_path_factory.mktemp("prov")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        uri = new_sqlite_store(root)
        yield SimpleNamespace(root=root, uri=uri, client=MlflowClient(uri))


def _history(client, run_id, tmp: Path) -> dict[str, np.ndarray]:
    p = client.download_artifacts(run_id, "history.csv", str(tmp))
    rows = list(csv.DictReader(io.StringIO(Path(p).read_text())))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def single(compose, store, tmp_path_factory):
    cfg = compose("data=iris_petal", "train.epochs=120", "seed=5", "tracking.plot=false",
                  f"tracking.uri={store.uri}", "tracking.experiment=prov")
    result = slnn.app.run.run_one(cfg, quiet=True)
    run = store.client.get_run(result.run_id)
    hist = _history(store.client, result.run_id, tmp_path_factory.mktemp("hist"))
    return SimpleNamespace(run=run, hist=hist, result=result, cfg=cfg)


def test_source_tags_fill_the_ui_columns(single):
    tags = single.run.data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
    assert tags["mlflow.user"]
    assert tags["slnn.version"] == slnn.__version__
    # the code hash, computed here independently over the same files
    h = hashlib.sha256()
    files = sorted((ROOT / "slnn").rglob("*.py")) + sorted((ROOT / "hydra_plugins" / "slnn_sweeper").glob("*.py"))
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    assert tags["slnn.code_hash"] == h.hexdigest()[:16]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a checkout: the commit is MLflow's standard tag
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "slnn",
                                "hydra_plugins"], capture_output=True, text=True).stdout.strip()
        assert tags["slnn.dirty"] == str(bool(dirty)).lower()


def test_every_epoch_is_in_mlflow_and_min_max_latest_equal_history(single, store):
    hist, run_id = single.hist, single.run.info.run_id
    assert len(hist["epoch"]) == 121
    for name in EPOCH_METRICS:
        points = sorted(store.client.get_metric_history(run_id, f"curves/{name}"),
                        key=lambda m: m.step)
        values = hist[name]
        finite = np.isfinite(values)
        assert [m.step for m in points] == [int(e) for e in hist["epoch"][finite]], name
        got = np.array([m.value for m in points])
        assert got.min() == values[finite].min() and got.max() == values[finite].max(), name
        assert single.run.data.metrics[f"curves/{name}"] == values[finite][-1], name  # Latest


def test_thinning_keeps_first_last_min_and_max():
    rng = np.random.default_rng(0)
    values = rng.normal(size=5000)
    values[[17, 4321]] = [-50.0, 50.0]
    values[[3, 9]] = np.nan
    idx = thin(values, 300)
    assert len(idx) <= 300
    kept = values[idx]
    finite = np.flatnonzero(np.isfinite(values))
    assert idx[0] == finite[0] and idx[-1] == finite[-1]
    assert kept.min() == -50.0 and kept.max() == 50.0 and np.isfinite(kept).all()
    assert list(thin(values[:200], 300)) == [i for i in range(200) if i not in (3, 9)]


def test_the_data_set_is_the_runs_input(single):
    (ds_input,) = single.run.inputs.dataset_inputs
    ds = ds_input.dataset
    data = slnn.app.run.build_dataset(slnn.app.schema.to_config(single.cfg))
    assert ds.name == "iris_petal" and ds.digest == data.digest
    assert ds.digest == single.run.data.tags["slnn.data_digest"]
    import json

    profile = json.loads(ds.profile)
    assert (profile["train_rows"], profile["validation_rows"], profile["test_rows"]) == (75, 37, 38)
    assert {t.key: t.value for t in ds_input.tags}["mlflow.data.context"] == "training"


def test_params_hold_only_the_keys_of_the_runs_data_set(single):
    params = single.run.data.params
    assert params["data.name"] == "iris_petal" and "data.split" in params
    for key in ("data.gate", "data.n_samples", "data.path", "data.target", "data.separation"):
        assert key not in params, key


def test_the_network_is_a_logged_model_of_its_run(single, store):
    exp = store.client.get_experiment_by_name("prov")
    mlflow.set_tracking_uri(store.uri)
    try:
        models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
        (model,) = [m for m in models if m.source_run_id == single.run.info.run_id]
        assert model.model_id == single.run.data.tags["slnn.model_id"]
        assert model.status.name == "READY"
        net = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
    finally:
        mlflow.set_tracking_uri(None)
    data = slnn.app.run.build_dataset(slnn.app.schema.to_config(single.cfg))
    import pandas as pd

    frame = pd.DataFrame(data.raw(data.x_test), columns=list(data.feature_names))
    z = 1 / (1 + np.exp(-(np.column_stack([data.x_test, np.ones(data.n_test)]) @ single.result.W_final)))
    got = net.predict(frame)
    assert list(got["predicted"]) == [data.class_names[j] for j in z.argmax(1)]


# --- resume keyed on config, code and data (real sweeps as subprocesses) ---

START = re.compile(r"^slnn: sweep \S+: (?P<cells>\d+) cells: (?P<reused>\d+) reused, "
                   r"(?:(?P<code>\d+) rerun because the code changed, )?"
                   r"(?:(?P<data>\d+) rerun because the data changed, )?(?P<new>\d+) new; "
                   r"(?P<to_run>\d+) to run \(parent run (?P<parent>\w+)\)", re.M)


def _sweep(cwd: Path, *args: str, pythonpath: Path | None = None,
           tmpdir: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    if tmpdir:  # the sweep's own temporary folder: other tests run beside it (xdist)
        env["TMPDIR"] = str(tmpdir)
    proc = subprocess.run([sys.executable, "-m", "slnn", "-m", *args, "tracking.plot=false",
                           "sweep.report=false"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = START.search(proc.stdout)
    assert m, proc.stdout
    return {k: (int(v) if v and v.isdigit() else v or 0) for k, v in m.groupdict().items()}


def _finished(db: Path) -> list:
    c = MlflowClient(f"sqlite:///{db}")
    exp = c.get_experiment_by_name("slnn")
    return c.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=10000)


GRID = ("update=input,kronecker", "data=iris_petal", "train.epochs=2", "seed=range(2)")


@pytest.mark.slow
def test_changed_code_reruns_every_cell_and_the_first_line_says_so(tmp_path):
    first = _sweep(tmp_path, *GRID)
    assert (first["cells"], first["new"], first["reused"]) == (4, 4, 0)
    again = _sweep(tmp_path, *GRID)
    assert (again["reused"], again["new"], again["to_run"]) == (4, 0, 0)
    # the same package, one comment added: other code
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "slnn", copy / "slnn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "hydra_plugins", copy / "hydra_plugins",
                    ignore=shutil.ignore_patterns("__pycache__"))
    trainer = copy / "slnn" / "core" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\n# a fix\n")
    changed = _sweep(tmp_path, *GRID, pythonpath=copy)
    assert (changed["code"], changed["reused"], changed["to_run"]) == (4, 0, 4)
    assert changed["parent"] != first["parent"]
    runs = _finished(tmp_path / "mlflow.db")
    by_code = {}
    for r in runs:
        if "slnn.link_to" not in r.data.tags and "slnn.sweep" not in r.data.tags:
            by_code.setdefault(r.data.tags["slnn.code_hash"], []).append(r)
    assert sorted(len(v) for v in by_code.values()) == [4, 4]
    # asked explicitly, older code's runs are reused
    back = _sweep(tmp_path, *GRID, "sweep.reuse_other_code=true", pythonpath=copy)
    assert back["reused"] == 4 and back["to_run"] == 0


@pytest.mark.slow
def test_an_edited_csv_and_one_relative_path_in_two_folders_rerun(tmp_path):
    rng = np.random.default_rng(1)
    def write(folder: Path, shift: float):
        folder.mkdir(parents=True, exist_ok=True)
        rows = ["a,b,label"] + [f"{x + shift:.3f},{y:.3f},{int(x > 0)}"
                                 for x, y in rng.normal(size=(40, 2))]
        (folder / "data.csv").write_text("\n".join(rows) + "\n")
    store = tmp_path / "store.db"
    grid = ("data=csv", "data.path=data.csv", "data.target=label", "train.epochs=2",
            "seed=range(2)", f"tracking.uri=sqlite:///{store}")
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, 0.0)
    write(two, 0.5)
    a = _sweep(one, *grid)
    assert (a["new"], a["to_run"]) == (2, 2)
    b = _sweep(two, *grid)  # same text of the config, different file: nothing reused
    assert (b["data"], b["reused"], b["to_run"]) == (2, 0, 2) and b["parent"] != a["parent"]
    write(one, 1.0)  # edit the first file
    c = _sweep(one, *grid)
    assert (c["data"], c["reused"], c["to_run"]) == (2, 0, 2)
    runs = [r for r in _finished(store) if "slnn.sweep" not in r.data.tags]
    paths = {r.data.tags["slnn.data_source"] for r in runs}
    assert paths == {os.path.realpath(one / "data.csv"), os.path.realpath(two / "data.csv")}
    assert len({r.data.tags["slnn.data_digest"] for r in runs}) == 3


@pytest.mark.slow
def test_a_sweep_leaves_no_temporary_folder_and_its_parent_has_numbers(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    _sweep(tmp_path, "+experiment=guide_reproduction", "optim.lr=0.1", "seed=range(2)", tmpdir=tmp)
    left = set(tmp.iterdir())
    assert not {p for p in left if p.name.startswith("slnn")}, left
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("slnn")
    (parent,) = c.search_runs([exp.experiment_id], "tags.`slnn.sweep` = 'true'")
    m = parent.data.metrics
    assert (m["cells"], m["finished"] + m["shape_mismatch"]) == (8, 8)
    children = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    for rule in ("input", "kronecker"):
        best = min(r.data.metrics["final/val_error"] for r in children
                   if r.data.tags["slnn.update"] == rule and "final/val_error" in r.data.metrics)
        assert m[f"best_val_error.{rule}"] == best
    assert parent.data.tags["mlflow.note.content"].startswith("guide_reproduction: The guide's own setup")
    # the sweep's best run (by validation) carries the sweep's one logged model
    best = c.get_run(parent.data.tags["slnn.best_run"])
    models = c.search_logged_models([exp.experiment_id])
    assert [m.source_run_id for m in models] == [best.info.run_id]
