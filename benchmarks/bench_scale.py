"""The report (and, where slnn.sweep offers one, a sweep's close) on synthetic studies of 4,200,
42,000 and 100,000 runs of 200 epochs, on SQLite and PostgreSQL, with time and peak memory.

    .venv/bin/python benchmarks/bench_scale.py                        # 4,200 and 42,000 on SQLite
    .venv/bin/python benchmarks/bench_scale.py --full                 # ... and 100,200
    .venv/bin/python benchmarks/bench_scale.py --sizes 4200 --postgres auto   # a throwaway cluster
    .venv/bin/python benchmarks/bench_scale.py --postgres postgresql+psycopg2://u@host/db
    .venv/bin/python benchmarks/bench_scale.py --work /data/scale     # keep the stores there
    .venv/bin/python benchmarks/bench_scale.py --close slnn.sweep:close_summary  # time a close

A benchmark, not a test: it prints figures and PASS or MISS against issue #25's goals, and
asserts nothing.

How a store is built, fast: a real sweep of 16 cells (2 data sets x 2 rules x 2 learning rates x
2 seeds, 200 epochs; one rule cannot run on one data set, so some cells end as shape_mismatch) is
run once with ``slnn-train -m`` and is the template. A big store is then a new parent run (the
template parent's tags, ``cells.json`` listing every child's config hash) and children inserted
in bulk through SQLAlchemy into the tables MLflow made (runs, tags, params, latest_metrics,
inputs, input_tags; ``--curves`` adds the per-epoch rows of ``metrics`` too, ~1,200 a run), each
child carrying the tags, params and metric names of the template child of its data set and rule,
with its own config hash, seed, learning rate and name, and the metrics ``slnn.tracking.recorder``
makes of a synthetic history (``bench_report.synthetic_result``: 64 histories per (rule,
activation, lr) drawn by seed). Its artifacts are that history as ``history.csv`` and the
template child's other files (config, run log, weights), hard-linked. Logging 42,000 runs through
MLflow's client at ~75 ms a run would take an hour; this takes a minute or two.

The grid is the main study's (data iris_petal, blobs, iris x rules input, kronecker x 5
activations x 20 seeds) with 7 learning rates at 4,200 runs, 70 at 42,000 and 167 at 100,200:
a bigger study has more cells, as when a group adds data sets and rules.

Each timing runs in a fresh child process (``slnn-report --parent-run ... --out ...``); its peak
resident memory is the child's own (``os.wait4``'s ``ru_maxrss``), its time the wall clock.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
BIN = Path(PY).parent
DATA = ("iris_petal", "blobs", "iris")
RULES = ("input", "kronecker")
ACTIVATIONS = ("sigmoid", "tanh", "guide_tanh", "linear", "relu")
STUDY_LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
SEEDS = 20
EPOCHS = 200
POOL = 64  # synthetic histories per (rule, activation, lr)
BATCH = 2000  # runs inserted per transaction
# the goals (#25)
GOAL_MEM_RATIO, GOAL_MEM_MB, GOAL_TIME_RATIO, GOAL_SMALL_S = 1.3, 1024, 1.2, 10.0
# where a sweep's close might be offered by slnn.sweep (module:function(uri, parent_run_id))
CLOSE_CANDIDATES = ("slnn.sweep:close_summary", "slnn.sweep.close:close_summary",
                    "slnn.sweep.orchestrator:close_summary")


def say(*a) -> None:
    print(*a, flush=True)


# --- the template: a small real sweep -------------------------------------------------------

def make_template(folder: Path) -> tuple[str, str]:
    """Run the 16-cell template sweep into ``folder`` (once) and return (uri, parent id)."""
    db = folder / "mlflow.db"
    uri = f"sqlite:///{db}"
    done = folder / "parent.txt"
    if done.exists():
        return uri, done.read_text().strip()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cmd = [str(BIN / "slnn-train"), "-m", "data=blobs,iris", "update=input,kronecker",
           "model.activation=sigmoid", "optim.lr=0.1,1.0", "seed=0,1", f"train.epochs={EPOCHS}",
           "data.seed=null", "tracking.plot=false", f"tracking.uri={uri}", "sweep.report=false",
           f"hydra.sweep.dir={folder / 'multirun'}"]
    say("template: " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_scale: the template sweep failed: {proc.stderr.strip()[-500:]}")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("slnn")
    parent = client.search_runs([exp.experiment_id], "tags.`slnn.sweep` = 'true'")[0]
    done.write_text(parent.info.run_id)
    return uri, parent.info.run_id


class Template:
    """What the template sweep's runs hold, per data set and rule."""

    def __init__(self, uri: str, parent_id: str):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        self.parent = client.get_run(parent_id)
        self.exp_tags = client.get_experiment(self.parent.info.experiment_id).tags
        kids = client.search_runs([self.parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent_id}'")
        self.child = {}
        for r in kids:
            key = (r.data.tags["slnn.data"], r.data.tags["slnn.update"])
            self.child.setdefault(key, r)
        self.datasets = {}
        from sqlalchemy import create_engine, text

        eng = create_engine(uri)
        with eng.connect() as c:
            for row in c.execute(text("select name, digest, dataset_source_type, dataset_source, "
                                      "dataset_schema, dataset_profile from datasets")):
                self.datasets.setdefault(row[0], tuple(row))
        eng.dispose()

    def layout(self, data: str, rule: str):
        """(template child for params, template child for tags/metrics/artifacts)."""
        pdata = "blobs" if data == "blobs" else "iris"
        mismatch = data == "iris" and rule == "kronecker"
        tdata = "iris" if mismatch else "blobs"
        return self.child[(pdata, "input")], self.child[(tdata, rule)]


# --- synthetic histories ------------------------------------------------------------------------

def _pool(rule: str, act: str, lr: float):
    """POOL synthetic results for one (rule, activation, lr) with their csv and metric rows."""
    sys.path.insert(0, str(HERE))
    from bench_report import synthetic_result

    from slnn.tracking.recorder import constant_tags, history_csv, metric_entities

    out = []
    for s in range(POOL):
        res = synthetic_result(rule, act, lr, s, EPOCHS)
        mets = [(m.key, m.value, m.step) for m in metric_entities(res, 500, 0)]
        try:
            tags = constant_tags(res)
        except Exception:  # noqa: BLE001 - the synthetic result lacks a field: the template's
            tags = {}
        out.append((res, history_csv(res).encode(), mets, tags))
    return out


def grid(n: int) -> tuple[list, list]:
    n_lr = math.ceil(n / (len(DATA) * len(RULES) * len(ACTIVATIONS) * SEEDS))
    lrs = list(STUDY_LRS) if n_lr == len(STUDY_LRS) else \
        [float(f"{x:.4g}") for x in np.geomspace(0.001, 1.0, n_lr)]
    cells = list(itertools.product(DATA, RULES, ACTIVATIONS, lrs, range(SEEDS)))[:n]
    return cells, lrs


def _nearest(lr: float) -> float:
    return min(STUDY_LRS, key=lambda x: abs(math.log(x / lr)))


# --- the store ----------------------------------------------------------------------------------

def build_store(uri: str, art_root: Path, n: int, tmpl: Template, curves: bool) -> str:
    """A new experiment 'slnn' in ``uri`` with one sweep of ``n`` children; returns the parent
    run id. ``art_root`` holds the artifacts."""
    from mlflow.tracking import MlflowClient
    from mlflow.store.tracking.dbmodels import models as M
    from sqlalchemy import create_engine, event

    client = MlflowClient(uri)  # makes the schema
    art_root.mkdir(parents=True, exist_ok=True)
    exp_id = client.create_experiment("slnn", artifact_location=(art_root / "slnn").as_uri())
    for k, v in tmpl.exp_tags.items():
        client.set_experiment_tag(exp_id, k, v)
    cells, lrs = grid(n)
    ptags = dict(tmpl.parent.data.tags)
    ptags.update({"slnn.n_cells": str(len(cells)), "mlflow.runName": f"scale-{n}",
                  "slnn.summary": f"{len(cells)} cells (synthetic)"})
    ptags.pop("slnn.best_run", None)
    parent = client.create_run(exp_id, run_name=f"scale-{n}", tags=ptags)
    pid = parent.info.run_id
    hashes = [f"{i:016x}" for i in range(len(cells))]
    pdir = art_root / "slnn" / pid / "artifacts"
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "cells.json").write_text(json.dumps({"hashes": hashes, "overrides": [
        [f"data={d}", f"update={r}", f"model.activation={a}", f"optim.lr={lr}", f"seed={s}"]
        for d, r, a, lr, s in cells]}))

    engine = create_engine(uri)
    if uri.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _fast(dbapi, _):  # a benchmark's scratch store: no fsync per transaction
            dbapi.execute("PRAGMA synchronous=OFF")
            dbapi.execute("PRAGMA journal_mode=MEMORY")
    # the data sets, one per data set name, in the new experiment
    ds_uuid = {}
    ds_rows = []
    for d in DATA:
        src = tmpl.datasets.get(d) or tmpl.datasets["iris"]
        ds_uuid[d] = uuid.uuid4().hex
        ds_rows.append({"dataset_uuid": ds_uuid[d], "experiment_id": int(exp_id), "name": d,
                        "digest": (src[1] if d in tmpl.datasets else f"{d}digest")[:36],
                        "dataset_source_type": src[2],
                        "dataset_source": src[3].replace("iris", d) if d not in tmpl.datasets
                        else src[3], "dataset_schema": src[4], "dataset_profile": src[5]})
    with engine.begin() as c:
        c.execute(M.SqlDataset.__table__.insert(), ds_rows)

    pools: dict = {}
    t0 = time.time()
    start = int(time.time() * 1000)
    for b in range(0, len(cells), BATCH):
        rows = {t: [] for t in ("runs", "tags", "params", "latest", "metrics", "inputs", "itags")}
        for i in range(b, min(b + BATCH, len(cells))):
            data, rule, act, lr, seed = cells[i]
            pchild, tchild = tmpl.layout(data, rule)
            rid = uuid.uuid4().hex
            name = f"{rule}-{act}-lr{lr:g}-s{seed}-{data}"
            adir = art_root / "slnn" / rid / "artifacts"
            mismatch = tchild.data.tags.get("slnn.outcome") == "shape_mismatch"
            t_start = start + 10 * i
            rows["runs"].append({
                "run_uuid": rid, "name": name, "source_type": "LOCAL", "source_name": "",
                "entry_point_name": "", "user_id": tchild.info.user_id, "status": "FINISHED",
                "start_time": t_start, "end_time": t_start + 80, "source_version": "",
                "lifecycle_stage": "active", "artifact_uri": adir.as_uri(),
                "experiment_id": int(exp_id), "deleted_time": None})
            tags = dict(tchild.data.tags)
            tags.update({"mlflow.runName": name, "slnn.update": rule, "slnn.activation": act,
                         "slnn.data": data, "slnn.config_hash": hashes[i],
                         "mlflow.parentRunId": pid})
            params = dict(pchild.data.params)
            params.update({"data.name": data, "update.rule": rule, "model.activation": act,
                           "optim.lr": repr(float(lr)), "seed": str(seed)})
            if mismatch:
                mets = [(k, v, 0) for k, v in tchild.data.metrics.items()]
                blob = None
            else:
                key = (rule, act, _nearest(lr))
                if key not in pools:
                    pools[key] = _pool(rule, act, _nearest(lr))
                res, blob, mets, ctags = pools[key][seed % POOL]
                tags.update(ctags)
                tags["slnn.outcome"] = str(res.outcome)
                tags["slnn.reason"] = res.reason
            rows["tags"] += [{"key": k, "value": v, "run_uuid": rid} for k, v in tags.items()]
            rows["params"] += [{"key": k, "value": v, "run_uuid": rid} for k, v in params.items()]
            latest = {}
            for k, v, step in mets:
                if k not in latest or step >= latest[k][1]:
                    latest[k] = (v, step)
            for k, (v, step) in latest.items():
                nan = bool(math.isnan(v))
                rows["latest"].append({"key": k, "value": 0.0 if nan else v,
                                       "timestamp": t_start, "step": step, "is_nan": nan,
                                       "run_uuid": rid})
            if curves:
                rows["metrics"] += [{"key": k, "value": 0.0 if math.isnan(v) else v,
                                     "timestamp": t_start, "run_uuid": rid, "step": step,
                                     "is_nan": bool(math.isnan(v))} for k, v, step in mets]
            iu = uuid.uuid4().hex
            rows["inputs"].append({"input_uuid": iu, "source_type": "DATASET",
                                   "source_id": ds_uuid[data], "destination_type": "RUN",
                                   "destination_id": rid, "step": 0})
            rows["itags"].append({"input_uuid": iu, "name": "mlflow.data.context",
                                  "value": "training"})
            # artifacts: the history, and the template child's other files hard-linked
            src = Path(tchild.info.artifact_uri.replace("file://", ""))
            for f in src.rglob("*"):
                if f.is_file() and f.name != "history.csv":
                    dst = adir / f.relative_to(src)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(f, dst)
                    except OSError:
                        shutil.copyfile(f, dst)
            if blob is not None:
                adir.mkdir(parents=True, exist_ok=True)
                (adir / "history.csv").write_bytes(blob)
        with engine.begin() as c:
            c.execute(M.SqlRun.__table__.insert(), rows["runs"])
            c.execute(M.SqlTag.__table__.insert(), rows["tags"])
            c.execute(M.SqlParam.__table__.insert(), rows["params"])
            c.execute(M.SqlLatestMetric.__table__.insert(), rows["latest"])
            if rows["metrics"]:
                c.execute(M.SqlMetric.__table__.insert(), rows["metrics"])
            c.execute(M.SqlInput.__table__.insert(), rows["inputs"])
            c.execute(M.SqlInputTag.__table__.insert(), rows["itags"])
        done = min(b + BATCH, len(cells))
        say(f"  {done}/{len(cells)} runs inserted ({time.time() - t0:.0f} s)")
    engine.dispose()
    client.set_terminated(pid, "FINISHED")
    return pid


# --- timing in a child process ----------------------------------------------------------------

def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB of the child, stderr tail) of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode(errors="replace") + proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        say(f"  FAILED ({proc.returncode}): {out.strip()[-800:]}")
    return wall, usage.ru_maxrss / 1024, out


def find_close(spec: str | None):
    """The ``module:function`` that closes a sweep, as given or offered by slnn.sweep."""
    for cand in ([spec] if spec else CLOSE_CANDIDATES):
        mod, _, fn = cand.partition(":")
        try:
            if callable(getattr(importlib.import_module(mod), fn, None)):
                return cand
        except Exception:  # noqa: BLE001 - not offered (or the package is being moved)
            continue
    return None


def time_close(spec: str, uri: str, parent: str, cwd: Path) -> tuple[float, float]:
    mod, _, fn = spec.partition(":")
    code = (f"import importlib; importlib.import_module({mod!r}).{fn}({uri!r}, {parent!r})")
    wall, mb, _ = timed([PY, "-c", code], cwd)
    return wall, mb


# --- main ----------------------------------------------------------------------------------------

def ensure_store(kind: str, n: int, work: Path, tmpl: Template, pg, curves: bool):
    """(uri, parent id) of the ``n``-run store of ``kind`` under ``work``, built if missing."""
    tag = f"{kind}-{n}{'-curves' if curves else ''}"
    folder = work / tag
    marker = folder / "parent.txt"
    if kind == "sqlite":
        uri = f"sqlite:///{folder / 'mlflow.db'}"
    else:
        uri = pg.db_uri(tag.replace("-", "_"))
    if marker.exists():
        return uri, marker.read_text().strip()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if kind != "sqlite":
        pg.create(tag.replace("-", "_"))
    say(f"building {tag}: {n} runs")
    t0 = time.time()
    parent = build_store(uri, folder / "mlruns", n, tmpl, curves)
    say(f"  built in {time.time() - t0:.0f} s")
    marker.write_text(parent)
    return uri, parent


class Postgres:
    """A server to create databases on: a URI given, or a throwaway cluster as the tests start."""

    def __init__(self, uri: str):
        self.cluster = None
        if uri == "auto":
            sys.path.insert(0, str(ROOT / "tests"))
            from servers import PgCluster

            self.cluster = PgCluster.start()
            self.base = self.cluster.uri("postgres")
        else:
            self.base = uri

    def db_uri(self, name: str) -> str:
        return self.base.rsplit("/", 1)[0] + "/" + name

    def create(self, name: str) -> None:
        from sqlalchemy import create_engine, text

        eng = create_engine(self.base, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        eng.dispose()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4200,42000",
                    help="comma-separated numbers of runs (default: 4200,42000)")
    ap.add_argument("--full", action="store_true", help="also 100,200 runs")
    ap.add_argument("--postgres", metavar="URI",
                    help="also PostgreSQL: a server URI (a database is created per size) or "
                         "'auto' for a throwaway cluster (initdb/pg_ctl, as the tests do)")
    ap.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    ap.add_argument("--work", type=Path, default=Path("/tmp/slnn-bench-scale"),
                    help="folder for the template and the stores, kept and reused between runs "
                         "(default: /tmp/slnn-bench-scale)")
    ap.add_argument("--curves", action="store_true",
                    help="insert every per-epoch metric row too (a real sweep's store size, "
                         "~1,200 rows a run; neither the report nor the close reads them)")
    ap.add_argument("--close", metavar="MODULE:FUNC",
                    help="a callable (uri, parent_run_id) that closes a sweep, to time; default: "
                         "the first of " + ", ".join(CLOSE_CANDIDATES) + " that exists")
    ap.add_argument("--rounds", type=int, default=1, help="timings per size (the best is kept)")
    args = ap.parse_args()
    if args.rounds < 1:
        print("bench_scale: --rounds must be >= 1, e.g. --rounds 2", file=sys.stderr)
        return 2
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        print(f"bench_scale: --sizes {args.sizes!r} is not a list of numbers: e.g. --sizes "
              "4200,42000", file=sys.stderr)
        return 2
    if args.full:
        sizes.append(100_200)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    say(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; work folder {work}")
    tmpl = Template(*make_template(work / "template"))
    close = find_close(args.close)
    if close is None:
        say("close: not timed (slnn.sweep offers no close callable: pass --close MODULE:FUNC)")
    kinds = ([] if args.no_sqlite else ["sqlite"]) + (["postgres"] if args.postgres else [])
    pg = Postgres(args.postgres) if args.postgres else None
    results = []
    try:
        for kind in kinds:
            for n in sizes:
                uri, parent = ensure_store(kind, n, work, tmpl, pg, args.curves)
                out = work / f"report-{kind}-{n}"
                best = None
                for _ in range(args.rounds):
                    shutil.rmtree(out, ignore_errors=True)
                    wall, mb, _ = timed([str(BIN / "slnn-report"), "--parent-run", parent,
                                         "--tracking-uri", uri, "--out", str(out)], work)
                    if best is None or wall < best[0]:
                        best = (wall, mb)
                row = {"kind": kind, "n": n, "s": best[0], "mb": best[1]}
                if close:
                    row["close_s"], row["close_mb"] = time_close(close, uri, parent, work)
                results.append(row)
                say(f"{kind:8s} {n:7d} runs: report {row['s']:7.1f} s "
                    f"({1000 * row['s'] / n:.2f} ms/run), peak {row['mb']:6.0f} MB"
                    + (f"; close {row['close_s']:.1f} s, {row['close_mb']:.0f} MB" if close
                       else "") + f"  (load {os.getloadavg()[0]:.2f})")
    finally:
        if pg is not None:
            pg.stop()
    summarize(results)
    return 0


def summarize(results: list[dict]) -> None:
    say("\nsize      store     report s   ms/run   peak MB   vs previous size: time/run, memory")
    for kind in dict.fromkeys(r["kind"] for r in results):
        rows = [r for r in results if r["kind"] == kind]
        prev = None
        for r in rows:
            slope = ""
            if prev is not None:
                t = (r["s"] / r["n"]) / (prev["s"] / prev["n"])
                m = r["mb"] / prev["mb"]
                slope = (f"{t:.2f}x [{'PASS' if t <= GOAL_TIME_RATIO else 'MISS'} <= "
                         f"{GOAL_TIME_RATIO}x], {m:.2f}x [{'PASS' if m <= GOAL_MEM_RATIO else 'MISS'}"
                         f" <= {GOAL_MEM_RATIO}x]")
                # the slope between sizes: seconds and MB per 1,000 more runs
                slope += (f"; +{1000 * (r['s'] - prev['s']) / (r['n'] - prev['n']):.2f} s and "
                          f"+{1000 * (r['mb'] - prev['mb']) / (r['n'] - prev['n']):.1f} MB per "
                          "1,000 runs")
            say(f"{r['n']:7d}   {kind:8s} {r['s']:8.1f} {1000 * r['s'] / r['n']:8.2f} "
                f"{r['mb']:9.0f}   {slope}")
            prev = r
        for r in rows:
            if r["n"] <= 4200:
                say(f"  {kind} {r['n']}-run report {r['s']:.1f} s: "
                    f"{'PASS' if r['s'] <= GOAL_SMALL_S else 'MISS'} <= {GOAL_SMALL_S:g} s")
            if 40000 <= r["n"] <= 45000:
                say(f"  {kind} {r['n']}-run report peak {r['mb']:.0f} MB: "
                    f"{'PASS' if r['mb'] < GOAL_MEM_MB else 'MISS'} < {GOAL_MEM_MB} MB")


if __name__ == "__main__":
    sys.exit(main())
