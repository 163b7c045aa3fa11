"""How many runs per second slnn's sweeper gets through the guide_vs_correct study, end to end,
against a plain Hydra + MLflow script over the same grid and against itself with one worker.

    .venv/bin/python benchmarks/bench_sweep.py                  # full: 450 cells per slnn sweep,
                                                                # the plain script on seed 0 (90 cells)
    .venv/bin/python benchmarks/bench_sweep.py --quick          # seed=0 optim.lr=0.1 (30 cells); ~1-2 min
    .venv/bin/python benchmarks/bench_sweep.py --plain-seeds 5  # the plain script on all 450 cells too
    .venv/bin/python benchmarks/bench_sweep.py --keep           # keep the temp folders to look inside

A benchmark, not a test: it prints figures and ratios and asserts nothing about time. Each goal is
printed with PASS or MISS.

Every variant runs as a subprocess in its own fresh temp folder (its working directory) with a
fresh SQLite store there, and is timed from process start to exit, so Python, Hydra and the
store's creation count as a user would feel them:

1. slnn, 1 worker:  ``slnn-train -m +experiment=guide_vs_correct hydra/launcher=joblib
   hydra.launcher.n_jobs=1 sweep.report=false tracking.uri=sqlite:///<dir>/mlflow.db
   hydra.sweep.dir=<dir>/multirun``
2. slnn, 2 workers: the same with ``hydra.launcher.n_jobs=2``;
3. slnn, Hydra's basic launcher (no joblib), for information;
4. the plain baseline, ``benchmarks/plain_sweep/plain_sweep.py``: ``@hydra.main``, Hydra's basic
   sweeper and launcher, ``mlflow.start_run`` per job and one ``mlflow.log_metrics`` call per
   epoch, around slnn's own trainer. It costs seconds per cell, so the full run gives it one seed
   of the grid (90 cells): every seed has the same mix of data sets, rules, activations and rates,
   so its runs per second compare with slnn's over all five.

runs/s = finished runs in the store / wall time. For the slnn sweeps the ledger
(``<sweep dir>/progress.jsonl``: per cell ``seconds``, ``train_seconds``, ``pid``, ``time``) splits
the worker time (wall x workers) into training, the rest of each cell (MLflow, data, config) and
the rest of the process (Python, Hydra, the store's creation, the sweep's preparation, launching
workers and chunks). Goals: slnn with 2 workers >= 10x the plain script's runs per second, and
2 workers >= 1.6x 1 worker on this 2-core machine.

An untimed warm-up trains every (activation, rule) pair once first (slnn and the plain script
share the Numba kernel cache), so no figure includes compiling. The machine may be shared: the
load average is printed at the start, before each variant and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from math import prod
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "experiments" / "guide_vs_correct.yaml"
PLAIN = ROOT / "benchmarks" / "plain_sweep" / "plain_sweep.py"
BIN = Path(sys.executable).parent
SLNN_TRAIN = str(BIN / "slnn-train") if (BIN / "slnn-train").exists() else shutil.which("slnn-train")

GOAL_VS_PLAIN = 10.0  # slnn (2 workers) runs/s over the plain script's
GOAL_2W = 1.6  # 2 workers over 1

# the study's grid keys -> the plain script's flat keys
PLAIN_KEY = {"data": "data", "update": "update", "model.activation": "activation",
             "optim.lr": "lr", "seed": "seed"}
QUICK = {"seed": "0", "optim.lr": "0.1"}  # replaces the study's values for these keys


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
    return {"train": trained / cap, "cell_rest": (cell - trained) / cap,
            "process": 1 - cell / cap, "before": before, "after": after,
            "gaps": cap - cell - workers * (before + after), "n": len(entries),
            "per_cell": cell / len(entries), "per_cell_train": trained / len(entries),
            "pids": len({e["pid"] for e in entries}),
            "train_by_name": {e["name"]: e["train_seconds"] for e in entries}}


# --- the report ---

def verdict(ratio: float, goal: float) -> str:
    return "PASS" if ratio >= goal else "MISS"


def slnn_state() -> str:
    """The commit measured, and whether slnn's files differ from it (other work may be under way)."""
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="seed=0 optim.lr=0.1 (30 cells) and a 12-cell plain subset")
    ap.add_argument("--plain-seeds", type=int, default=1, metavar="K",
                    help="seeds of the grid the plain script runs (full run only; 5 = all 450 cells)")
    ap.add_argument("--no-basic", action="store_true", help="skip slnn with Hydra's basic launcher")
    ap.add_argument("--keep", action="store_true", help="keep the temp folders")
    args = ap.parse_args()
    if SLNN_TRAIN is None:
        sys.exit("bench_sweep: slnn-train not found: install slnn (pip install -e .) into this venv")

    import hydra
    import mlflow
    import numba

    grid, epochs = study_grid()
    slnn_extra: list[str] = []
    if args.quick:
        grid = {**grid, **QUICK}
        slnn_extra = [f"{k}={v}" for k, v in QUICK.items()]
        # two activations of the quick grid: every data set and rule, so shape_mismatch keeps its share
        plain_grid = {**grid, "model.activation": "sigmoid,tanh"}
        plain_what = "the quick grid's sigmoid and tanh cells"
    else:
        k = max(1, min(args.plain_seeds, n_values(grid["seed"])))
        plain_grid = {**grid, "seed": seeds_value(k)}
        plain_what = ("the whole grid" if k == n_values(grid["seed"]) else
                      f"seed={seeds_value(k)} only")
    cells, plain_cells = n_cells(grid), n_cells(plain_grid)

    env = os.environ.copy()
    env.pop("MLFLOW_TRACKING_URI", None)  # it would win over tracking.uri
    base = Path(tempfile.mkdtemp(prefix="slnn-bench-sweep-"))

    def slnn_cmd(folder: Path, launcher: list[str], extra: list[str]) -> list[str]:
        return [SLNN_TRAIN, "-m", "+experiment=guide_vs_correct", *launcher, *extra,
                "sweep.report=false", f"tracking.uri=sqlite:///{folder}/mlflow.db",
                f"hydra.sweep.dir={folder}/multirun"]

    def plain_cmd(folder: Path, g: dict[str, str], ep: int) -> list[str]:
        vals = [f"{PLAIN_KEY[k]}={v}" for k, v in g.items()]
        return [sys.executable, str(PLAIN), "-m", *vals, f"epochs={ep}",
                f"tracking_uri=sqlite:///{folder}/mlflow.db", f"hydra.sweep.dir={folder}/multirun"]

    def fresh(name: str) -> Path:
        folder = base / name
        folder.mkdir()
        return folder

    print(f"bench_sweep: {'quick' if args.quick else 'full'} run on {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, hydra {hydra.__version__}, "
          f"mlflow {mlflow.__version__}, numba {numba.__version__}")
    print(f"  slnn at {slnn_state()}")
    print(f"  load average at start: {loadavg()}")
    print(f"  slnn grid: {cells} cells (guide_vs_correct"
          f"{', ' + ' '.join(slnn_extra) if slnn_extra else ''}), {epochs} epochs each")
    print(f"  plain grid: {plain_cells} cells ({plain_what}): {' '.join(f'{PLAIN_KEY[k]}={v}' for k, v in plain_grid.items())}")
    print(f"  temp folders under {base}")
    print()

    # --- warm-up: every (activation, rule) pair compiles into the shared kernel cache, untimed ---
    t = time.perf_counter()
    w = fresh("warmup-slnn")
    warm = run_variant("warm-up slnn", slnn_cmd(w, [], ["data=iris_petal", "seed=0", "optim.lr=0.1",
                                                       "train.epochs=2"]), w, env)
    w = fresh("warmup-plain")
    warm_p = run_variant("warm-up plain", plain_cmd(w, {"data": "iris_petal", "update": "input",
                                                        "model.activation": "sigmoid",
                                                        "optim.lr": "0.1", "seed": "0"}, 2), w, env)
    print(f"warm-up (not in any figure): slnn {warm['wall']:.1f} s, plain {warm_p['wall']:.1f} s, "
          f"{time.perf_counter() - t:.1f} s in all")
    print()

    # --- the variants ---
    variants = [("slnn, joblib, 1 worker", "slnn-1w", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"], 1),
                ("slnn, joblib, 2 workers", "slnn-2w", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2)]
    if not args.no_basic:
        variants.append(("slnn, basic launcher", "slnn-basic", [], 1))
    results = {}
    for label, key, launcher, workers in variants:
        folder = fresh(key)
        print(f"running {label} ({cells} cells), load {loadavg()} ...", flush=True)
        v = run_variant(label, slnn_cmd(folder, launcher, slnn_extra), folder, env)
        v["runs"] = len(store_runs(folder / "mlflow.db", children_only=True))
        v["workers"] = workers
        v["shares"] = slnn_shares(v, workers)
        m = re.findall(r"\(of (\d+) cells\)", (folder / "stdout.txt").read_text())
        v["summary_cells"] = int(m[-1]) if m else None
        results[key] = v
    folder = fresh("plain")
    print(f"running the plain script ({plain_cells} cells), load {loadavg()} ...", flush=True)
    v = run_variant("plain", plain_cmd(folder, plain_grid, epochs), folder, env)
    plain_runs = store_runs(folder / "mlflow.db", children_only=False)
    v["runs"] = len(plain_runs)
    results["plain"] = v
    print()

    # --- the table ---
    rows = [(results[k]["name"], k) for k in ("slnn-1w", "slnn-2w", "slnn-basic") if k in results]
    rows.append((f"plain Hydra + MLflow ({plain_what})", "plain"))
    rate = {}
    print(f"{'variant':<52} {'cells':>6} {'wall s':>8} {'runs/s':>8} {'load':>6}")
    for label, key in rows:
        r = results[key]
        rate[key] = r["runs"] / r["wall"] if r["wall"] > 0 else 0.0
        expected = cells if key != "plain" else plain_cells
        note = "" if r["runs"] == expected else f"   !! {r['runs']} of {expected} cells finished"
        print(f"{label:<52} {r['runs']:>6} {r['wall']:>8.1f} {rate[key]:>8.2f} {r['load']:>6.2f}{note}")
    print()

    def ratio(a: str, b: str) -> float:
        return rate[a] / rate[b] if rate.get(b) else float("nan")

    print("ratios (runs per second)")
    r1 = ratio("slnn-2w", "plain")
    print(f"  slnn 2 workers vs plain          {r1:7.2f}x   goal >= {GOAL_VS_PLAIN:g}x   {verdict(r1, GOAL_VS_PLAIN)}")
    print(f"  slnn 1 worker vs plain           {ratio('slnn-1w', 'plain'):7.2f}x   (for information)")
    if "slnn-basic" in rate:
        print(f"  slnn basic launcher vs plain     {ratio('slnn-basic', 'plain'):7.2f}x   (for information)")
    r2 = ratio("slnn-2w", "slnn-1w")
    print(f"  slnn 2 workers vs 1 worker       {r2:7.2f}x   goal >= {GOAL_2W:g}x    {verdict(r2, GOAL_2W)}")
    print()

    print("where the worker time goes (wall x workers), from each sweep's progress.jsonl")
    print(f"{'variant':<28} {'training':>9} {'MLflow+data':>12} {'start-up+rest':>14}   "
          f"{'per cell: all / training':>25}   start-up+rest = before 1st cell, after last, gaps")
    for key in ("slnn-1w", "slnn-2w", "slnn-basic"):
        s = results.get(key, {}).get("shares")
        if not s:
            continue
        print(f"{results[key]['name']:<28} {s['train']:>8.1%} {s['cell_rest']:>12.1%} "
              f"{s['process']:>14.1%}   {s['per_cell']:>13.3f} / {s['per_cell_train']:.3f} s   "
              f"{s['before']:.1f} s, {s['after']:.1f} s, {s['gaps']:.1f} worker-s "
              f"({s['pids']} process{'es' if s['pids'] > 1 else ''})")
    # the plain script: its runs' own spans from the store; training estimated from slnn's ledger
    p = results["plain"]
    in_runs = sum((e - s) / 1000 for _, s, e in plain_runs if s and e)
    trained_by_name = next((results[k]["shares"]["train_by_name"] for k in ("slnn-1w", "slnn-basic")
                            if results.get(k, {}).get("shares")), {})
    matched = [trained_by_name[n] for n, _, _ in plain_runs if n in trained_by_name]
    if p["wall"] > 0 and plain_runs:
        est = (f"{sum(matched) / p['wall']:>8.1%}" if len(matched) == len(plain_runs)
               else f"{'n/a':>8}")
        rest_in_runs = (f"{(in_runs - sum(matched)) / p['wall']:>12.1%}"
                        if len(matched) == len(plain_runs) else f"{'n/a':>12}")
        print(f"{'plain (training estimated)':<28} {est} {rest_in_runs} "
              f"{1 - in_runs / p['wall']:>14.1%}   {in_runs / len(plain_runs):>13.3f} s per run "
              "(start_run to end_run; training: slnn's train_seconds for the same cells)")
    print()
    print(f"load average at end: {loadavg()}")

    if args.keep:
        print(f"kept: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
