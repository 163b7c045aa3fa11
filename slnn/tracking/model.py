"""A trained network as an MLflow LoggedModel: a pyfunc model "from code", linked to its run.

``log_model(client, experiment_id, run_id, W, activation, data, name=...)`` creates, fills and
logs it (it shows in the experiment's Models tab and under the run); ``model_code`` is the code
it serves with, ``pyfunc_network.py`` plus the activation copied from the registry. The saved
template each later model copies, and why, are in docs/tracking.md ("Trained networks as MLflow
models"). Load one with ``mlflow.pyfunc.load_model("models:/<model_id>")``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

CODE = Path(__file__).with_name("pyfunc_network.py")
TEMPLATE_FORMAT = 2  # bump when what a template holds changes
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
        code = src / CODE.name
        code.write_text(model_code(activation))
        net = _network(code)  # the same code the model runs
        ctx = type("Ctx", (), {"artifacts": {"weights": str(src / "weights.npy"),
                                             "meta": str(src / "meta.json")}})()
        net.load_context(ctx)
        signature = infer_signature(example, net.predict(ctx, example))
        mlflow.pyfunc.save_model(
            str(dest), python_model=str(code),
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


UV_FILES = ("uv.lock", "pyproject.toml", ".python-version")  # what MLflow copies from a uv project
MANIFEST = "slnn-template.json"  # a cache entry's own list of its files and their hashes


def _uv_project() -> bytes:
    """What MLflow's save copies from the working directory: with both ``uv.lock`` and
    ``pyproject.toml`` there (and ``MLFLOW_UV_AUTO_DETECT``, ``MLFLOW_LOG_UV_FILES`` not off), those
    files and ``.python-version``. Their contents and the two switches go into the key."""
    parts = [os.environ.get(v) for v in ("MLFLOW_UV_AUTO_DETECT", "MLFLOW_LOG_UV_FILES")]
    cwd = Path.cwd()
    if all((cwd / f).is_file() for f in UV_FILES[:2]):
        parts += [hashlib.sha256((cwd / f).read_bytes()).hexdigest() if (cwd / f).is_file()
                  else None for f in UV_FILES]
    return repr(parts).encode()


def _digest(key: tuple, data) -> str:
    """What a template depends on: ``key``, the input example (its exact values), the uv
    project MLflow would copy and ``_environment()``."""
    example = _example(data)
    h = hashlib.sha256(_environment())
    for part in (repr(key).encode(), repr(list(example.columns)).encode(),
                 repr([str(t) for t in example.dtypes]).encode(),
                 np.ascontiguousarray(example.to_numpy()).tobytes(), _uv_project()):
        h.update(b"\0" + part)
    return h.hexdigest()[:32]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _read(root: Path, cached: bool = False):
    """A saved model's files and MLmodel; a cache entry is checked against its manifest (a file
    missing, added or changed, as a crash or a full disk can leave it, raises)."""
    from mlflow.models import Model

    files = _files(root)
    if cached:
        manifest = json.loads(files.pop(MANIFEST))
        if manifest != {rel: hashlib.sha256(b).hexdigest() for rel, b in files.items()}:
            raise ValueError(f"{root} does not match its manifest")
    return files, Model.load(str(root / "MLmodel"))


def _keep(files: dict[str, bytes], final: Path) -> None:
    """Write a saved template's ``files`` to ``final`` in the cache, atomically, with a manifest
    of their hashes; a broken entry in the way is replaced, and hidden folders a killed process left
    over an hour ago are removed. Best effort: a cache that cannot be written is skipped."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for old in final.parent.glob(".*"):
            try:
                if time.time() - old.stat().st_mtime > 3600:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            for rel, blob in files.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_bytes(blob)
            (tmp / MANIFEST).write_text(json.dumps(
                {rel: hashlib.sha256(b).hexdigest() for rel, b in files.items()}))
            if final.exists():  # broken (it was read and failed): move it aside, then drop it
                aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.broken.", dir=final.parent))
                os.rename(final, aside / "entry")
                shutil.rmtree(aside, ignore_errors=True)
            os.rename(tmp, final)  # fails if another process put one there first: keep theirs
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
            _templates[digest] = _read(cached, cached=True)
            return _templates[digest]
        except Exception:  # noqa: BLE001 - no entry, or a broken one: save afresh
            pass
        with tempfile.TemporaryDirectory(prefix="slnn-model-") as tmp:
            root = Path(tmp) / "model"
            _save_with_mlflow(root, W, activation, data)
            _templates[digest] = _read(root)
        _keep(_templates[digest][0], cached)
    return _templates[digest]


def write_model(dest: Path, W: np.ndarray, activation: str, data, **identity) -> None:
    """Write the pyfunc model of ``W`` (trained on ``data`` with ``activation``) into ``dest``;
    ``identity`` sets fields of its MLmodel (``model_id``, ``run_id``, ``artifact_path``)."""
    code = hashlib.sha256(model_code(activation).encode()).hexdigest()
    key = (activation, code, tuple(data.feature_names), tuple(data.class_names), W.shape)
    files, mlmodel = _template(key, W, activation, data)
    for rel, blob in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(blob)
    weights, meta = dest / "artifacts" / "weights.npy", dest / "artifacts" / "meta.json"
    np.save(weights, np.asarray(W, dtype=np.float64))
    meta.write_text(json.dumps(_meta(activation, data)))
    # the copy's own identity, through MLflow's Model API; its size as MLflow counts it (the
    # files before the MLmodel and environment files), which differs from the template's only
    # by what this model's weights and preprocessing take
    template = copy.copy(mlmodel)
    template.model_uuid = uuid.uuid4().hex
    template.utc_time_created = str(datetime.now(timezone.utc).replace(tzinfo=None))
    if mlmodel.model_size_bytes is not None:
        template.model_size_bytes = (mlmodel.model_size_bytes
                                     + weights.stat().st_size - len(files["artifacts/weights.npy"])
                                     + meta.stat().st_size - len(files["artifacts/meta.json"]))
    for field, value in identity.items():
        setattr(template, field, value)
    template.save(str(dest / "MLmodel"))


def _network(path: Path):
    """The ``SlnnNetwork`` a model's code file sets, run from the file as MLflow runs it."""
    namespace = {"__name__": "slnn_model_code", "__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - code slnn wrote
    return namespace["MODEL"]


def _refuse(activation: str, why: str):
    from slnn.core.errors import ConfigError

    return ConfigError(f"model.activation={activation!r} cannot be logged as a model, which runs "
                       f"without slnn: {why}; define it with `def` using NumPy (np.*) only, or "
                       "set tracking.log_model=false")


def activation_source(activation: str) -> tuple[str, str]:
    """The source of ``activation``'s function (``f`` in the registry) as a logged model runs it,
    and the function's name: the imports it needs (NumPy or the standard library, under the names
    it uses) and its ``def``, dedented. Raises ``ConfigError`` (one line) for a function the
    model could not run on its own: unknown, source unreadable, not a plain ``def`` (a lambda, a
    decorated function, a closure), one that uses anything but NumPy, the standard library and
    builtins (a helper, a constant, slnn), or one whose file changed since it was imported (the
    copy is compiled and must be the bytecode that trained)."""
    import ast
    import builtins
    import inspect
    import textwrap
    import types

    from slnn.core.activations import ACTIVATIONS

    if activation not in ACTIVATIONS:
        raise _refuse(activation, f"no such activation (registered: {sorted(ACTIVATIONS)})")
    f = ACTIVATIONS[activation].f
    code = getattr(f, "__code__", None)
    if code is None:
        raise _refuse(activation, f"its function {f!r} is not written in Python")
    if code.co_freevars:
        raise _refuse(activation, f"its function uses {', '.join(code.co_freevars)} of the "
                                  "function around it (a closure)")
    try:
        source = textwrap.dedent(inspect.getsource(f))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError) as e:
        raise _refuse(activation, f"the source of {f.__qualname__} cannot be read "
                                  f"({type(e).__name__})") from None
    if (len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef)
            or tree.body[0].decorator_list):
        raise _refuse(activation, f"{f.__qualname__} is not a plain def (a lambda, or decorated)")
    fn = tree.body[0]
    own = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    own |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    free = sorted({n.id for n in ast.walk(fn) if isinstance(n, ast.Name)
                   and isinstance(n.ctx, ast.Load)} - own - {fn.name})
    stdlib = set(sys.stdlib_module_names)
    imports = []
    for name in free:
        if name in f.__globals__:
            value = f.__globals__[name]
        elif hasattr(builtins, name):
            continue
        else:
            raise _refuse(activation, f"{f.__qualname__} uses {name!r}, which is not defined")
        module = value if isinstance(value, types.ModuleType) else None
        if module is not None and module.__name__.split(".")[0] in {"numpy"} | stdlib:
            imports.append(f"import {module.__name__}" if module.__name__ == name
                           else f"import {module.__name__} as {name}")
        elif module is None and getattr(np, name, None) is value:  # from numpy import exp
            imports.append(f"from numpy import {name}")
        else:
            where = getattr(value, "__module__", None) or getattr(value, "__name__", "")
            raise _refuse(activation, f"{f.__qualname__} uses {name!r}"
                                      f"{f' (from {where})' if where else ''}, which the model "
                                      "would not have")
    head = (f"# model.activation={activation!r}: {f.__module__}.{f.__qualname__}, copied when "
            "this model was logged")
    text = "\n".join([head, *imports, "", "", source.rstrip()])
    copy_ = {}
    exec(compile(text, "<model activation>", "exec"), copy_)  # noqa: S102 - the source f runs
    if (copy_[fn.name].__code__.co_code, copy_[fn.name].__code__.co_names) != (code.co_code,
                                                                               code.co_names):
        raise _refuse(activation, f"the source file of {f.__qualname__} changed since it was "
                                  "imported")
    return text, fn.name


def model_code(activation: str) -> str:
    """The code of a logged model of ``activation``: ``pyfunc_network.py``, then the activation's
    function copied from the registry (``activation_source``) and the line that sets the model.
    ``ConfigError`` (one line) if the function cannot be copied."""
    source, name = activation_source(activation)
    template = CODE.read_text()
    if name in ("json", "np", "pd", "set_model", "PythonModel", "SlnnNetwork", "MODEL"):
        raise _refuse(activation, f"its function's name {name!r} is one the model's code uses")
    return f"{template.rstrip()}\n\n\n{source}\n\n\nMODEL = SlnnNetwork({name})\nset_model(MODEL)\n"


def model_name(update: str, activation: str, data_name: str) -> str:
    """What a logged model is, as its name: ``<rule>-<activation>-<data set>``
    (``input-sigmoid-iris_petal``), with the characters MLflow refuses in a name as ``_``."""
    name = f"{update}-{activation}-{data_name}"
    return "".join("_" if c in "/:.%\"'" else c for c in name)


def log_model(client, experiment_id: str, run_id: str, W: np.ndarray, activation: str, data,
              name: str = "model", params: dict[str, str] | None = None,
              tags: dict[str, str] | None = None, step: int = 0) -> str:
    """Log ``W`` as a LoggedModel ``name`` of run ``run_id`` (with the run's ``params`` and
    extra ``tags``), and as the run's output at ``step``, so the run page lists it under
    "Logged models"; returns its model id. Its metrics are linked by the caller (``Metric``\ s
    with its ``model_id``: ``recorder.metric_entities``, ``link_metrics``)."""
    from mlflow.entities import LoggedModelOutput

    model_code(activation)  # one the model cannot run: one line, before anything is logged
    lm = client.create_logged_model(
        experiment_id, name=name, source_run_id=run_id,
        params={k: str(v)[:6000] for k, v in (params or {}).items()},
        tags={"slnn.activation": activation, "slnn.data": data.name, **(tags or {})},
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
    client.log_outputs(run_id, [LoggedModelOutput(lm.model_id, step)])
    return lm.model_id


def link_metrics(client, run_id: str, model_id: str, data, prefixes: tuple[str, ...]) -> None:
    """Give a model logged after its run ended (a sweep's best) the run's summary metrics: each
    is logged again with the model's id and data set, at its own step and time, so the run's
    history gains no point (MLflow skips a metric it already has) and the model gains it."""
    from mlflow.entities import Metric

    run = client.get_run(run_id)
    out = []
    for key in run.data.metrics:
        if key.startswith(prefixes):  # recorder.MODEL_METRICS, passed in: no import back up
            out += [Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id,
                           dataset_name=data.name, dataset_digest=data.digest)
                    for m in client.get_metric_history(run_id, key)]
    for i in range(0, len(out), 1000):
        client.log_batch(run_id, metrics=out[i:i + 1000])
