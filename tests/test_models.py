"""Trained networks are MLflow models: every finished run logs one, named
``<rule>-<activation>-<data>`` (a pyfunc "model from code", weights as ``.npy``, no pickle), loadable with ``mlflow.pyfunc.load_model`` and servable with
``mlflow models serve``. Run: ``python -m pytest tests/test_models.py`` (``-m 'not slow'`` leaves
out the serving test).

Real components only: runs go through ``slnn.app.run.run_one`` into one SQLite store in a temporary
folder (creating a store costs seconds of schema migration, so the module shares it), predictions
are held to a forward pass computed here from ``weights/final.npy``, and serving starts the venv's
``mlflow models serve`` on a free 127.0.0.1 port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

import slnn.app.cli
import slnn.app.run
import slnn.app.schema
from slnn.app.schema import to_config
from slnn.tracking.recorder import MODEL_METRICS
from servers import start_model_server, stop_process, tail

IRIS = ("data=iris", "model.activation=sigmoid", "train.epochs=20", "seed=1")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".joblib")


@contextmanager
def global_tracking_uri(uri: str):
    """``runs:/`` URIs resolve against MLflow's global tracking URI, and ``set_tracking_uri`` also
    exports it as ``MLFLOW_TRACKING_URI`` (which slnn reads before ``tracking.uri``): set both for
    the block, then put both back as they were."""
    from mlflow.tracking._tracking_service import utils

    saved, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)  # None unsets the variable too
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_sqlite_store):
    root = tmp_path_factory.mktemp("models_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        uri = new_sqlite_store(root)
        yield SimpleNamespace(root=root, uri=uri, client=MlflowClient(uri))


def _run(compose, store, tmp_path_factory, *overrides):
    """One real run through ``run_one``, its model loaded from ``runs:/`` and its artifacts
    (``model/``, ``weights/final.npy``) downloaded."""
    cfg = compose(*overrides, f"tracking.uri={store.uri}")
    result = slnn.app.run.run_one(cfg, quiet=True)
    run = store.client.get_run(result.run_id)
    r = SimpleNamespace(cfg=cfg, result=result, run_id=result.run_id, run=run,
                        data=slnn.app.run.build_dataset(to_config(cfg)))
    r.artifacts = {f.path for f in store.client.list_artifacts(r.run_id)}
    r.model_id = run.data.tags.get("slnn.model_id")  # the run's LoggedModel
    if r.model_id:
        dst = tmp_path_factory.mktemp("model_artifacts")
        with global_tracking_uri(store.uri):  # models:/ URIs resolve through the global store
            r.model_dir = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{r.model_id}", dst_path=str(dst)))
        r.W = np.load(mlflow.artifacts.download_artifacts(
            run_id=r.run_id, artifact_path="weights/final.npy", dst_path=str(dst),
            tracking_uri=store.uri), allow_pickle=False)
        with global_tracking_uri(store.uri):
            r.model_name = store.client.get_logged_model(r.model_id).name
            r.model = mlflow.pyfunc.load_model(f"runs:/{r.run_id}/{r.model_name}")
    return r


def _raw_frame(data, x_prepared: np.ndarray) -> pd.DataFrame:
    """What a user sends: one column per feature, in raw units."""
    return pd.DataFrame(data.raw(x_prepared), columns=list(data.feature_names))


def _sigmoid_forward(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``z = sigmoid([x, 1] @ W)``, written here, not slnn's."""
    x1 = np.column_stack([x, np.ones(len(x))])  # (n, d + 1)
    return 1.0 / (1.0 + np.exp(-(x1 @ W)))      # (n, d + 1) @ (d + 1, k) -> (n, k)


def _mlmodel(model_dir: Path) -> dict:
    return yaml.safe_load((model_dir / "MLmodel").read_text())


@pytest.fixture(scope="module")
def iris_run(compose, store, tmp_path_factory):
    r = _run(compose, store, tmp_path_factory, *IRIS)
    assert r.result.outcome == "max_epochs" and r.model_id
    return r


# --- the model of one run ---

def test_predict_gives_a_distribution_and_the_argmax_of_an_independent_forward_pass(iris_run):
    r, data = iris_run, iris_run.data
    out = r.model.predict(_raw_frame(data, data.x_test))
    classes = list(data.class_names)
    assert list(out.columns) == [f"p_{c}" for c in classes] + ["predicted"]
    assert len(out) == data.n_test
    p = out[[f"p_{c}" for c in classes]].to_numpy()
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    z = _sigmoid_forward(r.W, data.x_test)
    # sigmoid outputs are positive: the distribution is z normalized per row
    np.testing.assert_allclose(p, z / z.sum(axis=1, keepdims=True), rtol=1e-9, atol=1e-12)
    assert list(out["predicted"]) == [classes[j] for j in z.argmax(axis=1)]
    assert out["predicted"].nunique() > 1  # a trained iris model does not answer one class


def test_accuracy_of_predicted_on_the_test_split_is_one_minus_test_error(iris_run):
    r, data = iris_run, iris_run.data
    predicted = r.model.predict(_raw_frame(data, data.x_test))["predicted"].to_numpy()
    truth = np.asarray(data.class_names)[data.t_test.argmax(axis=1)]
    accuracy = float(np.mean(predicted == truth))
    assert accuracy == pytest.approx(1.0 - r.run.data.metrics["final/test_error"], abs=1e-12)
    assert accuracy > 0.5  # 20 epochs of sigmoid on iris learn something; chance is 1/3


def test_signature_names_the_raw_features_and_an_input_example_is_logged(iris_run):
    r, data = iris_run, iris_run.data
    sig = r.model.metadata.signature
    assert sig is not None
    assert sig.inputs.input_names() == list(data.feature_names)
    assert sig.outputs.input_names() == [f"p_{c}" for c in data.class_names] + ["predicted"]
    example = r.model.metadata.load_input_example(str(r.model_dir))
    assert isinstance(example, pd.DataFrame)
    assert list(example.columns) == list(data.feature_names)
    assert 1 <= len(example) <= 5
    # raw units (what a user sends), not the standardized features the network sees
    np.testing.assert_allclose(example.to_numpy(), data.raw(data.x_test[:len(example)]))
    assert (example.to_numpy().mean(axis=0) > 1.0).all()  # iris in cm; standardized would be ~0
    assert list(r.model.predict(example).columns)[-1] == "predicted"


def test_weights_are_npy_equal_to_final_and_no_file_is_a_pickle(iris_run):
    r = iris_run
    w = np.load(r.model_dir / "artifacts" / "weights.npy", allow_pickle=False)
    assert w.dtype == np.float64 and w.shape == (len(r.data.feature_names) + 1,
                                                 len(r.data.class_names))
    np.testing.assert_array_equal(w, r.W)
    files = [p for p in r.model_dir.rglob("*") if p.is_file()]
    assert files
    assert not [p.name for p in files if p.name.endswith(PICKLE_SUFFIXES)]
    # a pickle of protocol 2+ starts with 0x80 and the protocol number
    assert not [p.name for p in files if p.read_bytes()[:1] == b"\x80"]
    pyfunc = _mlmodel(r.model_dir)["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert "python_model" not in pyfunc  # a cloudpickled PythonModel would be named here
    assert (r.model_dir / Path(pyfunc["model_code_path"]).name).is_file()
    meta = json.loads((r.model_dir / "artifacts" / "meta.json").read_text())
    assert meta["feature_names"] == list(r.data.feature_names)
    assert meta["activation"] == "sigmoid"


def test_the_logged_model_says_what_it_is_and_is_on_its_runs_page(iris_run, store):
    """Named rule-activation-data, with the run's params, its final and best figures linked to
    the model and the run's data set, and the run's output ("Logged models" on its page)."""
    r = iris_run
    lm = store.client.get_logged_model(r.model_id)
    assert lm.name == r.model_name == "input-sigmoid-iris"
    assert (lm.source_run_id, str(lm.status)) == (r.run_id, "READY")
    assert lm.params == r.run.data.params
    got = {m.key: (m.value, m.dataset_name, m.dataset_digest) for m in lm.metrics}
    want = {k: (v, "iris", r.run.data.tags["slnn.data_digest"])
            for k, v in r.run.data.metrics.items() if k.startswith(MODEL_METRICS)}
    assert got == want and "final/test_error" in got
    assert [(m.model_id, m.step) for m in r.run.outputs.model_outputs] == [
        (r.model_id, r.run.data.metrics["final/epoch"])]
    assert "slnn.best_of_sweep" not in lm.tags  # a single run is nobody's best


def test_model_names_never_hold_a_character_mlflow_refuses():
    from slnn.tracking.model import model_name

    assert model_name("input", "sigmoid", "iris_petal") == "input-sigmoid-iris_petal"
    assert model_name("custom", "tanh", "my.data:v1/2") == "custom-tanh-my_data_v1_2"


def test_two_runs_in_one_process_give_two_models_each_with_its_own_weights(
        compose, store, tmp_path_factory, iris_run):
    # the same data set and activation: the second model is a re-stamped copy of the first one
    # written by this process; another split (data.seed) gives it other preprocessing as well
    second = _run(compose, store, tmp_path_factory, *IRIS[:-1], "seed=2", "data.seed=2")
    first = iris_run
    assert second.run_id != first.run_id
    m1, m2 = _mlmodel(first.model_dir), _mlmodel(second.model_dir)
    assert m1["model_uuid"] != m2["model_uuid"]
    assert first.model.metadata.model_uuid != second.model.metadata.model_uuid
    w2 = np.load(second.model_dir / "artifacts" / "weights.npy", allow_pickle=False)
    np.testing.assert_array_equal(w2, second.W)
    assert not np.allclose(second.W, first.W)
    assert not np.allclose(second.data.x_test, first.data.x_test[:len(second.data.x_test)])
    # it predicts with ITS weights and preprocessing, on its own test split
    data = second.data
    out = second.model.predict(_raw_frame(data, data.x_test))
    z = _sigmoid_forward(second.W, data.x_test)
    p = out[[f"p_{c}" for c in data.class_names]].to_numpy()
    np.testing.assert_allclose(p, z / z.sum(axis=1, keepdims=True), rtol=1e-9, atol=1e-12)
    assert list(out["predicted"]) == [data.class_names[j] for j in z.argmax(axis=1)]
    truth = np.asarray(data.class_names)[data.t_test.argmax(axis=1)]
    assert np.mean(out["predicted"].to_numpy() == truth) == pytest.approx(
        1.0 - second.run.data.metrics["final/test_error"], abs=1e-12)
    # and the two models answer differently on the same rows
    same_rows = _raw_frame(first.data, first.data.x_test)
    assert not np.allclose(first.model.predict(same_rows).iloc[:, :-1].to_numpy(),
                           second.model.predict(same_rows).iloc[:, :-1].to_numpy())


@pytest.mark.parametrize("overrides, outcome, reason", [
    pytest.param(("data=iris", "update=kronecker"), "shape_mismatch", "(3, 3)", id="shape_mismatch"),
    pytest.param(("data=iris_petal", "model.activation=linear", "optim.lr=1e30"), "diverged",
                 "non-finite", id="diverged-nonfinite-weights"),
    pytest.param(("data=iris_petal", "model.activation=linear", "optim.lr=10"), "diverged",
                 "exceeded", id="diverged-loss-over-threshold"),
])
def test_shape_mismatch_and_diverged_runs_log_no_model(compose, store, tmp_path_factory,
                                                       overrides, outcome, reason):
    r = _run(compose, store, tmp_path_factory, *overrides, "train.epochs=3",
             "train.backend=numpy", "tracking.plot=false")
    assert r.result.outcome == outcome
    assert reason in r.run.data.tags["slnn.reason"]
    assert r.run.info.status == "FINISHED"
    assert "weights" in r.artifacts  # the run did log its files...
    assert "slnn.model_id" not in r.run.data.tags  # ...but no model
    exp = store.client.get_run(r.run_id).info.experiment_id
    assert r.run_id not in {m.source_run_id for m in store.client.search_logged_models([exp])}


# --- serving ---

def _invoke(server, frame: pd.DataFrame) -> pd.DataFrame:
    """POST ``frame`` to a served model's ``/invocations``; its predictions as a frame. The
    server is stopped afterwards, whatever happens."""
    try:
        body = json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                               "data": frame.to_numpy().tolist()}}).encode()
        req = urllib.request.Request(server.url + "/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
            return pd.DataFrame(json.loads(resp.read())["predictions"])
    finally:
        stop_process(server.proc)


@pytest.mark.slow
def test_the_model_serves_from_a_fresh_venv_without_slnn(iris_run, tmp_path):
    """What a user who has only the model does: a new venv with the model's own requirements
    (numpy, pandas, mlflow; no slnn, which no index serves), then mlflow models serve."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    reqs = (iris_run.model_dir / "requirements.txt").read_text()
    assert "slnn" not in reqs
    # --no-compile: byte-compiling every module of MLflow's dependencies takes longer than the
    # install; the modules the server imports are compiled as it imports them
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", "-r",
                          str(iris_run.model_dir / "requirements.txt")],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import slnn"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode != 0  # the premise: this venv has no slnn
    data = iris_run.data
    frame = _raw_frame(data, data.x_test[:7])
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    server = start_model_server(str(iris_run.model_dir), tmp_path / "serve.log", env=clean_env,
                                cwd=tmp_path, venv_bin=venv / "bin")
    served = _invoke(server, frame)
    local = iris_run.model.predict(frame)
    assert list(served["predicted"]) == list(local["predicted"]), tail(server.log)
    np.testing.assert_allclose(served.iloc[:, :-1].to_numpy(dtype=float),
                               local.iloc[:, :-1].to_numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_mlflow_models_serve_answers_as_the_in_process_model(iris_run, store, tmp_path):
    data = iris_run.data
    rows = data.x_test[:6]
    frame = _raw_frame(data, rows)
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri}
    server = start_model_server(f"runs:/{iris_run.run_id}/{iris_run.model_name}", tmp_path / "serve.log",
                                env=env, cwd=tmp_path)
    served = _invoke(server, frame)
    local = iris_run.model.predict(frame)
    assert list(served.columns) == list(local.columns), tail(server.log)
    assert len(served) == len(rows)
    np.testing.assert_allclose(served.iloc[:, :-1].to_numpy(dtype=float),
                               local.iloc[:, :-1].to_numpy(), rtol=1e-9, atol=1e-12)
    assert list(served["predicted"]) == list(local["predicted"])
    assert server.proc.poll() is not None  # stopped


# --- the model template cache ---

def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_model_from_the_disk_cache_is_the_one_mlflow_saves_with_its_own_identity(
        tmp_path, monkeypatch):
    """A new process (the in-memory templates emptied) writes its model from the template
    another process left in the cache, without calling MLflow's save; the files are those of a
    model MLflow saves for the same weights, but for the identity. Another split of the same data
    (another input example) gets its own template."""
    from slnn.core.data import load_dataset
    from slnn.tracking import model as m

    monkeypatch.setenv("SLNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(m, "_templates", {})
    data = load_dataset("iris", seed=1)
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    m.write_model(tmp_path / "first", W1, "sigmoid", data, model_id="m-1", run_id="r1")
    [entry] = [p for p in (tmp_path / "cache" / "models").iterdir()]
    assert not entry.name.startswith(".") and (entry / "MLmodel").is_file()

    direct = tmp_path / "direct"  # MLflow's own save of the second weights, for comparison
    m._save_with_mlflow(direct, W2, "sigmoid", data)
    monkeypatch.setattr(m, "_templates", {})  # a new process

    def no_save(*a, **k):
        raise AssertionError("saved with MLflow although the cache holds the template")

    monkeypatch.setattr(m, "_save_with_mlflow", no_save)
    m.write_model(tmp_path / "second", W2, "sigmoid", data, model_id="m-2", run_id="r2")
    got, want = _files(tmp_path / "second"), _files(direct)
    assert set(got) == set(want)
    for rel in set(want) - {"MLmodel"}:
        assert got[rel] == want[rel], rel
    mine, theirs = _mlmodel(tmp_path / "second"), _mlmodel(direct)
    for field in ("signature", "saved_input_example_info", "mlflow_version", "model_size_bytes"):
        assert mine[field] == theirs[field], field
    assert mine["model_id"] == "m-2" and mine["run_id"] == "r2"
    assert mine["model_uuid"] != _mlmodel(tmp_path / "first")["model_uuid"]
    np.testing.assert_array_equal(np.load(tmp_path / "second" / "artifacts" / "weights.npy"), W2)

    # another split: another input example, so MLflow saves again and a second template is kept
    monkeypatch.undo()
    monkeypatch.setenv("SLNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(m, "_templates", {})
    other = load_dataset("iris", seed=2)
    m.write_model(tmp_path / "third", W1, "sigmoid", other)
    entries = sorted(p.name for p in (tmp_path / "cache" / "models").iterdir())
    assert len(entries) == 2 and not any(e.startswith(".") for e in entries)
    assert (_files(tmp_path / "third")["input_example.json"]
            != _files(tmp_path / "first")["input_example.json"])
    example = json.loads(_files(tmp_path / "third")["input_example.json"])
    np.testing.assert_allclose(example["data"], other.raw(other.x_test[:5]), rtol=1e-15)


def test_what_mlflow_would_save_differently_gets_its_own_template(tmp_path, monkeypatch):
    """Inputs MLflow's save depends on beyond the data set's names: the example's exact values
    (standardized or not: equal to 15 decimals, not in their last bits), the preprocessing
    (another size of meta.json: ``model_size_bytes``), and a uv project in the working
    directory, whose files MLflow copies into the model. Each model equals MLflow's own save."""
    from slnn.core.data import load_dataset
    from slnn.tracking import model as m

    monkeypatch.setenv("SLNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(m, "_templates", {})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    W = np.random.default_rng(1).normal(size=(5, 3))
    cases = {"standardized": load_dataset("iris", seed=1),
             "raw": load_dataset("iris", seed=1, standardize=False)}

    def check(label, data):
        m.write_model(tmp_path / label, W, "sigmoid", data)
        direct = tmp_path / f"{label}-direct"
        m._save_with_mlflow(direct, W, "sigmoid", data)
        got, want = _files(tmp_path / label), _files(direct)
        assert set(got) == set(want), label
        assert all(got[k] == want[k] for k in want if k != "MLmodel"), label
        assert (_mlmodel(tmp_path / label)["model_size_bytes"]
                == _mlmodel(direct)["model_size_bytes"]), label
        return got

    for label, data in cases.items():
        check(label, data)
    (work / "pyproject.toml").write_text("[project]\nname = 'mine'\nversion = '1'\n")
    (work / "uv.lock").write_text("version = 1\n")
    got = check("uv", cases["raw"])
    assert got["uv.lock"] == b"version = 1\n" and "pyproject.toml" in got
    (work / "uv.lock").write_text("version = 1\nrevision = 2\n")  # the lock changes: saved afresh
    assert check("uv2", cases["raw"])["uv.lock"].endswith(b"revision = 2\n")
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 4


def test_a_cache_that_cannot_be_written_or_holds_a_broken_entry_still_gives_the_model(
        tmp_path, monkeypatch):
    from slnn.core.data import load_dataset
    from slnn.tracking import model as m

    data = load_dataset("iris", seed=1)
    W = np.ones((5, 3))
    blocker = tmp_path / "a-file"  # the cache's folder cannot be made under a file
    blocker.write_text("")
    monkeypatch.setenv("SLNN_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(m, "_templates", {})
    m.write_model(tmp_path / "a", W, "sigmoid", data)
    assert (tmp_path / "a" / "MLmodel").is_file()

    # an entry a crash or a full disk damaged (an emptied file, a broken MLmodel, a lost file):
    # saved afresh, the same files, and the entry replaced, so the next process reads it
    monkeypatch.setenv("SLNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(m, "_templates", {})
    m.write_model(tmp_path / "b", W, "sigmoid", data)
    [entry] = (tmp_path / "cache" / "models").iterdir()
    saved = m._save_with_mlflow
    for i, damage in enumerate([lambda e: (e / "conda.yaml").write_text(""),
                                lambda e: (e / "MLmodel").write_text("{not yaml: ["),
                                lambda e: (e / "requirements.txt").unlink()]):
        damage(entry)
        calls = []
        monkeypatch.setattr(m, "_save_with_mlflow", lambda *a, **k: (calls.append(1), saved(*a, **k)))
        monkeypatch.setattr(m, "_templates", {})
        m.write_model(tmp_path / f"c{i}", W, "sigmoid", data)
        assert calls == [1], i  # saved by MLflow again
        b, c = _files(tmp_path / "b"), _files(tmp_path / f"c{i}")
        assert set(b) == set(c) and all(b[k] == c[k] for k in b if k != "MLmodel"), i
        monkeypatch.setattr(m, "_templates", {})
        calls.clear()
        m.write_model(tmp_path / f"d{i}", W, "sigmoid", data)
        assert calls == [], i  # the replaced entry is read
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == [entry.name]
