"""The house rules of the layout, checked on the source: no import cycle, one definition of the
outcomes, a core without Hydra or MLflow, private APIs only in ``slnn._compat``, and registries
that drive every list of choices (help, README, config groups). Run with
`python -m pytest tests/test_layout.py -q`."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
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


def test_private_hydra_and_mlflow_apis_only_in_compat():
    private = re.compile(r"hydra\._internal|_tracking_client|_use_tracking_uri|_return_value"
                         r"|mlflow\.\w+(\.\w+)*\._\w+")
    for p in PKG.rglob("*.py"):
        if p.name == "_compat.py":
            continue
        hits = [ln for ln in p.read_text().splitlines() if private.search(ln)]
        assert not hits, f"{p.relative_to(PKG)} uses a private API: {hits}"
    plugin = PKG.parent / "hydra_plugins" / "slnn_sweeper"
    for p in plugin.glob("*.py"):
        assert not private.search(p.read_text()), p


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
