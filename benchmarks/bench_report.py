"""How long a report takes for a big sweep: 1,000 runs x 200 epochs in a local SQLite store.

    .venv/bin/python benchmarks/bench_report.py               # 1,000 runs x 200 epochs
    .venv/bin/python benchmarks/bench_report.py --runs 200    # a smaller store, for a quick look
    .venv/bin/python benchmarks/bench_report.py --keep /tmp/b # keep the store and the report
    .venv/bin/python benchmarks/bench_report.py --keep /tmp/b --reuse   # time the report again

A benchmark, not a test: it prints seconds and PASS or MISS against the goal, and asserts nothing.
The runs are synthetic ``TrainResult``s logged through ``slnn.slnn_recorder.RunRecorder`` under one
parent run tagged as the sweep callback tags it, so the store holds exactly what a real sweep
leaves (params, tags, thinned metrics, history.csv, weights) without training anything. The grid:
2 data sets x 2 rules x 5 activations x 5 learning rates x seeds, with some runs that converge
early and some that diverge. ``report_for_parent`` is then timed by phase: reading (MLflow query,
history files, tidy frame), plotting (summary, verdict, figures) and rendering (files, HTML).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

GOAL_SECONDS = 30.0
DATA = ("iris_petal", "blobs")
RULES = ("input", "kronecker")
ACTIVATIONS = ("sigmoid", "tanh", "guide_tanh", "linear", "relu")
LRS = (0.001, 0.01, 0.1, 0.5, 1.0)


def synthetic_result(rule: str, activation: str, lr: float, seed: int, epochs: int):
    """A plausible history: the input rule learns (faster with a larger lr), kronecker wanders;
    linear units at lr 1 diverge; some input runs converge early."""
    from slnn.core.trainer import HISTORY_COLUMNS, TrainResult

    rng = np.random.default_rng([seed, zlib.crc32(f"{rule}/{activation}/{lr}".encode())])
    n = epochs + 1
    e = np.arange(n, dtype=float)
    if rule == "input":
        tau = 5 + 40 / (lr * 10 + 0.1)
        loss = 0.05 + 0.5 * np.exp(-e / tau)
        err = 0.03 + 0.6 * np.exp(-e / tau)
        cos = np.full(n, 1.0)
    else:
        loss = 0.4 + 0.1 * np.sin(e / 9 + seed)
        err = 0.55 + 0.1 * np.cos(e / 7 + seed)
        cos = 0.2 * np.tanh(e / 20) - 0.1 + 0.05 * rng.standard_normal(n)
    outcome, reason = "max_epochs", f"ran all {epochs} epochs"
    if activation == "linear" and lr >= 1.0 and seed % 2 == 0:
        stop = int(rng.integers(min(5, epochs), min(30, epochs + 1)))  # an epoch that ran
        loss[stop] = 2e4
        outcome, reason = "diverged", f"training loss 2e4 exceeded 1e4 in epoch {stop}"
        n = stop + 1
    elif rule == "input" and lr >= 0.5 and seed % 3 == 0:
        n = int(rng.integers(min(40, epochs + 1), min(120, epochs + 2)))  # at most all epochs
        outcome, reason = "converged", f"validation loss < 0.1 in epoch {n - 1}"
    noise = lambda s: s * rng.standard_normal(n)  # noqa: E731
    h = {"epoch": e[:n], "step": e[:n] * 75,
         "train_loss": loss[:n] + noise(0.01), "val_loss": loss[:n] + noise(0.02),
         "test_loss": loss[:n] + noise(0.02),
         "train_error": np.clip(err[:n] + noise(0.02), 0, 1),
         "val_error": np.clip(err[:n] + noise(0.03), 0, 1),
         "test_error": np.clip(err[:n] + noise(0.03), 0, 1),
         "grad_cosine": np.clip(cos[:n], -1, 1), "weight_norm": 1 + 0.01 * e[:n]}
    h["grad_cosine"][0] = math.nan
    h = {c: np.asarray(h[c], dtype=float) for c in HISTORY_COLUMNS}
    W = rng.uniform(-0.5, 0.5, (3, 3))
    return TrainResult(outcome, reason, W, W + 0.1, h, {}, epochs_run=n - 1,
                       steps_run=(n - 1) * 75, train_seconds=0.01)


def make_store(root: Path, n_runs: int, epochs: int) -> tuple[str, str]:
    """Log ``n_runs`` synthetic runs under one sweep parent; returns (uri, parent_run_id)."""
    from mlflow.entities import RunTag

    from slnn.tracking import recorder as slnn_recorder, store as slnn_store

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = slnn_store.client_for(uri)
    exp = slnn_store.ensure_experiment(client, "slnn")
    seeds = math.ceil(n_runs / (len(DATA) * len(RULES) * len(ACTIVATIONS) * len(LRS)))
    grid = list(itertools.product(DATA, RULES, ACTIVATIONS, LRS, range(seeds)))[:n_runs]
    parent = client.create_run(exp, run_name="bench-report")
    client.log_batch(parent.info.run_id, tags=[
        RunTag("slnn.sweep", "true"), RunTag("slnn.study", "bench_report"),
        RunTag("slnn.n_cells", str(len(grid))), RunTag("slnn.sweep_hash", "bench")])
    for i, (data, rule, act, lr, seed) in enumerate(grid):
        params = {"data.name": data, "update.rule": rule, "model.activation": act,
                  "optim.lr": str(lr), "seed": str(seed), "train.epochs": str(epochs)}
        tags = {"slnn.update": rule, "slnn.activation": act, "slnn.data": data,
                "slnn.config_hash": f"{i:016x}", "slnn.outcome": "running"}
        rec = slnn_recorder.RunRecorder(client, exp, f"{rule}-{act}-lr{lr:g}-s{seed}-{data}", params,
                                   tags, parent.info.run_id)
        rec.finish(synthetic_result(rule, act, lr, seed, epochs), "synthetic: true\n",
                   plot=False, title="")
        if (i + 1) % 200 == 0:
            print(f"  logged {i + 1}/{len(grid)} runs", flush=True)
    client.set_terminated(parent.info.run_id, "FINISHED")
    return uri, parent.info.run_id


def bench_close(uri: str, parent: str, rounds: int = 3) -> None:
    """What a sweep's close reads of its children (summary metrics and the best run): the two
    whole ``search_runs`` reads it made before (every child, then every FINISHED child, each in
    one call) against the one paged pass it makes now (``tracking.runs.iter_runs``, a few fields
    per cell, then the best run fetched alone). Interleaved rounds; wall time and the peak of
    Python's allocations (tracemalloc) during each."""
    import statistics
    import tracemalloc

    from slnn.tracking.model_registry import ChildRun, choose_best, keep_newest, the_run
    from slnn.tracking.runs import iter_runs
    from slnn.tracking.store import client_for

    client = client_for(uri)
    exp = client.get_run(parent).info.experiment_id
    children = f"tags.mlflow.parentRunId = '{parent}'"

    def before():
        every = client.search_runs([exp], filter_string=children, max_results=50000)
        finished = client.search_runs([exp], filter_string=children + " and attributes.status = "
                                      "'FINISHED'", max_results=50000)
        newest = {}
        for r in finished:
            keep_newest(newest, ChildRun.of(r))
        return len(every), choose_best(newest.values(), parent).run_id

    def now():
        newest, finished = {}, {}
        n = 0
        for r in iter_runs(client, [exp], children):
            cell = ChildRun.of(r)
            keep_newest(newest, cell)
            if cell.finished:
                keep_newest(finished, cell)
            n += 1
        return n, the_run(client, choose_best(finished.values(), parent)).info.run_id

    found = {"before": [], "now": []}
    answers = set()
    for _ in range(rounds):
        for label, fn in (("before", before), ("now", now)):
            tracemalloc.start()
            t0 = time.perf_counter()
            answers.add(fn())
            seconds = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            found[label].append((seconds, peak))
    assert len(answers) == 1, f"the two reads disagree: {answers}"
    med = {k: (statistics.median(s for s, _ in v), statistics.median(m for _, m in v))
           for k, v in found.items()}
    n, best = answers.pop()
    print(f"closing the sweep: reading {n} children for its summary and best run ({best[:8]}), "
          f"median of {rounds} interleaved rounds")
    print(f"  two whole reads (before)  {med['before'][0]:6.2f} s  peak {med['before'][1]:7.1f} MB")
    print(f"  one paged pass (now)      {med['now'][0]:6.2f} s  peak {med['now'][1]:7.1f} MB")
    print(f"  now / before: {med['now'][0] / med['before'][0]:.2f}x the time, "
          f"{med['now'][1] / med['before'][1]:.2f}x the memory")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--keep", type=Path, default=None, help="build the store here and keep it")
    ap.add_argument("--reuse", action="store_true",
                    help="with --keep: report the store already there instead of building one")
    ap.add_argument("--close", action="store_true",
                    help="time what a sweep's close reads of the runs (not the report)")
    args = ap.parse_args()
    if args.runs < 1 or args.epochs < 1:
        ap.error("--runs and --epochs must be at least 1")
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)

    root = args.keep or Path(tempfile.mkdtemp(prefix="slnn-bench-report-"))
    root.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        t0 = time.perf_counter()
        import slnn.report.figures  # noqa: F401 (matplotlib, seaborn, mlflow: timed apart)

        imports = time.perf_counter() - t0
        t0 = time.perf_counter()
        if args.reuse and (root / "mlflow.db").exists():
            from slnn.report import newest_sweep

            uri = f"sqlite:///{root / 'mlflow.db'}"
            parent = newest_sweep(uri, "slnn")
            print(f"setup: reusing {uri}")
        else:
            uri, parent = make_store(root, args.runs, args.epochs)
            print(f"setup: {args.runs} runs x {args.epochs} epochs logged in "
                  f"{time.perf_counter() - t0:.1f} s ({uri})")
        if args.close:
            bench_close(uri, parent)
            return
        from slnn.report import report_for_parent

        t: dict = {}
        folder = report_for_parent(uri, parent, out=root / "report", timings=t)
        total = t["read"] + t["plot"] + t["render"]
        pngs = sorted(p.name for p in folder.glob("*.png"))
        print(f"report: {folder} ({len(pngs)} figures)")
        print(f"imports    {imports:6.2f} s (not counted)")
        print(f"reading    {t['read']:6.2f} s  (MLflow query, history.csv files, tidy frame)")
        print(f"plotting   {t['plot']:6.2f} s  (summary, verdict, {len(pngs)} figures)")
        print(f"rendering  {t['render']:6.2f} s  (tidy.parquet, csv, report.md, report.html)")
        print(f"total      {total:6.2f} s  goal < {GOAL_SECONDS:.0f} s: "
              f"{'PASS' if total < GOAL_SECONDS else 'MISS'}")
    finally:
        os.chdir(cwd)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
