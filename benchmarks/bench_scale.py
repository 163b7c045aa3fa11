"""The report (and, where slnn.sweep offers one, a sweep's close) on synthetic studies of 4,200,
42,000 and 100,000 runs of 200 epochs, on SQLite and PostgreSQL, with time and peak memory.

    .venv/bin/python benchmarks/bench_scale.py                        # 4,200 and 42,000 on SQLite
    .venv/bin/python benchmarks/bench_scale.py --full                 # ... and 100,200
    .venv/bin/python benchmarks/bench_scale.py --sizes 4200 --postgres auto   # a throwaway cluster
    .venv/bin/python benchmarks/bench_scale.py --postgres postgresql+psycopg2://u@host/db
    .venv/bin/python benchmarks/bench_scale.py --work /data/scale     # keep the stores there
    .venv/bin/python benchmarks/bench_scale.py --close slnn.sweep:close_summary  # time a close
    .venv/bin/python benchmarks/bench_scale.py --sizes 4200 --curves  # every metric row too
    .venv/bin/python benchmarks/bench_scale.py --record-costs /tmp/slnn-bench-scale/sqlite-4200-curves

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

``--record-costs FOLDER`` prints instead what each part of a run's record (params, tags, metric
points, latest metrics, dataset input, each kind of artifact) costs in store bytes and on disk,
per child run of the store in FOLDER, and the sweep's logged model.

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

# Linux carries a process's peak RSS across fork and exec: a child started by this process (big
# after building a store) would report this process's size as its own peak. So each command is
# started by a small launcher, and the launcher reports its child's peak.
LAUNCH = ("import os, subprocess, sys\n"
          "p = subprocess.Popen(sys.argv[1:])\n"
          "_, status, usage = os.wait4(p.pid, 0)\n"
          "print(f'\\nPEAK_KB {usage.ru_maxrss}', file=sys.stderr)\n"
          "sys.exit(os.waitstatus_to_exitcode(status))\n")


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB of the command's process, its output) of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-c", LAUNCH, *cmd], cwd=cwd, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_KB ")]
    if proc.returncode != 0 or not peak:
        say(f"  FAILED ({proc.returncode}): {out.strip()[-800:]}")
        return wall, math.nan, out
    return wall, int(peak[-1].split()[1]) / 1024, out


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


# --- what a run's record costs ------------------------------------------------------------------

def record_costs(folder: Path) -> None:
    """Per child run of the sweep in ``folder`` (a SQLite store built with --curves, or the
    template): the store bytes of each part of its record. A table's bytes are its pages and its
    indexes' pages (SQLite's ``dbstat``), shared out by rows; artifacts are their files' sizes
    and the disk blocks they take."""
    import sqlite3

    db = folder / "mlflow.db"
    parent = (folder / "parent.txt").read_text().strip()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    pages = dict(con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
    owner = dict(con.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
    size = {}
    for name, b in pages.items():
        size[owner.get(name, name)] = size.get(owner.get(name, name), 0) + b
    kids = [r[0] for r in con.execute(
        "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = ?", (parent,))]
    n = len(kids)
    con.execute("CREATE TEMP TABLE kids (id TEXT PRIMARY KEY)")
    con.executemany("INSERT INTO kids VALUES (?)", [(k,) for k in kids])

    def share(table: str, where: str = "1") -> tuple[float, float]:
        """(rows a run, bytes a run) of ``table``'s rows of the children matching ``where``."""
        col = "destination_id" if table == "inputs" else "run_uuid"
        total = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] or 1
        mine = con.execute(f"SELECT COUNT(*) FROM {table} WHERE {col} IN (SELECT id FROM kids) "
                           f"AND {where}").fetchone()[0]
        return mine / n, size.get(table, 0) * mine / total / n

    rows = []
    for label, table, where in (
            ("run row (runs)", "runs", "1"),
            ("params", "params", "1"),
            ("tags", "tags", "1"),
            ("metric points: curves/* (every epoch)", "metrics", "key LIKE 'curves/%'"),
            ("metric points: final/, min/, max/", "metrics", "key NOT LIKE 'curves/%'"),
            ("latest metric values (latest_metrics)", "latest_metrics", "1"),
            ("dataset input (inputs)", "inputs", "1")):
        r, b = share(table, where)
        rows.append((label, r, b, b))
    itags = size.get("input_tags", 0) / n
    rows.append(("dataset input tags (input_tags)", 1.0, itags, itags))
    # artifacts, by kind
    kinds: dict[str, list] = {}
    for (art,) in con.execute("SELECT artifact_uri FROM runs WHERE run_uuid IN (SELECT id FROM "
                              "kids)"):
        root = Path(art.replace("file://", ""))
        for f in root.rglob("*") if root.exists() else []:
            if not f.is_file():
                continue
            rel = f.relative_to(root).as_posix()
            kind = ("weights/epoch_*.npy (snapshots)" if rel.startswith("weights/epoch_") else
                    rel if rel in ("history.csv", "config.yaml", "run.log", "weights/initial.npy",
                                   "weights/final.npy", "weights/snapshots.npz")
                    else "other artifacts")
            st = f.stat()
            k = kinds.setdefault(kind, [0, 0, 0])
            k[0] += 1
            k[1] += st.st_size
            k[2] += st.st_blocks * 512
    for kind, (files, b, disk) in sorted(kinds.items()):
        rows.append((f"artifact {kind}", files / n, b / n, disk / n))
    db_bytes = db.stat().st_size
    say(f"\nrecord costs: {n} child runs of {parent[:8]} in {db} "
        f"({db_bytes / n / 1024:.1f} KB of mlflow.db a run)")
    say(f"{'part':45s} {'rows/files':>10s} {'bytes':>10s} {'on disk':>10s}")
    for label, r, b, disk in rows:
        say(f"{label:45s} {r:10.1f} {b / 1024:9.1f}K {disk / 1024:9.1f}K")
    tb = sum(b for _, _, b, _ in rows)
    td = sum(d for _, _, _, d in rows)
    say(f"{'all':45s} {'':10s} {tb / 1024:9.1f}K {td / 1024:9.1f}K")
    mdirs = []
    for (loc,) in con.execute("SELECT artifact_location FROM experiments"):
        models = Path(str(loc).replace("file://", "")) / "models"
        mdirs += [d for d in models.iterdir() if d.is_dir()] if models.is_dir() else []
    if mdirs:
        mb = sum(f.stat().st_size for d in mdirs for f in d.rglob("*") if f.is_file())
        say(f"logged models (one per sweep, its best run): {len(mdirs)}, {mb / 1024:.1f}K of files")


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
    if marker.exists() and (kind == "sqlite" or pg.cluster is None):
        return uri, marker.read_text().strip()  # a throwaway cluster's stores went with it
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
    ap.add_argument("--record-costs", metavar="FOLDER", type=Path,
                    help="only print what each part of a run's record costs in store bytes, for "
                         "the SQLite store in FOLDER (a store this benchmark built, e.g. with "
                         "--curves, or its template)")
    args = ap.parse_args()
    if args.record_costs is not None:
        if not (args.record_costs / "parent.txt").exists():
            print(f"bench_scale: --record-costs {args.record_costs}: no parent.txt there: give a "
                  "folder this benchmark built, e.g. /tmp/slnn-bench-scale/sqlite-4200-curves",
                  file=sys.stderr)
            return 2
        record_costs(args.record_costs)
        return 0
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
