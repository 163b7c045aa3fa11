"""An activation is one place: a logged model's code copies its activation's function from the
registry (``slnn.core.activations``) when it is logged, so a newly registered activation is served
with no second edit, and one the model could not run on its own is a one-line error at logging
time, never a silently missing model. Run: ``python -m pytest tests/test_served_activations.py``.

The new activation here is registered for the test only (``monkeypatch``); the model is loaded
with ``mlflow.pyfunc.load_model`` in a process where ``import slnn`` fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import slnn.app.run
from slnn.core import activations
from slnn.core.activations import ACTIVATIONS, Activation
from slnn.core.errors import ConfigError
from slnn.tracking.model import model_code


def softsign(x):
    """x / (1 + |x|), in (-1, 1)"""
    return x / (1.0 + np.abs(x))


def softsign_prime(x):
    return 1.0 / (1.0 + np.abs(x)) ** 2


# what the model is given, in a process that cannot import slnn: a finder first on sys.meta_path
# refuses it (the venv's editable install would find it otherwise)
NO_SLNN = """
import importlib.abc, json, sys
class NoSlnn(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "slnn" or name.startswith("slnn."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, NoSlnn())
try:
    import slnn
    sys.exit("the premise failed: slnn is importable")
except ModuleNotFoundError:
    pass
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
sent = json.load(open(sys.argv[2]))  # json keeps every digit of a float; to_json keeps 10
out = model.predict(pd.DataFrame(sent["data"], columns=sent["columns"]))
assert not [m for m in sys.modules if m == "slnn" or m.startswith("slnn.")]
print(json.dumps({"columns": list(out.columns), "data": out.to_numpy().tolist()}))
"""


@pytest.fixture
def store(tmp_path, monkeypatch, new_sqlite_store):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = new_sqlite_store(tmp_path)
    return SimpleNamespace(uri=uri, client=MlflowClient(uri))


def test_a_newly_registered_activation_is_served_without_slnn(compose, store, tmp_path,
                                                               monkeypatch):
    monkeypatch.setitem(ACTIVATIONS, "softsign", Activation("softsign", softsign, softsign_prime))
    cfg = compose("data=iris", "model.activation=softsign", "train.epochs=15", "seed=3",
                  "train.backend=numpy", "tracking.plot=false", f"tracking.uri={store.uri}")
    result = slnn.app.run.run_one(cfg, quiet=True)
    assert result.outcome == "max_epochs"
    model_id = store.client.get_run(result.run_id).data.tags["slnn.model_id"]
    data = slnn.app.run.build_dataset(slnn.app.schema.to_config(cfg))

    frame = pd.DataFrame(data.raw(data.x_test), columns=list(data.feature_names))
    (tmp_path / "input.json").write_text(json.dumps({"columns": list(frame.columns),
                                                     "data": frame.to_numpy().tolist()}))
    env = {"MLFLOW_TRACKING_URI": store.uri, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-I", "-c", NO_SLNN, f"models:/{model_id}",
                           str(tmp_path / "input.json")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = pd.DataFrame(**json.loads(proc.stdout.strip().splitlines()[-1]))

    # the trainer's forward pass on the same W, with the registered function
    z = ACTIVATIONS["softsign"].f(slnn.core.trainer.with_bias(data.x_test) @ result.W_final)
    p = np.clip(z, 0.0, None)
    p = p / p.sum(axis=1, keepdims=True)
    assert (p.sum(axis=1) > 0).all()  # the normalization above needs no fallback
    assert list(served["predicted"]) == [data.class_names[j] for j in z.argmax(axis=1)]
    np.testing.assert_allclose(served[[f"p_{c}" for c in data.class_names]].to_numpy(float), p,
                               rtol=1e-12, atol=1e-15)
    assert np.isfinite(z).all() and (z < 0).any()  # softsign's range, not a sigmoid's


def test_every_registered_activation_is_the_function_the_model_runs():
    x = np.linspace(-8, 8, 101)
    for name, act in ACTIVATIONS.items():
        namespace: dict = {"__name__": "model_code"}
        exec(compile(model_code(name), f"<model of {name}>", "exec"), namespace)  # noqa: S102
        np.testing.assert_array_equal(namespace["MODEL"].f(x), act.f(x), err_msg=name)
        assert "slnn" not in {m.__name__.split(".")[0] for m in namespace.values()
                              if isinstance(m, types.ModuleType)}


def _helper(x):
    return np.tanh(x)


def uses_a_helper(x):
    return _helper(x) * 2.0


def uses_slnn(x):
    return activations.sigmoid(x)


def _closure():
    scale = 2.0

    def scaled(x):
        return np.tanh(x) * scale

    return scaled


def _no_source():
    namespace = {"np": np}
    exec("def made(x):\n    return np.tanh(x)\n", namespace)  # noqa: S102
    return namespace["made"]


@pytest.mark.parametrize("f, why", [
    (lambda x: x * 2.0, "is not a plain def"),
    (uses_a_helper, "uses '_helper' (from test_served_activations)"),
    (uses_slnn, "uses 'activations' (from slnn.core.activations)"),
    (_closure(), "uses scale of the function around it"),
    (_no_source(), "cannot be read"),
    (np.tanh, "is not written in Python"),
])
def test_an_activation_the_model_cannot_run_is_refused_in_one_line(f, why, monkeypatch):
    monkeypatch.setitem(ACTIVATIONS, "mine", Activation("mine", f, f))
    with pytest.raises(ConfigError) as e:
        model_code("mine")
    msg = str(e.value)
    assert why in msg and "\n" not in msg, msg
    assert msg.startswith("model.activation='mine' cannot be logged as a model")
    assert msg.endswith("or set tracking.log_model=false")


def test_a_run_whose_activation_cannot_be_served_fails_at_logging_with_no_model(
        compose, store, monkeypatch):
    """The run trains, then logging its model raises the one line (the command line prints it,
    exit code 2): the run is FAILED with that reason, and no LoggedModel was created."""
    monkeypatch.setitem(ACTIVATIONS, "mine", Activation("mine", uses_a_helper, softsign_prime))
    cfg = compose("data=iris", "model.activation=mine", "train.epochs=3", "train.backend=numpy",
                  "tracking.plot=false", f"tracking.uri={store.uri}")
    with pytest.raises(ConfigError, match="uses '_helper'"):
        slnn.app.run.run_one(cfg, quiet=True)
    exp = store.client.get_experiment_by_name(cfg.tracking.experiment)
    [run] = store.client.search_runs([exp.experiment_id])
    assert run.info.status == "FAILED"
    assert "uses '_helper'" in json.dumps(run.data.tags)
    assert store.client.search_logged_models([exp.experiment_id]) == []


def test_the_command_line_says_it_in_one_line_with_exit_code_2(tmp_path):
    """A lambda registered at start-up (a ``sitecustomize`` on the path): ``slnn-train`` trains,
    to finite weights, then stops with one line naming the activation, the reason and the fix."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import numpy as np\nfrom slnn.core.activations import ACTIVATIONS, Activation\n"
        "ACTIVATIONS['mine'] = Activation('mine', lambda x: np.tanh(x),\n"
        "                                 lambda x: 1 - np.tanh(x) ** 2)\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-m", "slnn", "data=iris", "model.activation=mine",
                           "train.epochs=2", "train.backend=numpy", "tracking.plot=false",
                           f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "slnn-train: error: model.activation='mine' cannot be logged as a model, which runs "
        "without slnn: <lambda> is not a plain def (a lambda, or decorated); define it with `def` "
        "using NumPy (np.*) only, or set tracking.log_model=false"], proc.stderr


def test_an_activation_whose_file_changed_since_import_is_refused(tmp_path, monkeypatch):
    """The copy must be the code that trained: a source file edited after the import (a sweep
    running while someone edits) no longer matches the function, and is refused."""
    import importlib

    (tmp_path / "my_acts.py").write_text("import numpy as np\n\n\ndef act(x):\n"
                                         "    return np.tanh(x)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("my_acts")
    monkeypatch.setitem(ACTIVATIONS, "mine", Activation("mine", module.act, module.act))
    assert "return np.tanh(x)" in model_code("mine")  # as imported: copied
    (tmp_path / "my_acts.py").write_text("import numpy as np\n\n\ndef act(x):\n"
                                         "    return np.tanh(x) * 2.0 + 1.0\n")
    with pytest.raises(ConfigError, match="the source file of act changed since it was imported"):
        model_code("mine")
    monkeypatch.delitem(sys.modules, "my_acts")
