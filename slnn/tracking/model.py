"""A trained network as an MLflow LoggedModel: a pyfunc model "from code", linked to its run.

``log_model(client, experiment_id, run_id, W, activation, data)`` creates the LoggedModel
(``MlflowClient.create_logged_model``, so it shows in the experiment's Models tab and the run's
"Logged models"), writes its directory and uploads it (``log_model_artifacts``), then marks it
READY. Load it with ``mlflow.pyfunc.load_model("models:/<model_id>")`` or
``runs:/<run_id>/model``.

``mlflow.pyfunc.save_model`` costs about 2 s in a new process, most of it MLflow checking the
pinned requirements against every installed distribution. Every model of the same data set,
activation and input example, with the same versions of Python, mlflow, numpy, pandas, pip, setuptools,
wheel and cloudpickle, and the same model code, has the same signature, environment files and code. So the first is saved by MLflow
(the template), kept in memory and in ``cache_root()/models/<digest>/`` (the digest covers all of
the above), and each later one, in this or any later process, is a copy of it with its own
weights, preprocessing and identity (``model_id``, ``model_uuid``, run and creation time, set
through MLflow's ``Model`` API). A template is written to a hidden folder and renamed into place,
so parallel processes never read half of one; a cache that cannot be written or read is skipped.
The model's code (``pyfunc_network.py``) needs only numpy, pandas and mlflow: no slnn.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

CODE = Path(__file__).with_name("pyfunc_network.py")
TEMPLATE_FORMAT = 1  # bump when what a template holds changes
# _digest(...) -> {relative path: bytes} of a saved model, and its MLmodel
_templates: dict[str, tuple[dict[str, bytes], object]] = {}


def _meta(activation: str, data) -> dict:
    return {
        "activation": activation,
        "feature_names": list(data.feature_names),
        "class_names": list(data.class_names),
        "shift": None if data.shift is None else np.asarray(data.shift).tolist(),
        "scale": None if data.scale is None else np.asarray(data.scale).tolist(),
    }


def _example(data):
    import pandas as pd

    rows = data.x_test if data.n_test else data.x_train
    return pd.DataFrame(data.raw(rows[:5]), columns=list(data.feature_names))


def _save_with_mlflow(dest: Path, W: np.ndarray, activation: str, data) -> None:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    src = Path(tempfile.mkdtemp(prefix="slnn-model-src-"))
    try:
        np.save(src / "weights.npy", W)
        (src / "meta.json").write_text(json.dumps(_meta(activation, data)))
        example = _example(data)
        from slnn.tracking.pyfunc_network import SlnnNetwork  # the same code the model runs

        net = SlnnNetwork()
        ctx = type("Ctx", (), {"artifacts": {"weights": str(src / "weights.npy"),
                                             "meta": str(src / "meta.json")}})()
        net.load_context(ctx)
        signature = infer_signature(example, net.predict(ctx, example))
        mlflow.pyfunc.save_model(
            str(dest), python_model=str(CODE),
            artifacts={"weights": str(src / "weights.npy"), "meta": str(src / "meta.json")},
            signature=signature, input_example=example,
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}",
                              f"pandas=={pd.__version__}"])
    finally:
        shutil.rmtree(src, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _environment() -> bytes:
    """The versions MLflow writes into a model's environment files and MLmodel, and the model's
    code and its path: fixed for a process, so read once."""
    from importlib.metadata import PackageNotFoundError, version

    import mlflow
    import pandas as pd

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    parts = (TEMPLATE_FORMAT, sys.version, mlflow.__version__, np.__version__, pd.__version__,
             [installed(n) for n in ("pip", "setuptools", "wheel", "cloudpickle")], str(CODE),
             hashlib.sha256(CODE.read_bytes()).hexdigest())
    return repr(parts).encode()


def _digest(key: tuple, data) -> str:
    """What a template depends on: ``key``, the input example and ``_environment()``."""
    h = hashlib.sha256(_environment())
    for part in (key, _example(data).to_json(orient="split", double_precision=15)):
        h.update(b"\0" + repr(part).encode())
    return h.hexdigest()[:32]


def _read(root: Path):
    from mlflow.models import Model

    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return files, Model.load(str(root / "MLmodel"))


def _keep(root: Path, final: Path) -> None:
    """Copy the saved template ``root`` to ``final`` in the cache, atomically; best effort."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            shutil.copytree(root, tmp, dirs_exist_ok=True)
            os.rename(tmp, final)  # fails if another process put it there first: keep theirs
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # a read-only or full cache: the next process saves with MLflow again


def _template(key: tuple, W: np.ndarray, activation: str, data):
    digest = _digest(key, data)
    if digest not in _templates:
        from slnn.core.compiled.codegen import cache_root

        cached = cache_root() / "models" / digest
        try:
            if (cached / "MLmodel").is_file():
                _templates[digest] = _read(cached)
                return _templates[digest]
        except Exception:  # noqa: BLE001 - an unreadable cache entry: save afresh
            pass
        with tempfile.TemporaryDirectory(prefix="slnn-model-") as tmp:
            root = Path(tmp) / "model"
            _save_with_mlflow(root, W, activation, data)
            _templates[digest] = _read(root)
            _keep(root, cached)
    return _templates[digest]


def write_model(dest: Path, W: np.ndarray, activation: str, data, **identity) -> None:
    """Write the pyfunc model of ``W`` (trained on ``data`` with ``activation``) into ``dest``;
    ``identity`` sets fields of its MLmodel (``model_id``, ``run_id``, ``artifact_path``)."""
    key = (activation, tuple(data.feature_names), tuple(data.class_names), W.shape)
    files, mlmodel = _template(key, W, activation, data)
    for rel, blob in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(blob)
    np.save(dest / "artifacts" / "weights.npy", np.asarray(W, dtype=np.float64))
    (dest / "artifacts" / "meta.json").write_text(json.dumps(_meta(activation, data)))
    # the copy's own identity, through MLflow's Model API
    mlmodel.model_uuid = uuid.uuid4().hex
    mlmodel.utc_time_created = str(datetime.now(timezone.utc).replace(tzinfo=None))
    for field, value in identity.items():
        setattr(mlmodel, field, value)
    mlmodel.save(str(dest / "MLmodel"))


def can_log(activation: str) -> bool:
    """Only activations the model's own code knows can be logged (a user's new one cannot)."""
    from slnn.tracking.pyfunc_network import ACTIVATIONS

    return activation in ACTIVATIONS


def log_model(client, experiment_id: str, run_id: str, W: np.ndarray, activation: str, data,
              name: str = "model") -> str:
    """Log ``W`` as a LoggedModel of run ``run_id``; returns its model id."""
    lm = client.create_logged_model(experiment_id, name=name, source_run_id=run_id,
                                    tags={"slnn.activation": activation, "slnn.data": data.name},
                                    model_type="slnn single-layer network")
    try:
        with tempfile.TemporaryDirectory(prefix="slnn-model-") as tmp:
            root = Path(tmp) / name
            write_model(root, W, activation, data, model_id=lm.model_id, run_id=run_id,
                        artifact_path=name)
            client.log_model_artifacts(lm.model_id, str(root))
    except BaseException:
        client.finalize_logged_model(lm.model_id, "FAILED")
        raise
    client.finalize_logged_model(lm.model_id, "READY")
    return lm.model_id
