"""How many runs per second slnn's sweeper gets through the guide_vs_correct study, end to end,
against a plain Hydra + MLflow script over the same grid and against itself with one worker.

    .venv/bin/python benchmarks/bench_sweep.py                  # full: 450 cells per slnn sweep,
                                                                # the plain script on seed 0 (90)
    .venv/bin/python benchmarks/bench_sweep.py --quick          # seed=0 optim.lr=0.1: 30 cells
    .venv/bin/python benchmarks/bench_sweep.py --plain-seeds 5  # the plain script on all 450 too
    .venv/bin/python benchmarks/bench_sweep.py --keep           # keep the temp folders

A benchmark, not a test: it prints figures and ratios and asserts nothing about time. Each goal is
printed with PASS or MISS.

Every variant runs as a subprocess in its own fresh temp folder (its working directory) with a
fresh SQLite store there, and is timed from process start to exit, so Python, Hydra and the
store's creation count as a user would feel them:

1. slnn, 1 worker:  ``slnn-train -m +experiment=guide_vs_correct hydra/launcher=joblib
   hydra.launcher.n_jobs=1 sweep.report=false tracking.uri=sqlite:///<dir>/mlflow.db
   hydra.sweep.dir=<dir>/multirun`` (joblib runs one job at a time in the process itself);
2. slnn, 2 workers: the same with ``hydra.launcher.n_jobs=2`` (two loky worker processes);
3. slnn, Hydra's basic launcher (no joblib), for information; not in ``--quick``;
4. the plain baseline, ``benchmarks/plain_sweep/plain_sweep.py``: ``@hydra.main``, Hydra's basic
   sweeper and launcher, ``mlflow.start_run`` per job and one ``mlflow.log_metrics`` call per
   epoch, around slnn's own trainer. It costs seconds per cell, so the full run gives it one seed
   of the grid (90 cells): every seed has the same mix of data sets, rules, activations and rates,
   so its runs per second compare with slnn's over all five.

runs/s = finished runs in the store / wall time. For the slnn sweeps the ledger
(``<sweep dir>/progress.jsonl``: per cell ``seconds``, ``train_seconds``, ``pid``, ``time``) splits
the worker time (wall x workers) into training, the rest of each cell (MLflow, data, config) and
the rest of the process (Python, Hydra, the store's creation, the sweep's preparation, launching
workers and chunks, shutting down). Goals: slnn with 2 workers at least 10x the plain script's
runs per second, and 2 workers at least 1.6x 1 worker on this 2-core machine.

An untimed warm-up trains every (activation, rule) pair once first (slnn and the plain script
load the same Numba kernel cache), so no figure includes compiling. The machine may be shared:
the load average is printed at the start, before each variant and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from math import prod
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "slnn" / "conf" / "experiment" / "guide_vs_correct.yaml"
PLAIN = ROOT / "benchmarks" / "plain_sweep" / "plain_sweep.py"
BIN = Path(sys.executable).parent
SLNN_TRAIN = (str(BIN / "slnn-train") if (BIN / "slnn-train").exists()
              else shutil.which("slnn-train"))

GOAL_VS_PLAIN = 15.0  # slnn (2 workers) runs/s over the plain script's (issue #13)
GOAL_2W = 1.7  # 2 workers over 1
GOAL_BEFORE = {"existing": 3.0, "fresh": 5.0}  # s before the first cell starts, 2 workers
GOAL_BIG_COMPOSE = 10.0  # s to compose and check a 10,000-cell grid
GOAL_BIG_PER_CELL = 1.2  # a 10,000-cell grid's per-cell cost over the 450-cell grid's

# the study's grid keys -> the plain script's flat keys
PLAIN_KEY = {"data": "data", "update": "update", "model.activation": "activation",
             "optim.lr": "lr", "seed": "seed"}
QUICK = {"seed": "0", "optim.lr": "0.1"}  # replaces the study's values for these keys
# the 450-cell grid issue #13 measured (the study had 5 seeds and 3 rates then): --grid450
GRID450 = {"seed": "range(5)", "optim.lr": "0.01,0.1,1.0"}

# fills the Numba kernel cache for every (activation, rule) pair, and the page cache with the
# modules every variant imports
WARM_UP = """
import sys, numpy as np
import mlflow.pyfunc, sklearn.datasets, slnn.app.cli
from slnn.core.data import load_dataset
from slnn.core.trainer import train
data = load_dataset("iris_petal")  # 2 + 1 = 3 outputs: both rules apply
pairs = [(a, r) for a in sys.argv[1].split(",") for r in sys.argv[2].split(",")]
for a, r in pairs:
    out = train(data, activation=a, rule=r, epochs=1, rng=np.random.default_rng(0)).outcome
    assert out != "shape_mismatch", (a, r)
print(f"{len(pairs)} (activation, rule) pairs trained once")
"""


# --- before the first cell ---

# an empty, migrated store for the "existing store" probes (made in its own process, which
# checkpoints SQLite's WAL when it exits, so a copy of the file is the whole store)
MAKE_STORE = """
import sys
from slnn.tracking.store import client_for, ensure_experiment
client = client_for(sys.argv[1])
ensure_experiment(client, "slnn")
"""


def first_cell_probe(cmd: list[str], folder: Path, env: dict, timeout: float = 300.0) -> dict:
    """Start a sweep, wait until its first cell is in the ledger, then interrupt it (SIGINT to
    its process group, as Ctrl-C would). Returns the seconds from process start to that cell's
    start, and to the ledger line."""
    import signal

    path = folder / "multirun" / "progress.jsonl"
    load = os.getloadavg()[0]
    with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=err,
                                start_new_session=True)
        first = None
        try:
            while time.time() - t0 < timeout and proc.poll() is None:
                if path.exists():
                    lines = [ln for ln in path.read_text().splitlines(keepends=True)
                             if ln.endswith("\n")]
                    if lines:
                        first = json.loads(lines[0])
                        break
                time.sleep(0.02)
            seen = time.time() - t0
        finally:
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=60)
            except (ProcessLookupError, PermissionError):
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if first is None:
        tail = (folder / "stderr.txt").read_text().strip().splitlines()[-5:]
        print(f"  !! no cell started within {timeout:.0f} s; the end of its stderr:", file=sys.stderr)
        for line in tail:
            print(f"     {line}", file=sys.stderr)
        return {"before": float("nan"), "seen": float("nan"), "load": load}
    return {"before": first["time"] - first["seconds"] - t0, "seen": seen, "load": load}


# what any process that records into an MLflow SQLite store from slnn's command line pays before
# it can touch the store: Python, slnn's CLI (Hydra, OmegaConf, NumPy, pandas), MLflow and its SQL
# store; the floor under "before the first cell", measured in the same rounds
IMPORT_FLOOR = "import slnn.app.cli, mlflow, mlflow.store.tracking.sqlalchemy_store"


def import_floor(env: dict) -> float:
    t0 = time.time()
    subprocess.run([sys.executable, "-c", IMPORT_FLOOR], env=env, check=True)
    return time.time() - t0


def bench_startup(slnn_cmd, fresh, env: dict, cells: int, rounds: int) -> dict:
    """Seconds before the first cell starts: 1 and 2 workers, on a fresh store and on an existing
    one (a copy of an empty migrated store with the experiment), interleaved rounds."""
    template = fresh("store-template")
    made = subprocess.run([sys.executable, "-c", MAKE_STORE, f"sqlite:///{template}/mlflow.db"],
                          env=env, capture_output=True, text=True)
    if made.returncode != 0:
        sys.exit(f"bench_sweep: making the store failed:\n{made.stderr.strip()[-2000:]}")
    joblib = ["hydra/launcher=joblib"]
    probes = [("1 worker, fresh store", "fresh", joblib + ["hydra.launcher.n_jobs=1"]),
              ("1 worker, existing store", "existing", joblib + ["hydra.launcher.n_jobs=1"]),
              ("2 workers, fresh store", "fresh", joblib + ["hydra.launcher.n_jobs=2"]),
              ("2 workers, existing store", "existing", joblib + ["hydra.launcher.n_jobs=2"])]
    found: dict[str, list[dict]] = {p[0]: [] for p in probes}
    floor: list[float] = []
    print(f"before the first cell ({cells} cells; each sweep interrupted once its first cell is "
          f"in the ledger), {rounds} round(s), load {loadavg()} ...", flush=True)
    for r in range(rounds):
        floor.append(import_floor(env))
        for label, store, launcher in probes:
            folder = fresh(f"probe-{r}-{label.replace(' ', '_').replace(',', '')}")
            if store == "existing":
                shutil.copyfile(template / "mlflow.db", folder / "mlflow.db")
            found[label].append(first_cell_probe(slnn_cmd(folder, launcher), folder, env))
    med = {k: statistics.median(x["before"] for x in v) for k, v in found.items()}
    print(f"{'':<28} {'s before the 1st cell':>22} {'(each round)':>20} {'load':>6}")
    for label, v in found.items():
        each = " ".join(f"{x['before']:.1f}" for x in v)
        print(f"{label:<28} {med[label]:>22.1f} {each:>20} {statistics.median(x['load'] for x in v):>6.2f}")
    low = statistics.median(floor)
    print(f"{'the import floor [info]':<28} {low:>22.1f} {' '.join(f'{x:.1f}' for x in floor):>20}"
          f"   (a process doing only: {IMPORT_FLOOR})")
    for store, goal in GOAL_BEFORE.items():
        got = med[f"2 workers, {store} store"]
        print(f"  2 workers, {store} store: {got:.1f} s   goal <= {goal:g} s   "
              f"{verdict(goal, got)}   ({got / low:.1f}x the import floor)")
    return med


# --- big grids ---

# composes and checks one grid in a fresh process, as the sweeper does before any run starts;
# prints JSON: cells, wall and CPU seconds, and the growth of the peak RSS
COMPOSE = """
import json, resource, sys, time
import hydra, slnn.app.schema
from hydra import compose
from slnn.sweep import grid
args, shortcut = json.loads(sys.argv[1]), sys.argv[2] == "shortcut"
with hydra.initialize_config_module(slnn.app.schema.CONF_PACKAGE, version_base="1.3"):
    config = compose("config", overrides=args[:1], return_hydra_config=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t, c = time.perf_counter(), time.process_time()
    cells = grid.enumerate_cells(config, args)
    out = grid.compose_cells("config", cells, shortcut=shortcut)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"cells": len(out), "seconds": wall, "cpu": cpu, "rss_mb": (rss - rss0) / 1024}))
"""


def grid_args(seeds: int, small: bool) -> list[str]:
    """The study's grid: the 450-cell one of issue #13 (3 rates, 5 seeds), or all 7 rates with
    ``seeds`` seeds (48: 10,080 cells)."""
    extra = [f"{k}={v}" for k, v in GRID450.items()] if small else [f"seed=range({seeds})"]
    return ["+experiment=guide_vs_correct", *extra]


def bench_big_compose(big_seeds: int, rounds: int) -> dict:
    """Composing and checking the 450-cell grid (also by the general path, for comparison) and a
    big one, each in a fresh process, interleaved rounds."""
    env = os.environ.copy()
    variants = [("450 cells, general path (copy + update per cell)", grid_args(5, True), "general"),
                ("450 cells", grid_args(5, True), "shortcut"),
                (f"{big_seeds * 210} cells", grid_args(big_seeds, False), "shortcut")]
    found: dict[str, list[dict]] = {v[0]: [] for v in variants}
    print(f"composing and checking the guide_vs_correct grid, {rounds} interleaved round(s), "
          f"load {loadavg()} ...", flush=True)
    for _ in range(rounds):
        for label, args, how in variants:
            p = subprocess.run([sys.executable, "-c", COMPOSE, json.dumps(args), how], env=env,
                               capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"bench_sweep: composing failed:\n{p.stderr.strip()[-2000:]}")
            found[label].append(json.loads(p.stdout.strip().splitlines()[-1]))
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("cells", "seconds", "cpu", "rss_mb")}
           for k, v in found.items()}
    print(f"{'grid':<50} {'cells':>6} {'wall s':>7} {'CPU s':>6} {'ms/cell':>8} {'+MB':>6} "
          f"{'KB/cell':>8}")
    for label, m in med.items():
        print(f"{label:<50} {m['cells']:>6.0f} {m['seconds']:>7.2f} {m['cpu']:>6.2f} "
              f"{m['seconds'] / m['cells'] * 1e3:>8.2f} {m['rss_mb']:>6.1f} "
              f"{m['rss_mb'] * 1024 / m['cells']:>8.1f}")
    old, new, big = (med[v[0]] for v in variants)
    print(f"  450 cells, general path vs shortcut   {old['seconds'] / new['seconds']:6.2f}x  "
          "(for information)")
    print(f"  {big['cells']:.0f} cells compose in           {big['seconds']:6.2f} s   goal < "
          f"{GOAL_BIG_COMPOSE:g} s   {verdict(GOAL_BIG_COMPOSE, big['seconds'])}   "
          f"(CPU {big['cpu']:.2f} s)")
    return med


def bench_big_run(slnn_cmd, fresh, env: dict, big_seeds: int, epochs: int) -> None:
    """The 450-cell grid and the big one run for real, short runs (``train.epochs``), 2 workers,
    fresh stores: per-cell cost (wall / cells) and the sweep's peak memory."""
    joblib = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"train.epochs={epochs}"]
    rows = []
    for label, args in (("450 cells", grid_args(5, True)),
                        (f"{big_seeds * 210} cells", grid_args(big_seeds, False))):
        folder = fresh(f"big-{label.split()[0]}")
        cmd = slnn_cmd(folder, joblib, args)
        print(f"running {label}, {epochs} epochs each, 2 workers, load {loadavg()} ...", flush=True)
        load = os.getloadavg()[0]
        with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
            t0, p0 = time.time(), time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)  # its rusage: the peak RSS of its tree
            wall = time.perf_counter() - p0
        entries = ledger(folder)
        runs = len(store_runs(folder / "mlflow.db", children_only=True))
        if status != 0:
            print(f"  !! exit status {status}; see {folder}/stderr.txt", file=sys.stderr)
        first = min((e["time"] - e["seconds"] for e in entries), default=float("nan"))
        rows.append({"label": label, "runs": runs, "wall": wall, "rss": usage.ru_maxrss / 1024,
                     "cell": statistics.median(e["seconds"] for e in entries) if entries else 0,
                     "before": first - t0, "load": load})
    print(f"{'grid':<14} {'runs':>6} {'wall s':>8} {'s/cell':>7} {'median cell s':>14} "
          f"{'before 1st s':>13} {'peak MB':>8} {'load':>6}")
    for r in rows:
        print(f"{r['label']:<14} {r['runs']:>6} {r['wall']:>8.1f} {r['wall'] / max(r['runs'], 1):>7.3f} "
              f"{r['cell']:>14.3f} {r['before']:>13.1f} {r['rss']:>8.0f} {r['load']:>6.2f}")
    small, big = rows
    ratio = (big["wall"] / max(big["runs"], 1)) / (small["wall"] / max(small["runs"], 1))
    print(f"  per-cell cost, {big['label']} vs 450 cells: {ratio:.2f}x   goal <= "
          f"{GOAL_BIG_PER_CELL:g}x   {verdict(GOAL_BIG_PER_CELL, ratio)}")
    print(f"  peak memory (the largest process of the sweep): {small['rss']:.0f} MB vs "
          f"{big['rss']:.0f} MB")


# --- the grid ---

def study_grid() -> tuple[dict[str, str], int]:
    """The study's sweeper params (key -> "a,b,c" or "range(n)") and its epochs."""
    from omegaconf import OmegaConf

    study = OmegaConf.load(STUDY)
    params = {k: str(v) for k, v in study.hydra.sweeper.params.items()}
    return params, int(study.train.epochs)


def n_values(v: str) -> int:
    m = re.fullmatch(r"range\((\d+)\)", v.strip())
    return int(m.group(1)) if m else len(v.split(","))


def n_cells(grid: dict[str, str]) -> int:
    return prod(n_values(v) for v in grid.values())


def seeds_value(k: int) -> str:
    return "0" if k == 1 else f"range({k})"


# --- running and reading a variant ---

def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_variant(name: str, cmd: list[str], folder: Path, env: dict) -> dict:
    """Run ``cmd`` in ``folder``, timed from process start to exit; output goes to files there."""
    load = os.getloadavg()[0]
    with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
        t0 = time.time()
        p0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=folder, env=env, stdout=out, stderr=err).returncode
        wall = time.perf_counter() - p0
        t1 = time.time()
    if rc != 0:
        tail = (folder / "stderr.txt").read_text().strip().splitlines()[-5:]
        print(f"  !! {name} exited with {rc}; the end of its stderr:", file=sys.stderr)
        for line in tail:
            print(f"     {line}", file=sys.stderr)
    return {"name": name, "folder": folder, "wall": wall, "t0": t0, "t1": t1, "rc": rc,
            "load": load}


def store_runs(db: Path, children_only: bool) -> list[tuple[str, int, int]]:
    """(name, start ms, end ms) of every FINISHED run; ``children_only`` leaves out parent runs."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        q = "SELECT r.name, r.start_time, r.end_time FROM runs r WHERE r.status = 'FINISHED'"
        if children_only:
            q += (" AND EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid"
                  " AND t.key = 'mlflow.parentRunId')")
        return con.execute(q).fetchall()
    finally:
        con.close()


def ledger(folder: Path) -> list[dict]:
    path = folder / "multirun" / "progress.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def slnn_shares(v: dict, workers: int) -> dict:
    """Worker time (wall x workers) split by the ledger into training, the rest of each cell and
    the rest of the process (before the first cell, after the last one, and between cells)."""
    entries = ledger(v["folder"])
    if not entries:
        return {}
    cap = v["wall"] * workers
    cell = sum(e["seconds"] for e in entries)
    trained = sum(e["train_seconds"] for e in entries)
    first = min(e["time"] - e["seconds"] for e in entries)
    last = max(e["time"] for e in entries)
    before, after = max(first - v["t0"], 0.0), max(v["t1"] - last, 0.0)
    # a process's first cell also pays its imports and kernel loads: how much above a typical cell
    typical = statistics.median(e["seconds"] for e in entries)
    firsts: dict[int, dict] = {}
    for e in sorted(entries, key=lambda e: e["time"]):
        firsts.setdefault(e["pid"], e)
    return {"train": trained / cap, "cell_rest": (cell - trained) / cap,
            "process": 1 - cell / cap, "before": before, "after": after,
            "gaps": cap - cell - workers * (before + after),
            "per_cell": cell / len(entries), "per_cell_train": trained / len(entries),
            "median_cell": typical, "pids": len(firsts),
            "first_extra": sum(max(e["seconds"] - typical, 0.0) for e in firsts.values()),
            "train_by_name": {e["name"]: e["train_seconds"] for e in entries}}


# --- the report ---

def verdict(ratio: float, goal: float) -> str:
    return "PASS" if ratio >= goal else "MISS"


def slnn_state() -> str:
    """The commit measured, and whether slnn's files differ from it (work may be under way)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "slnn",
                                "conf", "experiments", "hydra_plugins"],
                               capture_output=True, text=True, check=True).stdout.split("\n")
        dirty = [ln[3:] for ln in dirty if ln.strip()]
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return head + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else " (clean)")


def print_shares(results: dict, plain_runs: list) -> None:
    slnn_keys = [k for k in ("slnn-1w", "slnn-2w", "slnn-basic")
                 if results.get(k, {}).get("shares")]
    print("where the time goes: shares of wall x workers (slnn: each sweep's progress.jsonl)")
    print(f"{'variant':<34} {'training':>9} {'MLflow+data+config':>19} {'start-up+rest':>14}")
    for key in slnn_keys:
        s = results[key]["shares"]
        print(f"{results[key]['name']:<34} {s['train']:>9.1%} {s['cell_rest']:>19.1%} "
              f"{s['process']:>14.1%}")
    p = results["plain"]
    in_runs = sum((end - start) / 1000 for _, start, end in plain_runs if start and end)
    trained_by_name = next((results[k]["shares"]["train_by_name"] for k in slnn_keys
                            if k != "slnn-2w"), {})
    matched = [trained_by_name[n] for n, _, _ in plain_runs if n in trained_by_name]
    if p["wall"] > 0 and plain_runs:
        if len(matched) == len(plain_runs):
            tr = f"{sum(matched) / p['wall']:>9.1%}"
            rest = f"{(in_runs - sum(matched)) / p['wall']:>19.1%}"
        else:
            tr, rest = f"{'n/a':>9}", f"{in_runs / p['wall']:>19.1%}"
        print(f"{'plain Hydra + MLflow (*)':<34} {tr} {rest} {1 - in_runs / p['wall']:>14.1%}")
        print("  (*) no ledger: its runs' spans (start_run to end_run) come from the store, and")
        print("      its training is slnn's train_seconds for the same cells (the same trainer)")
    print()
    print("start-up+rest, in seconds: before the first cell (Python, Hydra, composing and checking")
    print("the grid, the store's creation, the parent run), after the last one (summary, closing")
    print("the parent run, workers' and the interpreter's shutdown), and gaps between cells")
    print("(launching workers and chunks); 1st cells: what the first cell of each process costs")
    print("above the median cell (imports, kernel loads), counted within the cells' shares above")
    print(f"{'variant':<34} {'s/cell':>7} {'median':>7} {'train':>7} {'before':>7} {'after':>7} "
          f"{'gaps':>7} {'1st cells':>10}")
    for key in slnn_keys:
        s = results[key]["shares"]
        print(f"{results[key]['name']:<34} {s['per_cell']:>7.3f} {s['median_cell']:>7.3f} "
              f"{s['per_cell_train']:>7.3f} {s['before']:>7.1f} {s['after']:>7.1f} "
              f"{s['gaps']:>7.1f} {s['first_extra']:>+10.1f}   "
              f"({s['pids']} process{'es' if s['pids'] > 1 else ''}; gaps in worker-s)")
    if plain_runs:
        spans = sorted((end - start) / 1000 for _, start, end in plain_runs if start and end)
        train = f"{sum(matched) / len(matched):>7.3f}" if matched else f"{'n/a':>7}"
        print(f"{'plain Hydra + MLflow (*)':<34} {in_runs / len(plain_runs):>7.3f} "
              f"{statistics.median(spans):>7.3f} {train}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="seed=0 optim.lr=0.1 (30 cells), a 6-cell plain subset, no basic launcher")
    ap.add_argument("--plain-seeds", type=int, default=1, metavar="K",
                    help="seeds the plain script runs (full run only; 5 = all 450 cells)")
    ap.add_argument("--no-basic", action="store_true", help="skip slnn with Hydra's basic launcher")
    ap.add_argument("--keep", action="store_true", help="keep the temp folders")
    ap.add_argument("--grid450", action="store_true",
                    help=f"the 450-cell grid issue #13 measured ({' '.join(f'{k}={v}' for k, v in GRID450.items())})"
                         " instead of the whole study (4200 cells)")
    ap.add_argument("--startup", type=int, default=1, metavar="ROUNDS",
                    help="rounds of the before-the-first-cell probes (0: none)")
    ap.add_argument("--skip-sweeps", action="store_true",
                    help="only the before-the-first-cell probes: no whole sweeps, no plain script")
    ap.add_argument("--big", type=int, default=0, metavar="SEEDS",
                    help="only the big-grid figures: compose and check the 450-cell grid against "
                         "SEEDS x 210 cells (48: 10,080), each in a fresh process; no runs unless "
                         "--big-run")
    ap.add_argument("--big-rounds", type=int, default=1, metavar="N",
                    help="interleaved rounds for --big (medians)")
    ap.add_argument("--big-run", action="store_true",
                    help="with --big: also run both grids as sweeps of short runs (2 workers)")
    ap.add_argument("--big-epochs", type=int, default=5, metavar="E",
                    help="train.epochs of each --big-run cell")
    args = ap.parse_args()
    if SLNN_TRAIN is None:
        sys.exit("bench_sweep: slnn-train not found: install slnn (pip install -e .) in this venv")

    from importlib.metadata import version

    grid, epochs = study_grid()
    slnn_extra: list[str] = []
    if args.grid450 and not args.quick:
        grid = {**grid, **GRID450}
        slnn_extra = [f"{k}={v}" for k, v in GRID450.items()]
    if args.quick:
        grid = {**grid, **QUICK}
        slnn_extra = [f"{k}={v}" for k, v in QUICK.items()]
        # every data set and rule of the quick grid, so shape_mismatch keeps its share
        plain_grid = {**grid, "model.activation": "sigmoid"}
        plain_what = "the quick grid's sigmoid cells"
    else:
        k = max(1, min(args.plain_seeds, n_values(grid["seed"])))
        plain_grid = {**grid, "seed": seeds_value(k)}
        plain_what = ("the whole grid" if k == n_values(grid["seed"])
                      else f"seed={seeds_value(k)} only")
    cells, plain_cells = n_cells(grid), n_cells(plain_grid)
    plain_args = [f"{PLAIN_KEY[k]}={v}" for k, v in plain_grid.items()]

    env = os.environ.copy()
    env.pop("MLFLOW_TRACKING_URI", None)  # it would win over tracking.uri
    base = Path(tempfile.mkdtemp(prefix="slnn-bench-sweep-"))

    def fresh(name: str) -> Path:
        folder = base / name
        folder.mkdir()
        return folder

    def slnn_cmd(folder: Path, launcher: list[str], grid_args: list[str] | None = None) -> list[str]:
        grid_args = ["+experiment=guide_vs_correct", *slnn_extra] if grid_args is None else grid_args
        return [SLNN_TRAIN, "-m", *grid_args, *launcher, "sweep.report=false",
                f"tracking.uri=sqlite:///{folder}/mlflow.db", f"hydra.sweep.dir={folder}/multirun"]

    def plain_cmd(folder: Path) -> list[str]:
        return [sys.executable, str(PLAIN), "-m", *plain_args, f"epochs={epochs}",
                f"tracking_uri=sqlite:///{folder}/mlflow.db", f"hydra.sweep.dir={folder}/multirun"]

    print(f"bench_sweep: {'quick' if args.quick else 'full'} run on {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, hydra-core "
          f"{version('hydra-core')}, mlflow {version('mlflow')}, numba {version('numba')}")
    print(f"  slnn at {slnn_state()}")
    print(f"  load average at start: {loadavg()}")
    if args.big:
        print(f"  big grids: 450 cells ({' '.join(grid_args(5, True)[1:])}) and {args.big * 210} "
              f"cells ({' '.join(grid_args(args.big, False)[1:])})"
              + (f", run with train.epochs={args.big_epochs}" if args.big_run else ""))
    else:
        print(f"  slnn grid: {cells} cells (guide_vs_correct"
              f"{', ' + ' '.join(slnn_extra) if slnn_extra else ''}), {epochs} epochs each")
        print(f"  plain grid: {plain_cells} cells ({plain_what}): {' '.join(plain_args)}")
    print(f"  temp folders under {base}")
    print()

    t = time.perf_counter()
    warm = subprocess.run([sys.executable, "-c", WARM_UP, grid["model.activation"],
                           grid["update"]], env=env, capture_output=True, text=True)
    if warm.returncode != 0:
        sys.exit(f"bench_sweep: the warm-up failed:\n{warm.stderr.strip()[-2000:]}")
    print(f"warm-up (not in any figure): {warm.stdout.strip()}, {time.perf_counter() - t:.1f} s")
    print()

    def done() -> None:
        print(f"load average at end: {loadavg()}")
        if args.keep:
            print(f"kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    if args.big:
        bench_big_compose(args.big, args.big_rounds)
        print()
        if args.big_run:
            bench_big_run(slnn_cmd, fresh, env, args.big, args.big_epochs)
            print()
        return done()
    if args.startup:
        bench_startup(slnn_cmd, fresh, env, cells, args.startup)
        print()
    if args.skip_sweeps:
        return done()

    joblib = ["hydra/launcher=joblib"]
    variants = [("slnn, joblib, 1 worker", "slnn-1w", joblib + ["hydra.launcher.n_jobs=1"], 1),
                ("slnn, joblib, 2 workers", "slnn-2w", joblib + ["hydra.launcher.n_jobs=2"], 2)]
    if not (args.no_basic or args.quick):
        variants.append(("slnn, basic launcher", "slnn-basic", [], 1))
    results = {}
    for label, key, launcher, workers in variants:
        folder = fresh(key)
        print(f"running {label} ({cells} cells), load {loadavg()} ...", flush=True)
        v = run_variant(label, slnn_cmd(folder, launcher), folder, env)
        v["runs"] = len(store_runs(folder / "mlflow.db", children_only=True))
        v["shares"] = slnn_shares(v, workers)
        results[key] = v
    folder = fresh("plain")
    print(f"running the plain script ({plain_cells} cells), load {loadavg()} ...", flush=True)
    v = run_variant(f"plain Hydra + MLflow, {plain_what}", plain_cmd(folder), folder, env)
    plain_runs = store_runs(folder / "mlflow.db", children_only=False)
    v["runs"] = len(plain_runs)
    results["plain"] = v
    print()

    rate = {}
    print(f"{'variant':<52} {'cells':>6} {'wall s':>8} {'runs/s':>8} {'load':>6}")
    for key, r in results.items():
        rate[key] = r["runs"] / r["wall"] if r["wall"] > 0 else 0.0
        expected = plain_cells if key == "plain" else cells
        note = "" if r["runs"] == expected else f"   !! {r['runs']} of {expected} cells finished"
        print(f"{r['name']:<52} {r['runs']:>6} {r['wall']:>8.1f} {rate[key]:>8.2f} "
              f"{r['load']:>6.2f}{note}")
    print()

    def ratio(a: str, b: str) -> float:
        return rate[a] / rate[b] if rate.get(b) else float("nan")

    r1, r2 = ratio("slnn-2w", "plain"), ratio("slnn-2w", "slnn-1w")
    print("ratios of runs per second")
    print(f"  slnn 2 workers vs plain        {r1:7.2f}x   goal >= {GOAL_VS_PLAIN:g}x   "
          f"{verdict(r1, GOAL_VS_PLAIN)}")
    print(f"  slnn 1 worker vs plain         {ratio('slnn-1w', 'plain'):7.2f}x   (for information)")
    if "slnn-basic" in rate:
        print(f"  slnn basic launcher vs plain   {ratio('slnn-basic', 'plain'):7.2f}x   "
              "(for information)")
    print(f"  slnn 2 workers vs 1 worker     {r2:7.2f}x   goal >= {GOAL_2W:g}x    "
          f"{verdict(r2, GOAL_2W)}")
    print()
    print_shares(results, plain_runs)
    print()
    done()


if __name__ == "__main__":
    main()
