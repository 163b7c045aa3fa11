"""Read one sweep out of MLflow: its parent run, one row per cell, and every run's history.

    sweep = read_sweep("sqlite:///mlflow.db", "<parent run id>")   # sweep.runs, sweep.tidy

Runs come a page at a time, reduced at once to the few fields a report reads (``RunRecords``):
from a SQL store by a query of those columns (``RunReader``), from any other through paged
``search_runs``. Histories (each run's ``history.csv``) come a chunk of runs at a time and are
handed to ``on_chunk`` instead of kept. Shaping them into frames is ``slnn.report.frames``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from slnn.core.outcomes import Outcome
from slnn.report.frames import (FINALS, REQUIRED_HISTORY, SweepData, history_finals,
                                newest_per_cell, notes, parse_histories, runs_frame)

CHUNK = 200  # runs whose histories are read, parsed and handed on together
PAGE = 1000  # runs read from the store at a time


class ReportError(RuntimeError):
    """The report cannot be made; the one-line message says what was tried and what to do."""


# --- finding the store, the experiment and the parent -----------------------------------------

def open_client(uri: str):
    """An ``MlflowClient`` for ``uri``, refusing a SQLite file that does not exist (MLflow would
    silently create an empty store); a store that cannot be used is one line (``ReportError``)."""
    from slnn.tracking.store import TrackingError, client_for

    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.exists():
            raise ReportError(f"no tracking store at {path}: run slnn-report where the sweep's "
                              "mlflow.db is, or pass --tracking-uri sqlite:////abs/path/mlflow.db")
    try:
        return client_for(uri, write=False)
    except TrackingError as e:
        raise ReportError(f"{e}, or pass --tracking-uri") from None


def _mlflow_call(uri: str, what: str, fn, *args, **kwargs):
    from mlflow.exceptions import MlflowException

    from slnn.tracking.faults import describe

    try:
        return fn(*args, **kwargs)
    except MlflowException as e:
        if getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise ReportError(f"{describe(uri, e, what)}; or pass --tracking-uri") from None
    except Exception as e:  # connection refused, a broken database, a missing driver, ...
        raise ReportError(f"{describe(uri, e, what)}; or pass --tracking-uri") from None


def newest_sweep(uri: str, experiment: str) -> str:
    """The id of the newest sweep parent run in experiment ``experiment`` (a name or an id)."""
    client = open_client(uri)
    exp = _mlflow_call(uri, f"looking up experiment {experiment!r}",
                       client.get_experiment_by_name, experiment)
    if exp is None and experiment.isdigit():
        exp = _mlflow_call(uri, f"looking up experiment {experiment}", client.get_experiment,
                           experiment)
    if exp is None:
        names = _mlflow_call(uri, "listing experiments", client.search_experiments) or []
        known = ", ".join(sorted(e.name for e in names)[:10]) or "none"
        raise ReportError(f"no experiment {experiment!r} at {uri} (experiments there: {known}); "
                          "pass --experiment <name> or --tracking-uri <store>")
    runs = _mlflow_call(uri, "searching for sweeps", client.search_runs, [exp.experiment_id],
                        filter_string="tags.`slnn.sweep` = 'true'",
                        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise ReportError(f"experiment {exp.name!r} at {uri} has no sweep (no run tagged "
                          "slnn.sweep=true): run one with slnn-train -m ..., or pass --parent-run <id>")
    return runs[0].info.run_id


def find_sweep(uri: str, text: str) -> str:
    """The parent run id of the sweep ``text`` names, as users type it: the full id, any unique
    start of it (the 8 or 12 characters people copy), or the parent run's name
    (``guide_vs_correct-20260101-120000``, as the sweep's first and last lines call it)."""
    from mlflow.entities import ViewType

    text = text.strip()
    if not text:
        raise ReportError("--parent-run is empty: give a sweep's parent run id, the start of it, "
                          "or its name")
    if re.fullmatch(r"[0-9a-f]{32}", text):
        return text  # a whole id: read_sweep says what it is if it is no sweep's parent
    client = open_client(uri)
    exps = _mlflow_call(uri, "listing the experiments", client.search_experiments,
                        view_type=ViewType.ACTIVE_ONLY) or []
    sweeps = _mlflow_call(uri, "searching the sweeps", _all_runs, client,
                          [e.experiment_id for e in exps], "tags.`slnn.sweep` = 'true'") or []
    prefix = text.lower() if re.fullmatch(r"[0-9a-fA-F]+", text) else None
    hits = [r for r in sweeps if prefix and r.info.run_id.startswith(prefix)]
    hits += [r for r in sweeps if r.info.run_name == text and r not in hits]
    if len(hits) == 1:
        return hits[0].info.run_id
    if not hits:
        raise ReportError(f"no run {text!r} at {uri}: no sweep's parent run has an id starting "
                          "with it or that name; copy it from the sweep's first or last line, or "
                          "use --experiment <name> for the newest sweep")
    listed = ", ".join(f"{r.info.run_id} ({r.info.run_name})" for r in hits[:10])
    more = f" and {len(hits) - 10} more" if len(hits) > 10 else ""
    raise ReportError(f"{text!r} matches {len(hits)} sweeps at {uri}: {listed}{more}; give more "
                      "of the id")


def _all_runs(client, experiment_ids: list[str], filter_string: str) -> list:
    """Every run matching ``filter_string`` (all pages)."""
    out, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string,
                                  max_results=50000, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def _parent(client, uri: str, parent_run_id: str):
    run = _mlflow_call(uri, f"looking up run {parent_run_id!r}", client.get_run, parent_run_id)
    if run is None:
        raise ReportError(f"no run {parent_run_id!r} at {uri}: copy a sweep's parent run id from "
                          "the sweep's last line or the MLflow UI, or use --experiment <name>")
    if run.data.tags.get("slnn.sweep") != "true":
        up = run.data.tags.get("mlflow.parentRunId")
        hint = (f"its parent is {up}: try --parent-run {up}" if up else
                "use --experiment <name> for the newest sweep")
        raise ReportError(f"run {parent_run_id} at {uri} is not a sweep's parent run (no tag "
                          f"slnn.sweep=true); {hint}")
    return run


# --- runs as a frame ---------------------------------------------------------------------------

def search_frame(client, experiment_ids: list[str], filter_string: str) -> pd.DataFrame:
    """Every matching run (all pages) as one frame with the columns of ``mlflow.search_runs``:
    ``run_id``, ``status``, ``start_time``, ``artifact_uri``, ``params.*``, ``tags.*``,
    ``metrics.*`` (the latest value of each)."""
    rows, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string,
                                  max_results=50000, page_token=token)
        for r in page:
            row = {"run_id": r.info.run_id, "status": r.info.status,
                   "start_time": r.info.start_time, "artifact_uri": r.info.artifact_uri}
            row.update({f"params.{k}": v for k, v in r.data.params.items()})
            row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
            row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
            rows.append(row)
        token = page.token
        if not token:
            frame = pd.DataFrame(rows)
            if len(frame):
                frame["start_time"] = pd.to_datetime(frame["start_time"], unit="ms", utc=True)
            return frame


# --- runs, a page at a time, reduced to what a report reads ------------------------------------

# what a report reads of a run (``frames.runs_frame``): these tags, params and latest metrics;
# every other param only for the note on params that vary inside a cell (``RunRecords``)
_FINAL_COLUMNS = [c for pair in FINALS.values() for c in pair]
TAG_KEYS = ("slnn.config_hash", "slnn.data", "slnn.update", "slnn.activation", "slnn.outcome",
            "slnn.reason", "slnn.rule_fn", "slnn.rule_digest", "slnn.link_to",
            "slnn.stage", "slnn.arm", "slnn.trial",  # a tuned study's (slnn.sweep.tune)
            *dict.fromkeys(c[len("tags."):] for c in _FINAL_COLUMNS if c.startswith("tags.")))
PARAM_KEYS = ("data.name", "update.rule", "model.activation", "optim.lr", "seed", "data.seed",
              "train.epochs")
METRIC_KEYS = tuple(dict.fromkeys(c[len("metrics."):] for c in _FINAL_COLUMNS
                                  if c.startswith("metrics.")))
# the params the note on varying params ignores (``frames.varying_params``)
_NOT_VARYING = ("seed", "optim.lr")
_NAN = math.nan


class RunRecords:
    """Runs as columns of the few fields a report reads (``run_id``, ``status``, ``start_time``,
    ``artifact_uri``, ``tags.*``, ``params.*``, ``metrics.*`` as ``search_frame`` names them, a
    column only once some run has it), plus each run's other params as the id of their distinct
    set (a sweep's runs share a handful): a run costs a few hundred bytes, not its whole record."""

    def __init__(self):
        self.cols: dict[str, list] = {"run_id": [], "status": [], "start_time": [],
                                      "artifact_uri": [], "_sig": []}
        self.n = 0
        self._sigs: dict[tuple, int] = {}
        self.sig_params: list[dict] = []

    def add(self, run_id: str, status: str, start_time, artifact_uri: str, params: dict,
            tags: dict, metrics: dict) -> None:
        row = {"run_id": run_id, "status": status, "start_time": start_time,
               "artifact_uri": artifact_uri or ""}
        for k in TAG_KEYS:
            v = tags.get(k)
            if v is not None:
                row["tags." + k] = sys.intern(v)
        for k in PARAM_KEYS:
            v = params.get(k)
            if v is not None:
                row["params." + k] = sys.intern(v)
        for k in METRIC_KEYS:
            v = metrics.get(k)
            if v is not None:
                row["metrics." + k] = float(v)
        sig = tuple(sorted((k, v) for k, v in params.items() if k not in _NOT_VARYING
                           and not k.startswith(("tracking.", "sweep."))))
        if sig not in self._sigs:
            self._sigs[sig] = len(self.sig_params)
            self.sig_params.append(dict(sig))
        row["_sig"] = self._sigs[sig]
        for k in row.keys() - self.cols.keys():
            self.cols[k] = [_NAN] * self.n
        for k, col in self.cols.items():
            col.append(row.get(k, _NAN))
        self.n += 1

    def extend(self, other: "RunRecords") -> None:
        remap = []
        for sig in other.sig_params:
            key = tuple(sorted(sig.items()))
            if key not in self._sigs:
                self._sigs[key] = len(self.sig_params)
                self.sig_params.append(sig)
            remap.append(self._sigs[key])
        for k in other.cols.keys() - self.cols.keys():
            self.cols[k] = [_NAN] * self.n
        for k, col in self.cols.items():
            if k == "_sig":
                col += [remap[i] for i in other.cols["_sig"]]
            else:
                col += other.cols.get(k, [_NAN] * other.n)
        self.n += other.n

    def keep(self, mask: list[bool]) -> None:
        for k, col in self.cols.items():
            self.cols[k] = [v for v, m in zip(col, mask) if m]
        self.n = sum(mask)

    def column(self, name: str) -> list:
        return self.cols.get(name, [_NAN] * self.n)

    def frame(self) -> pd.DataFrame:
        """The runs as ``search_frame`` gives them (the columns above only)."""
        frame = pd.DataFrame({k: v for k, v in self.cols.items() if k != "_sig"})
        if len(frame):
            frame["start_time"] = pd.to_datetime(frame["start_time"], unit="ms", utc=True)
        return frame

    def params_frame(self, run_ids) -> pd.DataFrame:
        """One row per distinct (data, update, activation, lr, other params) among ``run_ids``:
        the cell's keys as tags and params, and every param (``frames.varying_params``)."""
        keys = ["tags.slnn.data", "tags.slnn.update", "tags.slnn.activation", "params.optim.lr"]
        keys = [k for k in keys if k in self.cols]
        wanted = set(run_ids)
        seen, rows = set(), []
        cols = [self.cols[k] for k in keys]
        for i, run_id in enumerate(self.cols["run_id"]):
            if run_id not in wanted:
                continue
            key = tuple(c[i] for c in cols) + (self.cols["_sig"][i],)
            if key in seen:
                continue
            seen.add(key)
            row = dict(zip(keys, key))
            row.update({"params." + k: v for k, v in self.sig_params[key[-1]].items()})
            rows.append(row)
        return pd.DataFrame(rows)


def _sql_scheme(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql")


def _tables():
    """The few columns of MLflow's tables a report reads, as SQLAlchemy's lightweight ``table``s
    (the schema MLflow's migrations have kept since 1.x; quoting is SQLAlchemy's per dialect)."""
    from sqlalchemy import column, table

    runs = table("runs", column("run_uuid"), column("status"), column("start_time"),
                 column("artifact_uri"), column("experiment_id"), column("lifecycle_stage"))
    tags = table("tags", column("run_uuid"), column("key"), column("value"))
    params = table("params", column("run_uuid"), column("key"), column("value"))
    latest = table("latest_metrics", column("run_uuid"), column("key"), column("value"),
                   column("is_nan"))
    return runs, tags, params, latest


class RunReader:
    """Runs of one experiment, a page at a time, as ``RunRecords``.

    On a SQL store the runs are read by a query of the few columns a report needs, through
    SQLAlchemy on the store's own URI (``_tables``): ``search_runs`` builds a
    full ``Run`` (every param, tag and metric as objects) for each run, which took 20 of the 57 s
    of a 4,200-run report and most of its memory. Any other store (a folder, an MLflow server) is
    read through paged ``MlflowClient.search_runs``."""

    def __init__(self, uri: str, client, experiment_id: str):
        self.uri, self.client, self.exp = uri, client, experiment_id
        self.engine = None
        if _sql_scheme(uri):
            from sqlalchemy import create_engine

            self.engine = create_engine(uri)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    # --- the queries
    def children(self, parent_run_id: str) -> RunRecords:
        if self.engine is None:
            return self._search(f"tags.mlflow.parentRunId = '{parent_run_id}'")
        from sqlalchemy import select

        _, tags, _, _ = _tables()
        kids = select(tags.c.run_uuid).where(tags.c.key == "mlflow.parentRunId",
                                             tags.c.value == parent_run_id)
        return self._sql(lambda run: run.c.run_uuid.in_(kids))

    def by_ids(self, run_ids: list[str]) -> RunRecords:
        out = RunRecords()
        for i in range(0, len(run_ids), PAGE if self.engine is not None else 100):
            page = run_ids[i:i + (PAGE if self.engine is not None else 100)]
            if self.engine is None:
                out.extend(self._search("attributes.run_id IN (" +
                                        ", ".join(f"'{t}'" for t in page) + ")"))
            else:
                out.extend(self._sql(lambda run, page=page: run.c.run_uuid.in_(page)))
        return out

    def finished_with_hashes(self, hashes: set[str]) -> RunRecords:
        """FINISHED runs of the experiment whose config hash is one of ``hashes``."""
        if self.engine is None:
            out = RunRecords()
            every = self._search("attributes.status = 'FINISHED'")
            mask = [h in hashes for h in every.column("tags.slnn.config_hash")]
            every.keep(mask)
            out.extend(every)
            return out
        from sqlalchemy import select

        _, tags, _, _ = _tables()
        out = RunRecords()
        todo = sorted(hashes)
        for i in range(0, len(todo), PAGE):
            with_hash = select(tags.c.run_uuid).where(tags.c.key == "slnn.config_hash",
                                                      tags.c.value.in_(todo[i:i + PAGE]))
            out.extend(self._sql(lambda run, q=with_hash: run.c.run_uuid.in_(q)
                                 & (run.c.status == "FINISHED")))
        return out

    # --- the two ways to read
    def _search(self, filter_string: str) -> RunRecords:
        from slnn.tracking.runs import iter_runs

        out = RunRecords()
        for r in iter_runs(self.client, [self.exp], filter_string, page=PAGE):
            out.add(r.info.run_id, r.info.status, r.info.start_time, r.info.artifact_uri,
                    r.data.params, r.data.tags, r.data.metrics)
        return out

    def _sql(self, where) -> RunRecords:
        """The runs ``where(runs table)`` selects in this experiment (active ones, newest first,
        as ``search_runs`` orders them), their fields read a page of runs at a time."""
        from sqlalchemy import select

        run, tag, param, latest = _tables()
        out = RunRecords()
        q = (select(run.c.run_uuid, run.c.status, run.c.start_time, run.c.artifact_uri)
             .where(run.c.experiment_id == int(self.exp), run.c.lifecycle_stage == "active",
                    where(run))
             .order_by(run.c.start_time.desc(), run.c.run_uuid))
        with self.engine.connect() as conn:
            runs = conn.execute(q).all()
            for i in range(0, len(runs), PAGE):
                page = runs[i:i + PAGE]
                ids = [r[0] for r in page]
                tags: dict = {r: {} for r in ids}
                params: dict = {r: {} for r in ids}
                metrics: dict = {r: {} for r in ids}
                for run_id, k, v in conn.execute(
                        select(tag.c.run_uuid, tag.c.key, tag.c.value)
                        .where(tag.c.run_uuid.in_(ids), tag.c.key.in_(TAG_KEYS))):
                    if v is not None:
                        tags[run_id][k] = v
                for run_id, k, v in conn.execute(
                        select(param.c.run_uuid, param.c.key, param.c.value)
                        .where(param.c.run_uuid.in_(ids))):
                    params[run_id][k] = v
                for run_id, k, v, nan in conn.execute(
                        select(latest.c.run_uuid, latest.c.key, latest.c.value, latest.c.is_nan)
                        .where(latest.c.run_uuid.in_(ids), latest.c.key.in_(METRIC_KEYS))):
                    metrics[run_id][k] = math.nan if nan else float(v)
                for run_id, status, start, art in page:
                    out.add(run_id, status, start, art, params[run_id], tags[run_id],
                            metrics[run_id])
        return out


# --- the histories -----------------------------------------------------------------------------

def _local_path(artifact_uri: str) -> Path | None:
    """The folder of a run's artifacts when the store keeps them on this machine."""
    if artifact_uri.startswith("file://"):
        return Path(unquote(urlparse(artifact_uri).path))
    if "://" not in artifact_uri and ":" not in artifact_uri.split("/")[0]:
        return Path(artifact_uri)
    return None


def _fetch(uri: str, run_id: str, artifact_uri: str, tmp: str,
           name: str = "history.csv") -> bytes | None:
    """One artifact of a run (``name``, e.g. ``weights/initial.npy``), or None."""
    local = _local_path(artifact_uri)
    if local is not None:
        try:
            return (local / name).read_bytes()
        except OSError:
            pass  # not here after all (a server's path on another machine): ask the server
    import mlflow.artifacts

    try:
        p = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name,
                                                dst_path=os.path.join(tmp, run_id),
                                                tracking_uri=uri)
        return Path(p).read_bytes()
    except Exception:
        return None


def artifact_reader(uri: str):
    """``fetch(run_id, artifact_uri, name) -> bytes | None`` for ``slnn.report.step_cosine``."""
    def fetch(run_id: str, artifact_uri: str, name: str) -> bytes | None:
        with tempfile.TemporaryDirectory(prefix="slnn-report-") as tmp:
            return _fetch(uri, run_id, artifact_uri, tmp, name)
    return fetch


def read_histories(uri: str, runs: pd.DataFrame, workers: int = 8):
    """Every ended run's ``history.csv`` in one wide frame, and the runs whose file lacks a
    needed column (``frames.parse_histories``)."""
    # a shape_mismatch run never trained: it has no history to look for (asking a local store's
    # server for each missing file costs a download attempt per run)
    todo = runs[~runs["outcome"].isin([Outcome.RUNNING, Outcome.SHAPE_MISMATCH])]
    args = list(zip(todo["run_id"], todo["artifact_uri"]))
    with tempfile.TemporaryDirectory(prefix="slnn-report-") as tmp:
        if all(_local_path(a) is not None for _, a in args):
            blobs = [_fetch(uri, r, a, tmp) for r, a in args]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                blobs = list(pool.map(lambda ra: _fetch(uri, ra[0], ra[1], tmp), args))
    return parse_histories({r: b for (r, _), b in zip(args, blobs)})


# --- the whole sweep ---------------------------------------------------------------------------

def _grid_hashes(client, parent) -> list[str] | None:
    """The config hashes of every cell of the sweep's grid (``cells.json`` on its parent)."""
    local = _local_path(parent.info.artifact_uri or "")
    try:
        if local is not None:
            path = local / "cells.json"
            if not path.exists():
                return None
            return json.loads(path.read_text())["hashes"]
        with tempfile.TemporaryDirectory() as tmp:
            return json.loads(Path(client.download_artifacts(parent.info.run_id, "cells.json", tmp))
                              .read_text())["hashes"]
    except Exception:  # noqa: BLE001 - an older sweep without the file: children only
        return None


def _with_cells_done_elsewhere(reader: RunReader, parent, recs: RunRecords) -> None:
    """Add the FINISHED runs of grid cells that this sweep skipped because another sweep had
    already run them (they are children of that other sweep's parent)."""
    hashes = _grid_hashes(reader.client, parent)
    if not hashes:
        return
    have = {h for h in recs.column("tags.slnn.config_hash") if isinstance(h, str)}
    missing = set(hashes) - have
    if missing:
        recs.extend(reader.finished_with_hashes(missing))


def _follow_links(reader: RunReader, recs: RunRecords) -> None:
    """Replace each link run (a cell this sweep reused from another sweep) by the run it links
    to, whose history and artifacts are the cell's."""
    links = [isinstance(t, str) for t in recs.column("tags.slnn.link_to")]
    if not any(links):
        return
    targets = list(dict.fromkeys(t for t, is_link in zip(recs.column("tags.slnn.link_to"), links)
                                 if is_link))
    recs.keep([not is_link for is_link in links])
    recs.extend(reader.by_ids(targets))


def _reap(client, exp_id: str) -> None:
    """Runs of dead processes are closed as KILLED first, so the report does not count them as
    running (best effort: a read-only store is still reported)."""
    from slnn.tracking.runs import reap_dead_runs

    try:
        reap_dead_runs(client, exp_id)
    except Exception:  # noqa: BLE001
        pass


def parent_run(uri: str, parent_run_id: str):
    """The sweep's parent run (``ReportError`` if it is none)."""
    return _parent(open_client(uri), uri, parent_run_id)


def read_sweep(uri: str, parent_run_id: str, *, on_chunk=None, chunk: int = CHUNK) -> SweepData:
    """The sweep's runs, then their histories, ``chunk`` runs at a time. With ``on_chunk``, each
    chunk's rows of ``runs`` and their wide history are handed to ``on_chunk(runs, history)``
    as they are read and not kept (``SweepData.history`` is then empty); the runs' columns made
    from the histories (``frames.history_finals``) are filled in either way. Raises
    ``ReportError`` with one line when the parent does not exist, is not a sweep's parent, or has
    no children."""
    client = open_client(uri)
    parent = _parent(client, uri, parent_run_id)
    exp_id = parent.info.experiment_id
    _reap(client, exp_id)
    exp = _mlflow_call(uri, "looking up the experiment", client.get_experiment, exp_id)
    study = parent.data.tags.get("slnn.study", "sweep")
    reader = RunReader(uri, client, exp_id)
    try:
        recs = _mlflow_call(uri, "searching the sweep's runs", reader.children, parent_run_id)
        if recs is not None and recs.n:
            _mlflow_call(uri, "reading the runs this sweep reused", _follow_links, reader, recs)
        recs = recs if recs is not None else RunRecords()
        # cells other sweeps ran (done before, or claimed by a concurrent sweep) count as well
        _mlflow_call(uri, "searching runs of cells done by other sweeps",
                     _with_cells_done_elsewhere, reader, parent, recs)
    finally:
        reader.close()
    if not recs.n:
        raise ReportError(f"sweep {parent_run_id} ({study}) at {uri} has no runs yet: wait for "
                          "its first job to start, or check the sweep's output for errors")
    all_runs = runs_frame(recs.frame())
    runs = newest_per_cell(all_runs)
    varying = recs.params_frame(runs["run_id"])
    del recs
    kept, finals, lacking, have = [], [], {}, set()
    for start in range(0, len(runs), chunk):
        part = runs.iloc[start:start + chunk]
        history, lack = read_histories(uri, part)
        lacking.update(lack)
        finals.append(history_finals(part, history))
        have.update(history["run_id"].unique())
        if on_chunk is not None:
            on_chunk(part, history)
        else:
            kept.append(history)
    if not kept:
        kept = [parse_histories({})[0]]
    history = pd.concat(kept, ignore_index=True) if len(kept) > 1 else kept[0]
    finals = pd.concat(finals) if finals else history_finals(runs, history)
    for col in finals.columns:
        runs[col] = runs["run_id"].map(finals[col])
    runs["has_history"] = runs["run_id"].isin(have)
    n_cells = parent.data.tags.get("slnn.n_cells")
    sweep = SweepData(uri=uri, parent_run_id=parent_run_id, experiment_id=exp_id,
                      experiment_name=exp.name if exp else exp_id, study=study,
                      parent_status=parent.info.status,
                      n_cells=int(n_cells) if n_cells and n_cells.isdigit() else None,
                      runs=runs, history=history, n_children=len(all_runs),
                      command=parent.data.tags.get("slnn.command", ""))
    if lacking:
        named = ", ".join(f"{r} (no {', '.join(m)})" for r, m in list(lacking.items())[:5])
        more = f" and {len(lacking) - 5} more" if len(lacking) > 5 else ""
        sweep.notes.append(f"{len(lacking)} run(s) have a history.csv without a column the report "
                           f"needs ({', '.join(REQUIRED_HISTORY)}), so they have no curves: "
                           f"{named}{more}.")
    sweep.notes += notes(sweep, varying, all_runs)
    return sweep
