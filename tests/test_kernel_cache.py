"""Numba's disk cache is pickles: a cache folder anyone else could write is bypassed, never read
(``slnn.core.compiled.codegen.unsafe_folder``, ``_guard_numba_cache``).

    python -m pytest tests/test_kernel_cache.py -m 'not slow'     # the folder check alone
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from slnn.core.compiled.codegen import unsafe_folder

SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")


def folder(path: Path, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def test_a_folder_only_this_user_can_write_is_safe(tmp_path):
    os.chmod(tmp_path, 0o700)
    assert unsafe_folder(folder(tmp_path / "mine", 0o700)) is None
    assert unsafe_folder(folder(tmp_path / "mine" / "read", 0o755)) is None
    assert unsafe_folder(tmp_path / "mine" / "not" / "made" / "yet") is None
    # under a sticky folder open to all (as /tmp): nobody else can rename or replace it
    sticky = folder(tmp_path / "sticky", 0o1777)
    assert unsafe_folder(folder(sticky / "mine", 0o700)) is None


@pytest.mark.parametrize("mode, who", [(0o775, "its group"), (0o757, "everyone"),
                                       (0o777, "its group and everyone"),
                                       (0o1777, "its group and everyone")])
def test_a_folder_others_may_write_is_named(tmp_path, mode, who):
    os.chmod(tmp_path, 0o700)
    shared = folder(tmp_path / "shared", mode)
    assert unsafe_folder(shared) == (shared, f"{shared} may be written by {who}")
    if not mode & 0o1000:  # above the cache: whoever may write it may replace what is below
        inner = folder(shared / "kernels" / "__pycache__", 0o700)
        assert unsafe_folder(inner) == (shared, f"{shared} may be written by {who}")
        assert unsafe_folder(shared / "not" / "made")[0] == shared
    link = tmp_path / "link"  # a private-looking path that leads there
    link.symlink_to(shared)
    assert unsafe_folder(link)[0] == shared


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="giving a folder to another user needs root")
def test_a_folder_another_user_owns_is_named(tmp_path):
    os.chmod(tmp_path, 0o700)
    theirs = folder(tmp_path / "theirs", 0o755)
    os.chown(theirs, 65534, 65534)
    assert unsafe_folder(folder(theirs / "kernels", 0o700)) == (
        theirs, f"{theirs} is owned by another user (uid 65534)")


class Planted:
    """What someone with write access to the cache could leave in an index: loading it makes
    the folder ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker, 0o777, True)  # exist_ok: every index runs it


def train(cache: Path, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "NUMBA_CACHE_DIR")}
    env.update(SLNN_CACHE_DIR=str(cache), **extra)
    return subprocess.run(
        [str(SLNN_TRAIN), "data=iris_petal", "train.epochs=2", "train.backend=compiled",
         "update=input", "model.activation=tanh", "tracking.plot=false",
         "tracking.log_model=false", f"tracking.uri=sqlite:///{cwd}/mlflow.db"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_planted_index_in_a_shared_cache_is_never_loaded(tmp_path):
    """A real run fills a private cache; its index files are replaced by a pickle that runs code.
    With the cache folder open to everyone, the run bypasses the cache: the code does not run,
    one line names the folder and the fix, the run succeeds. Made private again, the same
    files are read (the code runs): so the bypass is what kept them from running."""
    os.chmod(tmp_path, 0o700)
    cache = folder(tmp_path / "cache", 0o700)
    first = train(cache, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert str(cache) not in first.stderr
    pycache = cache / "kernels" / "__pycache__"
    indexes = sorted(pycache.glob("*.nbi"))
    assert indexes, sorted(p.name for p in cache.rglob("*"))
    marker = tmp_path / "the-planted-code-ran"
    for index in indexes:
        index.write_bytes(pickle.dumps(Planted(str(marker))))

    os.chmod(cache, 0o777)
    bypassed = train(cache, tmp_path)
    assert bypassed.returncode == 0, bypassed.stderr[-3000:]
    assert not marker.exists()
    lines = [line for line in bypassed.stderr.splitlines() if "not safe to load" in line]
    assert len(lines) == 1, bypassed.stderr[-3000:]  # once per folder, not per function
    assert lines[0].startswith(f"slnn: Numba's cache {pycache} is not safe to load ({cache} may "
                               "be written by its group and everyone;")
    assert f"fix: chmod go-w {cache} " in lines[0] and "NUMBA_CACHE_DIR" in lines[0]
    assert all(i.read_bytes() == pickle.dumps(Planted(str(marker))) for i in indexes)  # not saved

    os.chmod(cache, 0o700)
    trusted = train(cache, tmp_path)
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert marker.is_dir()  # the planted index was read this time


@pytest.mark.slow
def test_slnn_makes_its_cache_private(tmp_path):
    os.chmod(tmp_path, 0o755)
    old = os.umask(0o002)
    try:
        proc = train(tmp_path / "new" / "cache", tmp_path)
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cache = tmp_path / "new" / "cache"
    for made in (tmp_path / "new", cache, cache / "kernels", cache / "kernels" / "__pycache__"):
        assert made.stat().st_mode & 0o777 == 0o700, oct(made.stat().st_mode)
    assert f"{tmp_path}/new" not in proc.stderr


@pytest.mark.slow
def test_a_shared_numba_cache_dir_is_bypassed_for_every_function(tmp_path):
    """NUMBA_CACHE_DIR holds the cache of every compiled function, the activation's and the
    rule's as well as the kernels': all of it is bypassed when others may write it."""
    os.chmod(tmp_path, 0o700)
    shared = folder(tmp_path / "numba", 0o777)
    proc = train(folder(tmp_path / "cache", 0o700), tmp_path, NUMBA_CACHE_DIR=str(shared))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "not safe to load" in line]
    # one line per folder: the kernels' and the activation's and rules' modules' (own subfolders)
    assert len(lines) >= 2, proc.stderr[-3000:]
    assert all(f"Numba's cache {shared}/" in line and f"fix: chmod go-w {shared} " in line
               for line in lines), lines
    assert not list(shared.rglob("*.nbi")) and not list(shared.rglob("*.nbc"))
