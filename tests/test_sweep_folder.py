"""One grid per sweep folder (``slnn.sweep.folder``): another grid given the same
``hydra.sweep.dir`` is refused in one line, exit 2, before it touches the folder or the store;
the same grid resumes there.

    python -m pytest tests/test_sweep_folder.py -m 'not slow'     # the claim alone
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from slnn.sweep import folder

SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")
FAST = ["data=iris_petal", "train.epochs=3", "tracking.plot=false", "tracking.log_model=false",
        "sweep.report=false"]


def files(root: Path) -> dict[str, str]:
    """Every file under ``root`` and the sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def sweep(tmp_path: Path, folder_name: str, *grid: str, popen: bool = False):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [str(SLNN_TRAIN), "-m", *grid, *FAST, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
           f"hydra.sweep.dir={tmp_path}/{folder_name}"]
    if popen:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def parents(tmp_path: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return client.search_runs(["1"], "tags.`slnn.sweep` = 'true'")


# --- the claim on its own --------------------------------------------------------------------

def test_a_folder_is_one_grids(tmp_path, capsys):
    first = folder.grid_id(["b", "a"], "sqlite:///x.db", "slnn")
    assert first == folder.grid_id(["a", "b", "a"], "sqlite:///x.db", "slnn")  # a set of cells
    assert first != folder.grid_id(["a", "b"], "sqlite:///y.db", "slnn")  # another store
    assert first != folder.grid_id(["a", "b"], "sqlite:///x.db", "other")  # another experiment
    # a password is not part of what the grid is (and is never written: the id is a digest)
    assert (folder.grid_id(["a"], "http://u:one@h:1", "e")
            == folder.grid_id(["a"], "http://u:two@h:1", "e"))

    m = tmp_path / "m"
    folder.claim(m, first, "slnn-train -m seed=0,1", 2)
    folder.name(m, first, "grid-1", "abc123")
    folder.claim(m, first, "slnn-train -m seed=0,1 sweep.force=true", 2)  # the same grid: resumes
    (m / folder.STATE).write_text("{}")  # it dealt its cells
    before = files(m)
    with pytest.raises(SystemExit) as e:
        folder.claim(m, "another", "slnn-train -m seed=5", 1)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("slnn-train: error: the sweep folder ")
    assert "holds another grid's sweep (sweep grid-1, 2 cells, parent run abc123, " \
           "slnn-train -m seed=0,1)" in err
    assert "hydra.sweep.dir=<new folder>" in err and "remove that folder" in err
    assert files(m) == before


def test_a_claim_left_by_a_sweep_that_never_dealt_a_cell_is_free(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "from slnn.tracking.liveness import "
                           "process_owner; print(process_owner())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    m = tmp_path / "m"
    m.mkdir()
    (m / folder.CLAIM).write_text(json.dumps({"grid": "old", "owner": dead}))
    folder.claim(m, "new", "slnn-train -m seed=1", 1)  # its process is gone, no cell dealt
    assert json.loads((m / folder.CLAIM).read_text())["grid"] == "new"
    # the same, but the sweep had dealt its cells: the folder is still its
    (m / folder.CLAIM).write_text(json.dumps({"grid": "old", "owner": dead}))
    (m / folder.STATE).write_text("{}")
    with pytest.raises(SystemExit):
        folder.claim(m, "new", "slnn-train -m seed=1", 1)


# --- real sweeps -----------------------------------------------------------------------------

@pytest.mark.slow
def test_another_grid_in_the_same_folder_is_refused_before_anything_and_the_first_resumes(
        tmp_path):
    first = sweep(tmp_path, "m", "seed=1,2")
    assert first.returncode == 0, first.stderr[-3000:]
    [parent] = parents(tmp_path)
    before = files(tmp_path / "m")
    assert "progress.jsonl" in before and "slnn_sweep.json" in before

    other = sweep(tmp_path, "m", "seed=3,4,5", "optim.lr=0.1,0.2")
    assert other.returncode == 2, other.stderr[-3000:]
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1, other.stderr
    assert re.match(r"slnn-train: error: the sweep folder m holds another grid's sweep \(sweep "
                    rf"grid-\d+-\d+, 2 cells, parent run {parent.info.run_id}, slnn-train -m "
                    r"seed=1,2 ", lines[0]), lines[0]
    assert "hydra.sweep.dir=<new folder>" in lines[0] and "or remove that folder" in lines[0]
    assert other.stdout == ""  # no cell, no plan
    assert files(tmp_path / "m") == before  # the first sweep's files untouched
    assert [p.info.run_id for p in parents(tmp_path)] == [parent.info.run_id]  # no parent opened

    again = sweep(tmp_path, "m", "seed=1,2")  # the same grid resumes in its folder
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 cells: 2 reused, 0 new; 0 to run" in again.stdout


@pytest.mark.slow
def test_two_grids_started_together_on_one_folder_one_runs_whole_the_other_is_refused(tmp_path):
    """The case the issue met ('14 not run', rc 1): the second sweep cleared the first's ledger
    and chunks while it ran. Now the second stops before the first could miss anything."""
    first = sweep(tmp_path, "m", "seed=range(6)", "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=2", popen=True)
    try:
        second = sweep(tmp_path, "m", "seed=10,11,12", "optim.lr=0.1,0.2")
    finally:
        out, err = first.communicate(timeout=600)
    # either may claim the folder first; exactly one runs, whole, and the other is refused
    results = sorted([(first.returncode, out, err), (second.returncode, second.stdout,
                                                     second.stderr)], key=lambda r: r[0])
    (ok, ok_out, ok_err), (refused, _, refused_err) = results
    assert (ok, refused) == (0, 2), (ok_err[-2000:], refused_err[-2000:])
    assert "holds another grid's sweep" in refused_err and len(refused_err.splitlines()) == 1
    assert re.search(r"(\d+) finished, 0 failed, .* \(of \1 cells\)", ok_out), ok_out[-2000:]
    assert "not run" not in ok_out + ok_err
    assert len(parents(tmp_path)) == 1
