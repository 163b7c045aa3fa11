"""Tests for slnn.tracking and slnn.app.run.run_one against a real MLflow SQLite store in a temporary
folder: run with `python -m pytest tests/test_tracking.py -q`.

Creating an MLflow SQLite store costs several seconds (its schema migrations), so the module shares
one store; each test that needs its own runs writes them to its own experiment. Runs use sigmoid
with the input rule on iris_petal wherever they can, so Numba compiles that pair once.
"""

import csv
import io
import json
import math
import re
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

import slnn.app.cli
import slnn.app.run
import slnn.app.schema
import slnn.tracking.recorder
from slnn.app.schema import config_hash, to_config
from slnn.tracking.recorder import CURVES, EPOCH_METRICS, metric_entities
from slnn.tracking.store import resolve_uri
from slnn.core.trainer import HISTORY_COLUMNS, TrainResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# every epoch goes to MLflow here (31 points, more than the default thinning keeps)
MAIN = ("data=iris_petal", "model.activation=sigmoid", "optim.lr=0.5", "train.epochs=30", "seed=3",
        "train.snapshots=3", "tracking.max_metric_points=100")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module; the working directory is its folder while the module runs,
    because MLflow puts a new experiment's artifacts under ./mlruns."""
    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        uri = f"sqlite:///{root}/mlflow.db"
        yield SimpleNamespace(root=root, uri=uri, client=MlflowClient(uri))


def _run(compose, store, *overrides, experiment="test"):
    cfg = compose(*overrides, f"tracking.uri={store.uri}", f"tracking.experiment={experiment}")
    start = time.perf_counter()
    result = slnn.app.run.run_one(cfg, quiet=True)
    wall = time.perf_counter() - start
    return SimpleNamespace(cfg=cfg, result=result, run_id=result.run_id, wall=wall,
                           run=store.client.get_run(result.run_id))


def _download(store, run_id, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="",
                                                    dst_path=str(dst), tracking_uri=store.uri))


def _history(path: Path) -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def _metric(store, run_id, name) -> tuple[list[int], list[float]]:
    """A metric's (steps, values); a curve's by its history column (``val_loss`` ->
    ``curves/val_loss``)."""
    key = CURVES + name if name in EPOCH_METRICS else name
    points = sorted(store.client.get_metric_history(run_id, key), key=lambda m: m.step)
    return [m.step for m in points], [m.value for m in points]


def _runs(store, experiment):
    exp = store.client.get_experiment_by_name(experiment)
    return store.client.search_runs([exp.experiment_id]) if exp else []


def _flatten(d, prefix=""):
    """Dotted keys, lists as JSON and other leaves as str: the params contract, built here."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else str(v)
    return out


def _sigmoid_loss_error(W, x, t):
    """mean((t - sigmoid([x, 1] @ W))^2) and the misclassified fraction, computed here."""
    z = 1.0 / (1.0 + np.exp(-(np.column_stack([x, np.ones(len(x))]) @ W)))
    return np.mean((t - z) ** 2), np.mean(z.argmax(1) != t.argmax(1))


@pytest.fixture(scope="module")
def main_run(compose, store, tmp_path_factory):
    r = _run(compose, store, *MAIN)
    r.art = _download(store, r.run_id, tmp_path_factory.mktemp("main_artifacts"))
    r.data = slnn.app.run.build_dataset(to_config(r.cfg))
    r.hist = _history(r.art / "history.csv")
    return r


# --- one real run, read back from the store ---

def test_run_is_finished_with_its_name_and_tags(main_run):
    run = main_run.run
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "input-sigmoid-lr0.5-s3-iris_petal"
    tags = run.data.tags
    assert tags["slnn.update"] == "input"
    assert tags["slnn.activation"] == "sigmoid"
    assert tags["slnn.data"] == "iris_petal"
    assert tags["slnn.outcome"] == "max_epochs"  # no patience, no target: it runs every epoch
    assert "30" in tags["slnn.reason"]
    assert tags["slnn.config_hash"] == config_hash(main_run.cfg)


def test_params_are_the_resolved_config_with_dotted_keys(main_run):
    params = main_run.run.data.params
    full = OmegaConf.to_container(main_run.cfg, resolve=True)
    expected = _flatten({k: v for k, v in full.items() if k not in ("tracking", "sweep")})
    # iris_petal's loader takes no options: only the data keys every data set uses are shown
    ignored = ("gate", "n_classes", "n_features", "n_samples", "separation", "path", "target")
    expected = {k: v for k, v in expected.items() if k not in {f"data.{x}" for x in ignored}}
    # a built-in rule has no update.fn (only update=custom names a file): no param for it
    assert full["update"]["fn"] is None and expected.pop("update.fn") == "None"
    assert {k: v for k, v in params.items() if not k.startswith("tracking.")} == expected
    # of where the run is recorded, only whether it plots is a param; nothing of sweep
    assert {k for k in params if k.startswith("tracking.")} == {"tracking.plot"}
    # null (the default) comes to true for a single run: the param says what the run did
    assert full["tracking"]["plot"] is None and params["tracking.plot"] == "True"
    assert not any(k.startswith("sweep.") for k in params)
    assert params["optim.lr"] == "0.5" and params["seed"] == "3"
    assert params["model.activation"] == "sigmoid" and params["data.name"] == "iris_petal"
    assert json.loads(params["data.split"]) == full["data"]["split"]


def test_history_csv_has_every_epoch(main_run):
    h, n_train = main_run.hist, main_run.data.n_train
    assert (main_run.art / "history.csv").read_text().splitlines()[0] == ",".join(HISTORY_COLUMNS)
    np.testing.assert_array_equal(h["epoch"], np.arange(31))
    np.testing.assert_array_equal(h["step"], np.arange(31) * n_train)  # batch 1: one pass per epoch


@pytest.mark.parametrize("name", [m for m in EPOCH_METRICS if m != "grad_cosine"])
def test_epoch_metric_has_steps_0_to_epochs_equal_to_history_csv(main_run, store, name):
    steps, values = _metric(store, main_run.run_id, name)
    assert steps == list(range(31))
    assert values == list(main_run.hist[name])


def test_grad_cosine_is_absent_at_epoch_0_and_one_for_the_gradient_rule(main_run, store):
    steps, values = _metric(store, main_run.run_id, "grad_cosine")
    assert steps == list(range(1, 31))  # no update yet at epoch 0: nan, so not logged
    assert math.isnan(main_run.hist["grad_cosine"][0])
    assert values == list(main_run.hist["grad_cosine"][1:])
    # the input rule's step is the negative gradient itself: every cosine is 1
    np.testing.assert_allclose(values, 1.0, rtol=0, atol=1e-12)


def _split(data, name):
    return getattr(data, f"x_{name}"), getattr(data, f"t_{name}")


@pytest.mark.parametrize("which, epoch", [("initial", 0), ("final", 30)])
def test_logged_losses_match_an_independent_evaluation_of_the_weights(main_run, store, which, epoch):
    W = np.load(main_run.art / "weights" / f"{which}.npy", allow_pickle=False)
    for split in ("train", "val", "test"):
        loss, error = _sigmoid_loss_error(W, *_split(main_run.data, split))
        assert main_run.hist[f"{split}_loss"][epoch] == pytest.approx(loss, rel=1e-12)
        assert main_run.hist[f"{split}_error"][epoch] == pytest.approx(error, abs=1e-15)
    steps, values = _metric(store, main_run.run_id, "val_loss")
    assert steps[epoch] == epoch
    assert values[epoch] == pytest.approx(_sigmoid_loss_error(W, *_split(main_run.data, "val"))[0],
                                          rel=1e-12)
    assert main_run.hist["weight_norm"][epoch] == pytest.approx(np.linalg.norm(W), rel=1e-12)


def test_training_lowered_the_loss(main_run):
    h = main_run.hist
    assert h["train_loss"][-1] < h["train_loss"][0] and h["val_loss"][-1] < h["val_loss"][0]


def test_final_metrics(main_run, store):
    m = main_run.run.data.metrics
    loss, error = _sigmoid_loss_error(np.load(main_run.art / "weights" / "final.npy"),
                                      *_split(main_run.data, "test"))
    assert m["final/test_loss"] == pytest.approx(loss, rel=1e-12)
    assert m["final/test_error"] == pytest.approx(error, abs=1e-15)
    assert m["final/epochs_run"] == 30
    assert m["final/steps_run"] == 30 * main_run.data.n_train
    assert 0 < m["final/train_seconds"] < main_run.wall
    assert m["final/epoch"] == 30
    for name in ("val_loss", "val_error", "train_loss", "train_error"):  # the last epoch's
        assert m[f"final/{name}"] == main_run.hist[name][-1], name
    summaries = [k for k in m if not k.startswith(CURVES)]
    for name in summaries:  # each logged once, at step 0: a bar, not a line, in the UI
        assert _metric(store, main_run.run_id, name)[0] == [0], name
    # every metric has a prefix (MLflow's chart view puts unprefixed ones last), and the curves'
    # sorts first: the run page's first section is the curves
    sections = sorted({k.split("/")[0] for k in m})
    assert "/" not in "".join(k.split("/", 1)[1] for k in m) and sections[0] + "/" == CURVES
    assert sections == ["curves", "final", "max", "min"]
    assert sorted(k for k in m if k.startswith(CURVES)) == sorted(CURVES + c for c in EPOCH_METRICS)
    # constants are tags, exact
    tags = main_run.run.data.tags
    assert tags["slnn.n_classes"] == "3"
    majority = main_run.data.t_train.sum(axis=0).argmax()  # what a predictor could know
    assert float(tags["slnn.chance_error"]) == pytest.approx(
        1 - main_run.data.t_test[:, majority].mean(), abs=1e-12)
    assert "slnn.final_from" not in tags  # only a diverged run says it


def test_min_its_epoch_and_max_are_those_of_the_whole_history(main_run):
    m, h = main_run.run.data.metrics, main_run.hist
    for name in EPOCH_METRICS:
        finite = np.isfinite(h[name])
        i = int(np.flatnonzero(h[name] == h[name][finite].min())[0])  # the first lowest epoch
        assert (m[f"min/{name}"], m[f"min/{name}_epoch"]) == (h[name][i], h["epoch"][i]), name
        assert m[f"max/{name}"] == h[name][finite].max(), name


def test_weights_artifacts_are_float64_of_the_network_shape(main_run):
    shape = (main_run.data.n_features + 1, main_run.data.n_classes)
    assert shape == (3, 3)
    for which in ("initial", "final"):
        W = np.load(main_run.art / "weights" / f"{which}.npy", allow_pickle=False)
        assert W.dtype == np.float64 and W.shape == shape
    W0 = np.load(main_run.art / "weights" / "initial.npy", allow_pickle=False)
    assert np.all(np.abs(W0) <= 0.5)  # model.init_scale
    # the run's seed draws W first: uniform in [-init_scale, init_scale]
    np.testing.assert_array_equal(W0, np.random.default_rng(3).uniform(-0.5, 0.5, size=shape))


def test_snapshots_are_the_weights_at_their_epoch(main_run):
    assert sorted(p.name for p in (main_run.art / "weights").iterdir()) == [
        "final.npy", "initial.npy", "snapshots.npz"]
    with np.load(main_run.art / "weights" / "snapshots.npz", allow_pickle=False) as npz:
        snaps = {name: npz[name] for name in npz.files}
    assert len(snaps) == 3  # train.snapshots=3
    epochs = sorted(int(re.fullmatch(r"epoch_(\d{5})", name).group(1)) for name in snaps)
    assert len(set(epochs)) == 3 and all(0 < e < 30 for e in epochs)
    for epoch in epochs:
        W = snaps[f"epoch_{epoch:05d}"]
        assert W.dtype == np.float64 and W.shape == (3, 3)
        assert main_run.hist["weight_norm"][epoch] == pytest.approx(np.linalg.norm(W), rel=1e-12)
        loss, _ = _sigmoid_loss_error(W, *_split(main_run.data, "val"))
        assert main_run.hist["val_loss"][epoch] == pytest.approx(loss, rel=1e-12)


def test_config_yaml_is_the_resolved_config(main_run):
    logged = yaml.safe_load((main_run.art / "config.yaml").read_text())
    assert logged == OmegaConf.to_container(main_run.cfg, resolve=True)
    assert logged["optim"]["lr"] == 0.5 and logged["tracking"]["uri"].startswith("sqlite:///")


def test_learning_curves_png(main_run):
    png = (main_run.art / "learning_curves.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 5_000


# --- thinning, and no plot ---

def test_metrics_are_thinned_but_history_csv_keeps_every_epoch(compose, store, tmp_path):
    r = _run(compose, store, "data=iris_petal", "train.epochs=50", "tracking.max_metric_points=10",
             "tracking.plot=false", experiment="thin")
    art = _download(store, r.run_id, tmp_path / "art")
    hist = _history(art / "history.csv")
    assert len(hist["epoch"]) == 51
    for name in EPOCH_METRICS:
        steps, values = _metric(store, r.run_id, name)
        finite = np.isfinite(hist[name])
        assert len(steps) <= 10 and steps == sorted(set(steps)), name
        assert steps[0] == (1 if name == "grad_cosine" else 0) and steps[-1] == 50, name
        assert values == [hist[name][s] for s in steps], name
        # the UI's Min and Max are those of the whole history, not of the thinned points
        assert min(values) == hist[name][finite].min() and max(values) == hist[name][finite].max()
    assert r.run.data.metrics["curves/val_loss"] == hist["val_loss"][-1]  # latest: the last epoch
    # the summaries hold the exact extremes and the best epoch of all 51, not of the 10 points
    m = r.run.data.metrics
    i = int(np.argmin(hist["val_loss"]))
    assert (m["min/val_loss"], m["min/val_loss_epoch"]) == (hist["val_loss"][i], hist["epoch"][i])
    assert m["min/train_error"] == hist["train_error"].min()
    # tracking.plot=false: no PNG, everything else still there
    assert not (art / "learning_curves.png").exists()
    assert (art / "config.yaml").exists() and (art / "weights" / "final.npy").exists()
    assert r.run.data.params["tracking.plot"] == "False"


def _fake_result(n_epochs: int, *, with_val: bool = True) -> TrainResult:
    """A result whose history value encodes (column, epoch), so every logged point is checkable."""
    e = np.arange(n_epochs + 1, dtype=np.float64)
    h = {c: i * 1000.0 + e for i, c in enumerate(HISTORY_COLUMNS)}
    h["epoch"], h["step"] = e, e * 7
    h["grad_cosine"] = h["grad_cosine"].copy()
    h["grad_cosine"][0] = np.nan  # no update yet at epoch 0
    if not with_val:
        h["val_loss"] = np.full(n_epochs + 1, np.nan)
        h["val_error"] = np.full(n_epochs + 1, np.nan)
    W = np.zeros((3, 3))
    return TrainResult("max_epochs", "ran", W, W, h, epochs_run=n_epochs, steps_run=7 * n_epochs,
                       train_seconds=1.5)


@pytest.mark.parametrize("max_points", [
    4, 5, 10, 51, 200,
])
def test_metric_entities_thin_keeping_first_and_last_epoch(max_points):
    # (the config asks for >= 4 points: the first, the last, the minimum and the maximum)
    res = _fake_result(50)
    by_name = {}
    for m in metric_entities(res, max_points, timestamp_ms=123):
        by_name.setdefault(m.key, []).append(m)
    for name in EPOCH_METRICS:
        points = by_name[CURVES + name]
        steps = [m.step for m in points]
        col = HISTORY_COLUMNS.index(name)
        assert all(m.value == col * 1000.0 + m.step for m in points), name
        assert steps == sorted(set(steps)) and len(steps) <= max_points
        assert steps[-1] == 50, name
        # each metric is thinned over its own finite epochs: grad_cosine starts at epoch 1
        assert steps[0] == (1 if name == "grad_cosine" else 0), name
    assert len(by_name["curves/val_loss"]) == min(max_points, 51)
    col = {c: HISTORY_COLUMNS.index(c) * 1000.0 for c in HISTORY_COLUMNS}
    expected = {f"final/{c}": [(col[c] + 50, 0)] for c in
                ("test_error", "test_loss", "val_error", "val_loss", "train_error", "train_loss")}
    expected.update({"final/epochs_run": [(50.0, 0)], "final/steps_run": [(350.0, 0)],
                     "final/train_seconds": [(1.5, 0)], "final/epoch": [(50.0, 0)]})
    for c in EPOCH_METRICS:  # values rise with the epoch; grad_cosine has no epoch 0
        first = float(c == "grad_cosine")
        expected.update({f"min/{c}": [(col[c] + first, 0)], f"min/{c}_epoch": [(first, 0)],
                         f"max/{c}": [(col[c] + 50, 0)]})
    assert {k: [(m.value, m.step) for m in v] for k, v in by_name.items()
            if not k.startswith(CURVES)} == expected
    # no chance_error or n_classes anywhere: they are tags, and this result knows neither
    assert slnn.tracking.recorder.constant_tags(res) == {}


def test_metric_entities_leave_out_nan():
    res = _fake_result(5, with_val=False)
    keys = {m.key for m in metric_entities(res, 200, timestamp_ms=0)}
    assert "curves/val_loss" not in keys and "curves/val_error" not in keys
    assert {"curves/train_loss", "curves/grad_cosine", "final/test_loss"} <= keys
    assert not {"min/val_loss", "min/val_loss_epoch", "max/val_error", "final/val_error"} & keys


# --- expected outcomes are results, not exceptions ---

def test_shape_mismatch_is_a_finished_run_without_final_weights(compose, store, tmp_path):
    r = _run(compose, store, "data=iris", "update=kronecker", experiment="mismatch")
    assert r.result.outcome == "shape_mismatch"
    assert r.run.info.status == "FINISHED"
    tags = r.run.data.tags
    assert tags["slnn.outcome"] == "shape_mismatch"
    assert "(3, 3)" in tags["slnn.reason"] and "(5, 3)" in tags["slnn.reason"]
    art = _download(store, r.run_id, tmp_path / "art")
    W0 = np.load(art / "weights" / "initial.npy", allow_pickle=False)
    assert W0.shape == (5, 3) and W0.dtype == np.float64
    assert not (art / "weights" / "final.npy").exists()
    assert not (art / "history.csv").exists()  # it never trained: no epochs
    assert _metric(store, r.run_id, "val_loss")[0] == []
    assert r.run.data.metrics["final/epochs_run"] == 0
    assert "final/epoch" not in r.run.data.metrics  # no epoch has figures


def test_divergence_is_a_finished_run(compose, store, tmp_path):
    r = _run(compose, store, "model.activation=linear", "optim.lr=50", "data=iris_petal",
             "train.epochs=20", experiment="diverge")
    assert r.run.info.status == "FINISHED"
    assert r.run.data.tags["slnn.outcome"] == "diverged"
    assert "epoch" in r.run.data.tags["slnn.reason"]
    hist = _history(_download(store, r.run_id, tmp_path / "art") / "history.csv")
    n = len(hist["epoch"])
    assert n - 1 == r.run.data.metrics["final/epochs_run"] < 20  # stopped early
    last = hist["train_loss"][-1]
    assert not math.isfinite(last) or last > 1e4  # train.divergence_loss
    assert all(math.isfinite(v) and v <= 1e4 for v in hist["train_loss"][:-1])
    # its final figures are those of the last epoch with finite figures, and it says which
    m, tags = r.run.data.metrics, r.run.data.tags
    finite = [i for i in range(n) if math.isfinite(hist["train_loss"][i])]
    assert m["final/epoch"] == hist["epoch"][finite[-1]]
    assert m["final/test_error"] == hist["test_error"][finite[-1]]
    assert m["final/val_loss"] == hist["val_loss"][finite[-1]] == m["curves/val_loss"]
    assert tags["slnn.final_from"].startswith(f"epoch {int(m['final/epoch'])}, the last")


# --- an unexpected failure is recorded, then raised ---

def test_failure_is_recorded_as_failed_and_raised(compose, store, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(slnn.app.run, "train", boom)
    with pytest.raises(RuntimeError, match="boom"):
        _run(compose, store, "data=iris_petal", experiment="failing")
    (run,) = _runs(store, "failing")
    assert run.info.status == "FAILED"
    assert run.data.tags["slnn.outcome"] == "failed"
    assert "boom" in run.data.tags["slnn.reason"] and "RuntimeError" in run.data.tags["slnn.reason"]
    assert run.data.params["data.name"] == "iris_petal"  # opened with its config before training


def test_interruption_is_recorded_as_killed(compose, store, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(slnn.app.run, "train", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(compose, store, "data=iris_petal", experiment="killed")
    (run,) = _runs(store, "killed")
    assert run.info.status == "KILLED"
    assert run.data.tags["slnn.outcome"] == "killed"


# --- determinism ---

def test_same_config_and_seed_repeat_exactly_and_another_seed_differs(compose, store, main_run,
                                                                      tmp_path):
    again = _run(compose, store, *MAIN, experiment="determinism")
    other = _run(compose, store, *MAIN, "seed=4", experiment="determinism")
    assert again.run_id != main_run.run_id
    W = np.load(main_run.art / "weights" / "final.npy", allow_pickle=False)
    W_again = np.load(_download(store, again.run_id, tmp_path / "a") / "weights" / "final.npy",
                      allow_pickle=False)
    W_other = np.load(_download(store, other.run_id, tmp_path / "b") / "weights" / "final.npy",
                      allow_pickle=False)
    assert np.array_equal(W, W_again)
    assert not np.allclose(W, W_other)
    tag = lambda r: r.run.data.tags["slnn.config_hash"]  # noqa: E731
    assert tag(again) == tag(main_run) != tag(other)


# --- where runs are recorded ---

def test_resolve_uri_environment_wins_over_the_config(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env.db")
    assert resolve_uri("sqlite:////somewhere/else.db") == f"sqlite:///{tmp_path}/env.db"


def test_resolve_uri_makes_a_relative_sqlite_path_absolute(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_uri("sqlite:///x.db") == f"sqlite:///{Path.cwd() / 'x.db'}"
    assert resolve_uri("sqlite:///sub/x.db") == f"sqlite:///{Path.cwd() / 'sub' / 'x.db'}"
    assert resolve_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"  # already absolute
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert resolve_uri("runs") == (Path.cwd() / "runs").as_uri()  # a folder: MLflow's file store


@pytest.mark.slow  # a real training run in a fresh interpreter: ~10-20 s
def test_cli_end_to_end(slnn_train, store, tmp_path):
    proc = slnn_train(["data=iris_petal", "train.epochs=5", f"tracking.uri={store.uri}",
                       "tracking.experiment=cli"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    assert f"mlflow ui --backend-store-uri {store.uri}" in lines[0]
    run_id = re.search(r"\brun ([0-9a-f]{32})\b", lines[0]).group(1)
    run = store.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "5" and run.data.params["data.name"] == "iris_petal"
    assert [r.info.run_id for r in _runs(store, "cli")] == [run_id]
    assert run.data.metrics["final/epochs_run"] == 5


def test_slnn_opens_sqlite_stores_in_wal_mode_with_commits_that_do_not_wait_for_the_disk(tmp_path):
    """After ``client_for``, the store file is in WAL mode, and each SQLite connection to it
    opened in the process, MLflow's own store's included, has ``synchronous=NORMAL`` (1), not
    SQLite's default FULL (2); a connection made with the sqlite3 module directly, and any
    connection to a database not in WAL mode, keep the default."""
    import sqlite3

    import sqlalchemy

    from slnn.tracking.store import client_for

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)
    client.create_experiment("e")  # the store answered through its engine
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 1
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
    # MLflow's own engine for the store (a private attribute: the test only reads it)
    store_engine = client._tracking_client.store.engine
    with store_engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    plain = sqlite3.connect(tmp_path / "mlflow.db")
    assert plain.execute("PRAGMA synchronous").fetchone()[0] == 2
    plain.close()
    # another SQLite database of the process, not in WAL mode, keeps the default (FULL): NORMAL
    # is only safe against a power cut in WAL mode
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/other.db")
    with other.connect() as con:
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
        assert con.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    other.dispose()


def test_a_new_stores_file_alone_holds_the_migrated_store(tmp_path):
    """A store is in WAL mode from its first connection, so its migration is written to the log
    first; ``client_for`` checkpoints a store it created, so the .db file alone (copied while
    this process still holds its connections) has MLflow's newest schema, as a backup would."""
    import shutil
    import sqlite3

    from mlflow.store.db.utils import _get_latest_schema_revision

    from slnn.tracking.store import client_for

    client = client_for(f"sqlite:///{tmp_path}/mlflow.db")
    client.search_experiments()
    shutil.copyfile(tmp_path / "mlflow.db", tmp_path / "copy.db")
    con = sqlite3.connect(tmp_path / "copy.db")
    try:
        [(version,)] = con.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        con.close()
    assert version == _get_latest_schema_revision()


@pytest.mark.parametrize("plot, expected", [(None, False), (True, True), (False, False)])
def test_a_sweeps_cell_plots_only_when_asked_and_its_param_says_what_it_did(
        compose, store, tmp_path, plot, expected):
    """In a sweep (a run with a parent), ``tracking.plot`` null means no PNG; the param records
    what the run did, not the null."""
    exp = store.client.get_experiment_by_name("test")
    exp_id = exp.experiment_id if exp else store.client.create_experiment("test")
    parent = store.client.create_run(exp_id).info.run_id
    over = [] if plot is None else [f"tracking.plot={str(plot).lower()}"]
    cfg = compose("data=iris_petal", "train.epochs=3", "tracking.log_model=false", *over,
                  f"tracking.uri={store.uri}", "tracking.experiment=test")
    result = slnn.app.run.run_one(cfg, quiet=True, parent_run_id=parent)
    store.client.set_terminated(parent)
    run = store.client.get_run(result.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.params["tracking.plot"] == str(expected)
    art = _download(store, result.run_id, tmp_path / "art")
    assert (art / "learning_curves.png").exists() == expected
    assert (art / "history.csv").exists()


def test_the_report_reads_runs_logged_before_and_after_summaries_had_their_prefix():
    """A store may hold both (a sweep resumed over older runs): each run's finals come from
    where it keeps them, ``final/...`` and tags now, unprefixed metrics before."""
    import pandas as pd

    from slnn.report.frames import runs_frame

    common = {"status": "FINISHED", "start_time": pd.Timestamp(0, unit="ms", tz="UTC"),
              "tags.slnn.outcome": "max_epochs"}
    old = {**common, "run_id": "old", "metrics.test_error": 0.25, "metrics.test_loss": 0.5,
           "metrics.epochs_run": 30.0, "metrics.steps_run": 300.0, "metrics.train_seconds": 1.5,
           "metrics.final_epoch": 29.0, "metrics.chance_error": 0.6, "metrics.n_classes": 3.0}
    new = {**common, "run_id": "new", "metrics.final/test_error": 0.125,
           "metrics.final/test_loss": 0.375, "metrics.final/epochs_run": 40.0,
           "metrics.final/steps_run": 400.0, "metrics.final/train_seconds": 2.5,
           "metrics.final/epoch": 40.0, "tags.slnn.chance_error": "0.631578947368421",
           "tags.slnn.n_classes": "2"}
    got = runs_frame(pd.DataFrame([old, new])).set_index("run_id")
    cols = ["test_error", "test_loss", "epochs_run", "steps_run", "train_seconds", "final_epoch",
            "chance_error", "n_classes"]
    assert got.loc["old", cols].tolist() == [0.25, 0.5, 30, 300, 1.5, 29, 0.6, 3]
    assert got.loc["new", cols].tolist() == [0.125, 0.375, 40, 400, 2.5, 40, 0.631578947368421, 2]


def test_experiments_slnn_makes_or_uses_are_model_training_experiments(compose, store):
    """MLflow's experiment kind: the UI opens such an experiment on its runs (model training),
    not in its GenAI mode. An experiment made before slnn marked them gets the tag when used;
    one a user marked otherwise keeps its kind."""
    from slnn.tracking.store import EXPERIMENT_KIND, ensure_experiment

    _run(compose, store, "data=iris_petal", "train.epochs=1", experiment="kind")
    kind = store.client.get_experiment_by_name("kind").tags
    assert EXPERIMENT_KIND == ("mlflow.experimentKind", "custom_model_development")
    assert kind["mlflow.experimentKind"] == "custom_model_development"
    older = store.client.create_experiment("older")
    mine = store.client.create_experiment("mine", tags={"mlflow.experimentKind": "finetuning"})
    assert ensure_experiment(store.client, "older") == older
    assert ensure_experiment(store.client, "mine") == mine
    assert store.client.get_experiment(older).tags["mlflow.experimentKind"] == \
        "custom_model_development"
    assert store.client.get_experiment(mine).tags["mlflow.experimentKind"] == "finetuning"
