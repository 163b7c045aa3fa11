"""Which code made a run: MLflow's standard source tags, so the UI's Source and User columns fill,
and slnn's own version, a hash of its source files and a dirty flag.

    source_tags()   # {"mlflow.source.name": ..., "slnn.code_hash": ..., ...}

Each value is computed once per process; docs/tracking.md says what each tag holds."""

from __future__ import annotations

import getpass
import hashlib
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import slnn

PKG = Path(slnn.__file__).resolve().parent
PLUGIN = PKG.parent / "hydra_plugins" / "slnn_sweeper"


def _sources() -> list[Path]:
    files = sorted(PKG.rglob("*.py"))
    if PLUGIN.is_dir():
        files += sorted(PLUGIN.glob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


@lru_cache(maxsize=1)
def code_hash() -> str:
    """16 hex digits of SHA-256 over slnn's own source files (paths relative to the package)."""
    h = hashlib.sha256()
    for f in _sources():
        h.update(str(f.relative_to(PKG.parent)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PKG), *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def git_info() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout slnn is imported from, or (None, None) for an install
    that is not a checkout. Dirty: slnn's own files differ from that commit."""
    top = _git("rev-parse", "--show-toplevel")
    if not top or not (Path(top) / "pyproject.toml").exists() or PKG.parent != Path(top).resolve():
        return None, None  # not slnn's own checkout (e.g. a wheel inside some other repository)
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", ":(top)slnn", ":(top)hydra_plugins")
    return commit, (None if status is None else bool(status))


def entry_point() -> str:
    """What was run, as MLflow's Source column shows it: the console script, or python -m ..."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if name in ("__main__.py", "-c", "") or name.endswith(".py") and name.startswith("__"):
        return "python -m slnn"
    return name


@lru_cache(maxsize=1)
def source_tags() -> dict[str, str]:
    """The tags every run carries about the code that made it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "?")
    commit, dirty = git_info()
    tags = {"mlflow.source.name": entry_point(), "mlflow.source.type": "LOCAL",
            "mlflow.user": user, "slnn.version": slnn.__version__, "slnn.code_hash": code_hash(),
            "slnn.dirty": "not a checkout" if dirty is None else str(dirty).lower()}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags
