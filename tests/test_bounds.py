"""Bounded resources: a grid too large is refused before it is made, in one line and with flat
memory, and no more joblib workers start than a sweep has cells or the cores can use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
FAST = ["data=iris_petal", "train.epochs=2", "tracking.plot=false", "tracking.log_model=false",
        "sweep.report=false"]


def env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def run_measured(args: list[str], cwd: Path) -> tuple[int, str, str, int]:
    """``slnn-train args`` from a fresh interpreter whose only child it is: (exit code, stdout,
    stderr, the command's peak resident memory in bytes, from ``getrusage(RUSAGE_CHILDREN)``)."""
    probe = ("import json, resource, subprocess, sys\n"
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
             "print(json.dumps([p.returncode, p.stdout, p.stderr, peak]))\n")
    out = subprocess.run([sys.executable, "-c", probe, str(BIN / "slnn-train"), *args], cwd=cwd,
                         env=env(), capture_output=True, text=True, timeout=600)
    return tuple(json.loads(out.stdout))


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip() and "][HYDRA]" not in ln]


@pytest.mark.slow
def test_a_grid_of_a_billion_cells_is_refused_with_flat_memory(tmp_path):
    code, out, err, peak = run_measured(["-m", "seed=range(1000000000)", "optim.lr=0.1,1", *FAST],
                                        tmp_path)
    assert code == 2, err[-2000:]
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0] == (
        "slnn-train: error: the grid has 2,000,000,000 cells, over the limit of 100,000 "
        "(sweep.max_cells): split it into smaller sweeps (each over a part of seed's "
        "1,000,000,000 values), or raise the limit with sweep.max_cells=2000000000")
    assert peak < 1 << 30, peak  # expanding it took ~24 GB
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store was opened


@pytest.mark.slow
def test_a_raised_limit_lets_a_grid_through_and_a_float_range_is_counted(tmp_path):
    """sweep.max_cells on the command line is the limit; range() over floats counts as Hydra
    expands it (0, 0.25, 0.5, 0.75: 4 values), times 2 seeds."""
    code, out, err, _ = run_measured(["-m", "optim.lr=range(0,1,0.25)", "seed=0,1",
                                      "sweep.max_cells=7", *FAST], tmp_path)
    assert code == 2 and "the grid has 8 cells, over the limit of 7" in err, err[-2000:]
    code, out, err, _ = run_measured(["-m", "optim.lr=range(0.25,1,0.25)", "seed=0,1",
                                      "sweep.max_cells=6", *FAST], tmp_path)
    assert code == 0, err[-2000:]
    assert "6 cells: 0 reused, 6 new" in out


@pytest.mark.slow
def test_workers_are_capped_at_the_cells(tmp_path):
    code, out, err, _ = run_measured(["-m", "seed=0,1", "hydra/launcher=joblib",
                                      "hydra.launcher.n_jobs=6", *FAST], tmp_path)
    assert code == 0, err[-2000:]
    assert "slnn: hydra.launcher.n_jobs=6 lowered to 2 workers (the sweep has 2 cells)" in out
    pids = {json.loads(ln)["pid"] for d in tmp_path.glob("multirun/*/*")
            for ln in (d / "progress.jsonl").read_text().splitlines()}
    assert 1 <= len(pids) <= 2


def test_workers_are_capped_at_a_multiple_of_the_cores(capsys):
    from slnn.sweep.warm import WORKERS_PER_CORE, cap_workers
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

    launcher = JoblibLauncher(n_jobs=1000, backend=None, prefer="processes", require=None,
                              verbose=0, timeout=None, pre_dispatch="2*n_jobs", batch_size="auto",
                              temp_folder=None, max_nbytes=None, mmap_mode="r")
    cap_workers(launcher, 10_000)
    cores = os.cpu_count()
    assert launcher.joblib["n_jobs"] == WORKERS_PER_CORE * cores
    assert capsys.readouterr().out == (
        f"slnn: hydra.launcher.n_jobs=1000 lowered to {WORKERS_PER_CORE * cores} workers "
        f"({WORKERS_PER_CORE} per core on this {cores}-core machine)\n")
    cap_workers(launcher, 10_000)  # already within the cap: nothing said
    assert capsys.readouterr().out == ""
