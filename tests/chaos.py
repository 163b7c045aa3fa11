"""Chaos supervisor: run a sweep of many short cells while killing its workers and its launcher
(SIGKILL and SIGTERM) at random moments, rerun it until it completes, then check that nothing
was lost, nothing was done twice, nothing is left RUNNING, the store is sound and the report
counts the same cells.

    python tests/chaos.py --dir /tmp/chaos [--cells 200] [--kills 8] [--seed 1] [--store empty.db]

Run by ``tests/test_chaos.py`` (marked slow). Prints its figures as one ``chaos:`` line and
exits 0 only if every check holds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")
SLNN_REPORT = Path(sys.executable).with_name("slnn-report")
START = re.compile(r"^slnn: sweep \S+: (\d+) cells: .*?; (\d+) to run", re.M)
SUMMARY = re.compile(r"^slnn: sweep \S+: (\d+) finished, (\d+) failed, (\d+) diverged, "
                     r"(\d+) shape_mismatch, (\d+) skipped(?:, \d+ killed)?(?:, (\d+) not run)?", re.M)


def cells_ended(sweep: Path) -> int:
    """How many cells have ended so far: the sweep's ledger's lines (the terminal gets a few
    progress lines per sweep, not one per cell)."""
    try:
        return (sweep / "progress.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def grid(cells: int) -> list[str]:
    """``cells`` cells (a multiple of 4): seeds x 2 rules x 2 activations, 2 epochs each."""
    seeds = max(1, cells // 4)
    return ["-m", f"seed=range({seeds})", "update=input,kronecker", "model.activation=sigmoid,tanh",
            "data=iris_petal", "train.epochs=2", "tracking.plot=false", "tracking.log_model=false",
            "sweep.report=false", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for k in kids:
                if k not in out:
                    out.append(k)
                    todo.append(k)
    return out


def workers(pid: int) -> list[int]:
    """The launcher's loky worker processes (not joblib's resource tracker)."""
    found = []
    for p in descendants(pid):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        if b"popen_loky" in cmd:
            found.append(p)
    return found


def store_figures(db: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        rows = con.execute(
            "SELECT r.run_uuid, r.status, r.lifecycle_stage, "
            " (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'slnn.config_hash'),"
            " (SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = 'slnn.sweep')"
            " FROM runs r").fetchall()
    finally:
        con.close()
    active = [r for r in rows if r[2] == "active"]
    cells = [r for r in active if r[4] != "true"]
    parents = [r for r in active if r[4] == "true"]
    return {"integrity": integrity, "running": sum(r[1] == "RUNNING" for r in active),
            "finished_per_hash": Counter(r[3] for r in cells if r[1] == "FINISHED"),
            "statuses": Counter(r[1] for r in cells), "parents": parents}


def run(args) -> int:
    rng = random.Random(args.seed)
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    db = work / "mlflow.db"
    if args.store and not db.exists():
        shutil.copyfile(args.store, db)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [str(SLNN_TRAIN), *grid(args.cells), f"tracking.uri=sqlite:///{db}",
           f"hydra.sweep.dir={work}/multirun"]
    kinds = ["worker SIGKILL", "worker SIGTERM", "launcher SIGKILL", "launcher SIGTERM"]
    plan = [kinds[i % 4] for i in range(args.kills)]
    rng.shuffle(plan)
    survived: Counter = Counter()
    attempts, t0, last = 0, time.monotonic(), None
    while True:
        attempts += 1
        if attempts > args.kills + 10:
            print(f"chaos: gave up after {attempts - 1} attempts", file=sys.stderr)
            return 1
        out_path = work / f"attempt{attempts}.out"
        with open(out_path, "w") as out, open(work / f"attempt{attempts}.err", "w") as err:
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=err,
                                    start_new_session=True)
        kill = plan.pop() if plan else None
        try:
            if kill:
                # a random moment while cells run (the store is never killed mid-migration here):
                # after a random number of this attempt's cells, at most its share of them, so
                # that the kills still planned find cells left to run however fast cells are
                # (workers whose launcher died stop, so a launcher kill leaves cells too)
                while proc.poll() is None and not START.search(out_path.read_text()):
                    time.sleep(0.05)
                started = START.search(out_path.read_text())
                to_run = int(started.group(2)) if started else 1
                after = rng.randint(1, max(1, to_run // (len(plan) + 2)))
                while proc.poll() is None and cells_ended(work / "multirun") < after:
                    time.sleep(0.05)
                sig = signal.SIGKILL if kill.endswith("SIGKILL") else signal.SIGTERM
                if proc.poll() is None:
                    if kill.startswith("worker"):
                        pids = workers(proc.pid)
                        if pids:
                            os.kill(rng.choice(pids), sig)
                            survived[kill] += 1
                        else:
                            plan.append(kill)  # none up yet: try again next time
                    else:
                        os.kill(proc.pid, sig)
                        survived[kill] += 1
                else:
                    plan.append(kill)  # it finished first: keep the kill for the next attempt
            proc.wait(timeout=600)
        finally:
            try:  # as a scheduler ends a job: whatever is left of its process group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        text = out_path.read_text()
        last = SUMMARY.search(text)
        started = START.search(text)
        nothing_left = started is not None and started.group(2) == "0"
        if proc.returncode == 0 and last and int(last.group(2)) == 0 and not last.group(6) \
                and (not plan or nothing_left):
            break
    seconds = time.monotonic() - t0

    fig = store_figures(db)
    n_cells = int(START.search(text).group(1))
    per_hash = fig["finished_per_hash"]
    parent = re.search(r"\(parent run (\w+)\)", text).group(1)
    # the parent's cells.json lists the hash of every cell of the grid
    arts = list((work / "mlruns").rglob(f"{parent}/artifacts/cells.json"))
    grid_hashes = set(json.loads(arts[0].read_text())["hashes"]) if arts else set()
    duplicates = sum(n - 1 for n in per_hash.values() if n > 1)
    lost = len(grid_hashes - set(per_hash)) if grid_hashes else n_cells - len(per_hash)

    # the report counts the same cells
    rep = subprocess.run([str(SLNN_REPORT), "--tracking-uri", f"sqlite:///{db}", "--parent-run",
                          parent, "--out", str(work / "report")], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    report_cells = -1
    if rep.returncode == 0:
        import csv

        with open(work / "report" / "runs.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        report_cells = sum(1 for r in rows if r.get("outcome") not in ("running",))
    print(f"chaos: {n_cells} cells, kills survived {sum(survived.values())} "
          f"({', '.join(f'{v} {k}' for k, v in sorted(survived.items()))}), reruns needed "
          f"{attempts - 1}, duplicates {duplicates}, lost cells {lost}, left RUNNING "
          f"{fig['running']}, integrity {fig['integrity']}, report counts {report_cells} cells, "
          f"{seconds:.0f} s", flush=True)
    ok = (duplicates == 0 and lost == 0 and fig["running"] == 0 and fig["integrity"] == "ok"
          and report_cells == n_cells == len(per_hash))
    if not ok and rep.returncode != 0:
        print(f"chaos: the report failed: {rep.stderr.strip()[-500:]}", file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--cells", type=int, default=200)
    p.add_argument("--kills", type=int, default=6)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--store", help="an empty, migrated mlflow.db to start from (saves ~10 s)")
    return run(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
