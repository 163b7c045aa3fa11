"""The house rules of the layout, checked on the source: no import cycle, one definition of the
outcomes, a core without Hydra or MLflow, private APIs only in ``slnn._compat``, and registries
that drive every list of choices (help, README, config groups). Run with
`python -m pytest tests/test_layout.py -q`."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import slnn
from slnn.core.outcomes import Outcome

PKG = Path(slnn.__file__).resolve().parent
README = PKG.parent / "README.md"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every slnn module ``path`` imports, at the top or inside a function."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m == "slnn" or m.startswith("slnn.")}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for m in _imports(path, name):
            while m and m not in mods:  # "from slnn.core.data import X": X is a name, not a module
                m = m.rsplit(".", 1)[0] if "." in m else ""
            if m and m != name and m != "slnn":
                deps.add(m)
        graph[name] = deps
    return graph


def test_no_import_cycle_counting_imports_inside_functions():
    graph = _graph()
    assert "slnn.app.run" in graph and "slnn.core.trainer" in graph  # the premise: it sees modules
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if d.startswith(m + "."):
                continue  # a package importing its own submodule is not a cycle back to it
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_core_imports_neither_hydra_nor_mlflow():
    for p in (PKG / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert not n.split(".")[0] in ("hydra", "mlflow", "omegaconf"), f"{p}: imports {n}"
                assert not n.startswith(("slnn.app", "slnn.tracking", "slnn.sweep", "slnn.report")), \
                    f"{p}: the core imports {n}"


def test_no_module_but_outcomes_spells_an_outcome_as_a_string():
    names = {o.value for o in Outcome}
    for p in PKG.rglob("*.py"):
        if p.name == "outcomes.py":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                pytest.fail(f"{p.relative_to(PKG)}:{node.lineno} spells the outcome {node.value!r}")


# libraries whose private names (a leading underscore, dunders aside) slnn may use only in _compat
PRIVATE_OWNERS = ("hydra", "omegaconf", "mlflow", "sqlalchemy", "joblib",
                  "hydra_plugins.hydra_joblib_launcher", "submitit")
# MLflow's documented API holds only mlflow.store.entities of mlflow.store (see slnn._compat)
INTERNAL_MODULES = ("mlflow.store",)
PUBLIC_UNDER_INTERNAL = ("mlflow.store.entities",)
LISTENERS = {"sqlalchemy.event.listen", "sqlalchemy.event.listens_for"}


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _private_path(dotted: str) -> bool:
    """A dotted name of one of ``PRIVATE_OWNERS`` that is private: a part with an underscore,
    an internal module, or an event listener."""
    if not _under(dotted, PRIVATE_OWNERS):
        return False
    return (any(_private(p) for p in dotted.split("."))
            or (_under(dotted, INTERNAL_MODULES) and not _under(dotted, PUBLIC_UNDER_INTERNAL))
            or dotted in LISTENERS)


def private_uses(source: str) -> list[str]:
    """``"<line>: <dotted name>"`` for each use in ``source`` of a private name of the libraries
    above: an import of one (``import mlflow.store._x``, ``from omegaconf._utils import f``,
    ``from mlflow.x import _y``), an attribute reached through a name bound by an import from them
    (``mlflow._x``, ``SqlAlchemyStore._engine_map``, ``event.listen``). Names are resolved per
    file, whatever the scope they were imported in."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> the dotted name it was imported as
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _private_path(a.name):
                    hits.append(f"{node.lineno}: {a.name}")
                if a.asname:
                    bound[a.asname] = a.name
                else:
                    root = a.name.split(".")[0]
                    bound[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _private_path(node.module) or _private_path(full):
                    hits.append(f"{node.lineno}: {full}")
                bound[a.asname or a.name] = full
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):  # each chain of attributes once, whole: t._x.y, not t._x
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            parts, base = [], node
            while isinstance(base, ast.Attribute):
                parts.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                full = ".".join([bound[base.id], *reversed(parts)])
                if _private_path(full) and not _private_path(bound[base.id]):  # else: at its import
                    hits.append(f"{node.lineno}: {full}")
    return sorted(set(hits), key=lambda h: int(h.split(":")[0]))


def _checked_modules() -> list[Path]:
    plugin = PKG.parent / "hydra_plugins" / "slnn_sweeper"
    return sorted([*PKG.rglob("*.py"), *plugin.rglob("*.py")])


def test_private_library_apis_only_in_compat():
    found = {}
    for p in _checked_modules():
        if p == PKG / "_compat.py":
            continue
        hits = private_uses(p.read_text())
        if hits:
            found[str(p.relative_to(PKG.parent))] = hits
    assert not found, (f"private APIs used outside slnn/_compat.py: {found}; put each behind a "
                       "function in slnn/_compat.py that says why and the versions checked")



def _their_private_attributes() -> set[str]:
    """The private attributes (methods, fields) of the public classes slnn handles of those
    libraries: what ``obj._x`` on one of their objects would reach."""
    import joblib
    import submitit
    from hydra.core.config_store import ConfigStore
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobReturn
    from hydra.plugins.completion_plugin import CompletionPlugin
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import Container, Node
    from sqlalchemy.engine import Engine

    classes = [DictConfig, ListConfig, Node, Container, MlflowClient, Run, JobReturn,
               CompletionPlugin, Launcher, Sweeper, HydraConfig, ConfigStore, Engine,
               joblib.Parallel, submitit.Job, submitit.AutoExecutor]
    out = {n for c in classes for n in dir(c) if _private(n)}
    for c in classes:  # and what their methods set on instances: self._x = ...
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(c)))
        except (OSError, TypeError):
            continue
        out |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                and isinstance(n.ctx, ast.Store) and _private(n.attr)}
    return out


def private_attribute_reads(source: str, theirs: set[str], ours: set[str]) -> list[str]:
    """``"<line>: <name>"`` for each ``obj._name`` (or ``getattr(obj, "_name")``) in ``source``
    whose ``_name`` is a private attribute of their classes (``theirs``) that slnn does not
    define itself (``ours``): private state of an object of theirs, whatever its variable."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        name = (node.attr if isinstance(node, ast.Attribute) else
                node.args[1].value if (isinstance(node, ast.Call)
                                       and isinstance(node.func, ast.Name)
                                       and node.func.id in ("getattr", "setattr", "hasattr")
                                       and len(node.args) > 1
                                       and isinstance(node.args[1], ast.Constant)) else None)
        if isinstance(name, str) and name in theirs and name not in ours:
            hits.append(f"{node.lineno}: {name}")
    return sorted(hits, key=lambda h: int(h.split(":")[0]))


def _names_defined(sources: list[str]) -> set[str]:
    out = set()
    for source in sources:
        for n in ast.walk(ast.parse(source)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                out.add(n.attr)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                out.add(n.id)
    return out


def test_no_private_attribute_of_their_objects_outside_compat():
    sources = {p: p.read_text() for p in _checked_modules()}
    theirs, ours = _their_private_attributes(), _names_defined(list(sources.values()))
    found = {str(p.relative_to(PKG.parent)): hits for p, src in sources.items()
             if p != PKG / "_compat.py" and (hits := private_attribute_reads(src, theirs, ours))}
    assert not found, (f"private attributes of Hydra, OmegaConf, MLflow, ... objects read "
                       f"outside slnn/_compat.py: {found}")
    # the guard itself: what slnn once did, and what passes
    assert private_attribute_reads("child = node._get_node(key)\nclient._tracking_client.store\n"
                                   "getattr(ret, '_return_value')", theirs, ours) == [
        "1: _get_node", "2: _tracking_client", "3: _return_value"]
    assert private_attribute_reads("self._lock\nos._exit(1)\nx.__class__", theirs,
                                   ours | {"_lock"}) == []


@pytest.mark.parametrize("snippet, hit", [
    ("from omegaconf._utils import get_omega_conf_dumper",
     "omegaconf._utils.get_omega_conf_dumper"),
    ("import mlflow.store._x", "mlflow.store._x"),
    ("from mlflow.x import _y", "mlflow.x._y"),
    ("import mlflow\nmlflow._x()", "mlflow._x"),
    ("import mlflow.tracking as t\nt._tracking_service.utils",
     "mlflow.tracking._tracking_service.utils"),
    ("from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore",
     "mlflow.store.tracking.sqlalchemy_store.SqlAlchemyStore"),
    ("from mlflow.tracking import MlflowClient as C\nC._engine_map.pop(u)",
     "mlflow.tracking.MlflowClient._engine_map.pop"),
    ("from hydra_plugins.hydra_joblib_launcher._core import f",
     "hydra_plugins.hydra_joblib_launcher._core.f"),
    ("from hydra.plugins.completion_plugin import CompletionPlugin\nCompletionPlugin._query",
     "hydra.plugins.completion_plugin.CompletionPlugin._query"),
    ("from sqlalchemy import event\nevent.listen(E, 'connect', f)", "sqlalchemy.event.listen"),
    ("import sqlalchemy\nsqlalchemy.event.listens_for(E, 'connect')(f)",
     "sqlalchemy.event.listens_for"),
    ("from sqlalchemy.event import listen as on\non(E, 'connect', f)", "sqlalchemy.event.listen"),
    ("def f():\n    from submitit import _x\n    return _x", "submitit._x"),
    ("import joblib\njoblib.externals.loky._base", "joblib.externals.loky._base"),
])
def test_the_private_api_guard_finds_each_kind_of_use(snippet, hit):
    assert [h.split(": ", 1)[1] for h in private_uses(snippet)] == [hit]


@pytest.mark.parametrize("snippet", [
    "import mlflow\nmlflow.__version__",
    "from mlflow.store.entities import PagedList",
    "from mlflow.tracking import MlflowClient\nMlflowClient(uri).log_batch",
    "import os\nos._exit(1)",
    "from slnn._compat import forget_sql_store_engine\nforget_sql_store_engine(u)",
    "from sqlalchemy import create_engine\ncreate_engine(u)",
    "from .x import _y",
    "self._x = 1",
])
def test_the_private_api_guard_lets_public_uses_pass(snippet):
    assert private_uses(snippet) == []


def test_config_groups_follow_the_registries(compose):
    from hydra.core.config_store import ConfigStore

    from slnn.app.schema import to_config
    from slnn.core.data import DATASETS
    from slnn.core.rules import UPDATE_RULES

    stored = ConfigStore.instance().repo
    for name in UPDATE_RULES:  # no YAML needed for a rule: each registered one is an option
        assert f"{name}.yaml" in stored["update"]
        assert to_config(compose(f"update={name}")).update.rule == name
    for name in DATASETS:
        extra = ["data.path=x.csv", "data.target=y"] if name == "csv" else []
        assert to_config(compose(f"data={name}", *extra)).data.name == name


def test_readme_table_of_choices_is_the_registries():
    from slnn.app.choices import choices_markdown

    text = README.read_text()
    block = re.search(r"<!-- choices:start -->\n(.*?)\n<!-- choices:end -->", text, re.S)
    assert block, "README.md lacks its <!-- choices:start --> ... <!-- choices:end --> block"
    assert block.group(1).strip() == choices_markdown().strip(), (
        "README's table of choices is stale: replace its block with the output of "
        "`python -m slnn.app.choices`")


def test_help_lists_every_registered_choice(tmp_path):
    from slnn.core.activations import ACTIVATIONS
    from slnn.core.data import DATASETS
    from slnn.core.rules import UPDATE_RULES

    out = subprocess.run([sys.executable, "-m", "slnn", "--help"], cwd=tmp_path, text=True,
                         capture_output=True, timeout=120).stdout
    for line_key, names in (("model.activation=", ACTIVATIONS), ("update=", UPDATE_RULES),
                            ("data=<choice>", DATASETS)):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(line_key))
        assert all(n in line for n in names), (line_key, line)


PLUGIN = '''
import numpy as np

def sign_step(x, net, z, t, delta):
    """sign of the gradient: a throwaway rule for the test"""
    return np.sign(x.T @ delta)  # (d+1, n) @ (n, k) -> (d+1, k)
'''

REGISTER_AND_RUN = '''
import sys
from slnn.core import rules
import plugin
rules.UPDATE_RULES["sign"] = rules.UpdateRule("sign", plugin.sign_step)   # the one registry line
from slnn.app.cli import cli
sys.argv = ["slnn-train", *sys.argv[1:]]
cli()
'''


def test_a_rule_registered_in_one_line_runs_from_the_command_line(tmp_path):
    (tmp_path / "plugin.py").write_text(PLUGIN)
    (tmp_path / "run.py").write_text(REGISTER_AND_RUN)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "run.py", "update=sign", "data=iris_petal",
                           "train.epochs=3", "tracking.log_model=false", "tracking.plot=false"],
                          cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "sign-sigmoid-lr0.1-s0-iris_petal: max_epochs after 3 epochs" in proc.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("slnn")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["update.rule"] == "sign" and run.data.tags["slnn.update"] == "sign"
    # it trained on the NumPy path (no compiled twin) and moved the weights
    assert run.data.metrics["curves/weight_norm"] > 0
