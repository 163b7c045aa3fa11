"""The layers of ``pyproject.toml``'s import-linter contracts hold: ``lint-imports`` is run on the
source as a reviewer runs it, every import counted, those inside functions too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> str:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return exe


def test_the_layers_and_the_core_contract_are_kept():
    proc = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout or "broken" not in proc.stdout.split("Contracts:")[-1]


def test_an_import_inside_a_function_that_climbs_a_layer_is_caught(tmp_path):
    """The contract is not vacuous: a copy of the package with one upward import made inside a
    function (the core importing the sweep) breaks it, and the report names that import."""
    shutil.copytree(ROOT / "slnn", tmp_path / "slnn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "hydra_plugins", tmp_path / "hydra_plugins",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "slnn" / "core" / "outcomes.py"
    target.write_text(target.read_text() + "\n\ndef _climb():\n    import slnn.sweep.grid  # noqa\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run([_lint_imports(), "--no-cache"], cwd=tmp_path, capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "slnn.core is not allowed to import slnn.sweep" in proc.stdout
    assert "slnn.core.outcomes -> slnn.sweep.grid" in proc.stdout
