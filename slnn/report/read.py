"""Read one sweep out of MLflow: its parent run, one row per cell, and every run's full history.

    from slnn.report.read import read_sweep
    sweep = read_sweep("sqlite:///mlflow.db", "<parent run id>")
    sweep.runs      # one row per cell: data, update, activation, lr, seed, outcome, test_error, ...
    sweep.tidy      # run_id, data, update, activation, lr, seed, outcome, epoch, step, metric, value

Params, tags and final metrics come from one ``mlflow.search_runs`` query; the per-epoch history
comes from each run's ``history.csv`` artifact, read straight from disk when the artifact store is
local and downloaded with a small thread pool otherwise. Nothing is fetched one metric at a time.
"""

from __future__ import annotations

import io
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from slnn.trainer import HISTORY_COLUMNS

METRICS = tuple(c for c in HISTORY_COLUMNS if c not in ("epoch", "step"))
KEYS = ["data", "update", "activation", "lr"]  # one cell of the grid, over seeds
TIDY_COLUMNS = ["run_id", "data", "update", "activation", "lr", "seed", "outcome", "epoch",
                "step", "metric", "value"]
FINALS = ("test_error", "test_loss", "epochs_run", "steps_run", "train_seconds")


class ReportError(RuntimeError):
    """The report cannot be made; the one-line message says what was tried and what to do."""


@dataclass
class Sweep:
    """Everything a report is made from; the frames are plain pandas, ready for a notebook."""

    uri: str
    parent_run_id: str
    experiment_id: str
    experiment_name: str
    study: str
    parent_status: str
    n_cells: int | None  # the grid's size as the sweep recorded it
    runs: pd.DataFrame  # one row per cell (the newest FINISHED child per config hash)
    history: pd.DataFrame  # wide: run_id, epoch, step and one column per metric
    n_children: int = 0  # every child, including superseded reruns
    notes: list[str] = field(default_factory=list)  # what is missing or odd, in sentences

    @property
    def done(self) -> pd.DataFrame:
        """The runs that have ended (not ``running``)."""
        return self.runs[self.runs["outcome"] != "running"]

    @cached_property
    def tidy(self) -> pd.DataFrame:
        """The long frame: one row per (run, epoch, metric)."""
        return tidy_frame(self.runs, self.history)


# --- finding the store, the experiment and the parent -----------------------------------------

def open_client(uri: str):
    """An ``MlflowClient`` for ``uri``, refusing a SQLite file that does not exist (MLflow would
    silently create an empty store)."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.exists():
            raise ReportError(f"no tracking store at {path}: run slnn-report where the sweep's "
                              "mlflow.db is, or pass --tracking-uri sqlite:////abs/path/mlflow.db")
    if uri.startswith(("http://", "https://")):
        _probe(uri)
    return MlflowClient(tracking_uri=uri)


def _probe(uri: str) -> None:
    """Fail in seconds when no server answers (MLflow's own client retries for minutes)."""
    from slnn.tracking import TrackingError, check_reachable

    try:
        check_reachable(uri)
    except TrackingError as e:
        raise ReportError(f"{e}, or pass --tracking-uri sqlite:///mlflow.db") from None


def _mlflow_call(uri: str, what: str, fn, *args, **kwargs):
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as e:
        if getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ReportError(f"MLflow at {uri} failed while {what}: {first}; check the store or pass "
                          "--tracking-uri") from None
    except Exception as e:  # connection refused, a broken database, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ReportError(f"cannot read MLflow at {uri} while {what}: {first}; check the server "
                          "is up or pass --tracking-uri") from None


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


# --- one row per cell --------------------------------------------------------------------------

def _col(df: pd.DataFrame, name: str, default=np.nan) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index)


def _runs_frame(df: pd.DataFrame) -> pd.DataFrame:
    """search_runs' frame -> the report's columns, with sensible types."""
    out = pd.DataFrame({
        "run_id": df["run_id"].astype(str),
        "status": df["status"].astype(str),
        "start_time": df["start_time"],
        "config_hash": _col(df, "tags.slnn.config_hash", None),
        "data": _col(df, "tags.slnn.data").fillna(_col(df, "params.data.name")),
        "update": _col(df, "tags.slnn.update").fillna(_col(df, "params.update.rule")),
        "activation": _col(df, "tags.slnn.activation").fillna(_col(df, "params.model.activation")),
        "lr": pd.to_numeric(_col(df, "params.optim.lr"), errors="coerce"),
        "seed": pd.to_numeric(_col(df, "params.seed"), errors="coerce"),
        "outcome": _col(df, "tags.slnn.outcome", None),
        "reason": _col(df, "tags.slnn.reason", "").fillna(""),
        "artifact_uri": _col(df, "artifact_uri", "").fillna(""),
    })
    for m in FINALS:
        out[m] = pd.to_numeric(_col(df, f"metrics.{m}"), errors="coerce")
    for k in ("data", "update", "activation"):
        out[k] = out[k].fillna("?").astype(str)
    # the status wins over a stale tag: a run still open is running; a closed run whose tag still
    # says running (its process died before recording an outcome) ended as its status says
    by_status = out["status"].map({"FAILED": "failed", "KILLED": "killed"}).fillna("unknown")
    stale = (out["status"] != "RUNNING") & (out["outcome"].isna() | (out["outcome"] == "running"))
    out.loc[stale, "outcome"] = by_status[stale]
    out.loc[out["status"] == "RUNNING", "outcome"] = "running"
    return out


def newest_per_cell(runs: pd.DataFrame) -> pd.DataFrame:
    """Per ``config_hash`` the newest FINISHED child, or else the newest child (a rerun after a
    failure leaves the FAILED/KILLED one beside the new one)."""
    r = runs.assign(_done=(runs["status"] == "FINISHED").astype(int))
    r = r.sort_values(["_done", "start_time"], ascending=[False, False], kind="stable")
    keyed = r["config_hash"].notna()
    kept = pd.concat([r[keyed].drop_duplicates("config_hash"), r[~keyed]])
    return kept.drop(columns="_done").sort_values(KEYS + ["seed"]).reset_index(drop=True)


def _varying_params(df: pd.DataFrame, keep: pd.Index) -> list[str]:
    """Params other than seed that differ inside one (data, update, activation, lr) cell."""
    sub = df.loc[keep]
    if sub.empty:
        return []
    keys = ["tags.slnn.data", "tags.slnn.update", "tags.slnn.activation", "params.optim.lr"]
    keys = [k for k in keys if k in sub.columns]
    params = [c for c in sub.columns if c.startswith("params.") and c not in
              ("params.seed", "params.optim.lr")
              and not c.startswith(("params.tracking.", "params.sweep."))]
    if not keys or not params:
        return []
    n = sub[keys + params].astype(str).groupby(keys)[params].nunique().max()
    return [c[len("params."):] for c in params if n[c] > 1]


# --- the histories -----------------------------------------------------------------------------

def _local_path(artifact_uri: str) -> Path | None:
    """The folder of a run's artifacts when the store keeps them on this machine."""
    if artifact_uri.startswith("file://"):
        return Path(unquote(urlparse(artifact_uri).path))
    if "://" not in artifact_uri and ":" not in artifact_uri.split("/")[0]:
        return Path(artifact_uri)
    return None


def _fetch(uri: str, run_id: str, artifact_uri: str, tmp: str) -> bytes | None:
    local = _local_path(artifact_uri)
    if local is not None:
        try:
            return (local / "history.csv").read_bytes()
        except OSError:
            pass  # not here after all (a server's path on another machine): ask the server
    import mlflow.artifacts

    try:
        p = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="history.csv",
                                                dst_path=os.path.join(tmp, run_id),
                                                tracking_uri=uri)
        return Path(p).read_bytes()
    except Exception:
        return None


def read_histories(uri: str, runs: pd.DataFrame, workers: int = 8) -> pd.DataFrame:
    """Every run's ``history.csv`` in one wide frame (``run_id`` first), parsed in one go: the
    files share a header, so their bodies are joined and handed to the CSV parser once."""
    todo = runs[runs["outcome"] != "running"]
    with tempfile.TemporaryDirectory(prefix="slnn-report-") as tmp:
        args = list(zip(todo["run_id"], todo["artifact_uri"]))
        if all(_local_path(a) is not None for _, a in args):
            blobs = [_fetch(uri, r, a, tmp) for r, a in args]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                blobs = list(pool.map(lambda ra: _fetch(uri, ra[0], ra[1], tmp), args))
    header = ",".join(HISTORY_COLUMNS).encode()
    ids, bodies = [], []
    for (run_id, _), blob in zip(args, blobs):
        if not blob:
            continue
        head, _, body = blob.partition(b"\n")
        if head.strip() != header or not body.strip():
            continue  # not a history this version of slnn wrote
        body = body if body.endswith(b"\n") else body + b"\n"
        ids.append((run_id, body.count(b"\n")))
        bodies.append(body)
    if not bodies:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in HISTORY_COLUMNS})
        empty = empty.astype({"epoch": "int64", "step": "int64"})
        empty.insert(0, "run_id", pd.Series(dtype=str))
        return empty
    wide = pd.read_csv(io.BytesIO(header + b"\n" + b"".join(bodies)), dtype="float64")
    wide.insert(0, "run_id", np.repeat([r for r, _ in ids], [n for _, n in ids]))
    wide["epoch"] = wide["epoch"].astype("int64")
    wide["step"] = wide["step"].astype("int64")
    return wide


def tidy_frame(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The long frame the issue asks for: one row per (run, epoch, metric), nan values kept.
    Built with NumPy (metric-major, like ``melt``): pandas' melt and merge take seconds at a
    thousand runs."""
    n, m = len(history), len(METRICS)
    meta = runs.set_index("run_id")
    at = meta.index.get_indexer(history["run_id"])  # the run's row in ``runs``, per history row

    def cat(values: pd.Series) -> pd.Categorical:
        c = pd.Categorical(values)
        return pd.Categorical.from_codes(np.tile(c.codes[at], m), c.categories)

    out = pd.DataFrame({
        "run_id": cat(meta.index.to_series()),
        "data": cat(meta["data"]), "update": cat(meta["update"]),
        "activation": cat(meta["activation"]),
        "lr": np.tile(meta["lr"].to_numpy(dtype=float)[at], m),
        "seed": np.tile(meta["seed"].to_numpy()[at], m),
        "outcome": cat(meta["outcome"]),
        "epoch": np.tile(history["epoch"].to_numpy(), m),
        "step": np.tile(history["step"].to_numpy(), m),
        "metric": pd.Categorical.from_codes(np.repeat(np.arange(m), n), list(METRICS)),
        "value": history[list(METRICS)].to_numpy(dtype=float).ravel(order="F"),
    })
    return out[TIDY_COLUMNS]


# --- the whole sweep ---------------------------------------------------------------------------

def _search_children(uri: str, experiment_id: str, parent_run_id: str) -> pd.DataFrame:
    """``mlflow.search_runs`` (params, tags and latest metrics as one pandas frame) against
    ``uri``, without leaving the process's global tracking URI changed."""
    import mlflow

    kw = dict(experiment_ids=[experiment_id], output_format="pandas",
              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")
    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # a future MLflow without the helper: set, search, restore
        from mlflow.tracking._tracking_service import utils

        prev = mlflow.get_tracking_uri() if utils.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(uri)
        try:
            return mlflow.search_runs(**kw)
        finally:
            if prev:
                mlflow.set_tracking_uri(prev)
    with _use_tracking_uri(uri):
        return mlflow.search_runs(**kw)


def _grid_hashes(client, parent) -> list[str] | None:
    """The config hashes of every cell of the sweep's grid (``cells.json`` on its parent)."""
    import json
    import tempfile

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


def _with_cells_done_elsewhere(client, uri: str, exp_id: str, parent, df: pd.DataFrame) -> pd.DataFrame:
    """Add the FINISHED runs of grid cells that this sweep skipped because another sweep had
    already run them (they are children of that other sweep's parent)."""
    hashes = _grid_hashes(client, parent)
    if not hashes:
        return df
    have = set(_col(df, "tags.slnn.config_hash", None).dropna())
    missing = set(hashes) - have
    if not missing:
        return df
    import mlflow

    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        done = mlflow.search_runs(experiment_ids=[exp_id], output_format="pandas",
                                  filter_string="attributes.status = 'FINISHED'")
    if done is None or done.empty or "tags.slnn.config_hash" not in done:
        return df
    extra = done[done["tags.slnn.config_hash"].isin(missing)]
    return pd.concat([df, extra], ignore_index=True) if len(extra) else df


def read_sweep(uri: str, parent_run_id: str) -> Sweep:
    """One ``search_runs`` for the children, then the histories. Raises ``ReportError`` with one
    line when the parent does not exist, is not a sweep's parent, or has no children."""
    client = open_client(uri)
    parent = _parent(client, uri, parent_run_id)
    exp_id = parent.info.experiment_id
    exp = _mlflow_call(uri, "looking up the experiment", client.get_experiment, exp_id)
    study = parent.data.tags.get("slnn.study", "sweep")
    df = _mlflow_call(uri, "searching the sweep's runs", _search_children, uri, exp_id,
                      parent_run_id)
    if df is None or df.empty:
        raise ReportError(f"sweep {parent_run_id} ({study}) at {uri} has no runs yet: wait for "
                          "its first job to start, or check the sweep's output for errors")
    df = _with_cells_done_elsewhere(client, uri, exp_id, parent, df)
    all_runs = _runs_frame(df)
    runs = newest_per_cell(all_runs)
    history = read_histories(uri, runs)
    first = (history.sort_values("epoch").drop_duplicates("run_id")
             .set_index("run_id")["test_error"])
    runs["initial_test_error"] = runs["run_id"].map(first)
    runs["has_history"] = runs["run_id"].isin(history["run_id"].unique())
    n_cells = parent.data.tags.get("slnn.n_cells")
    sweep = Sweep(uri=uri, parent_run_id=parent_run_id, experiment_id=exp_id,
                  experiment_name=exp.name if exp else exp_id, study=study,
                  parent_status=parent.info.status,
                  n_cells=int(n_cells) if n_cells and n_cells.isdigit() else None,
                  runs=runs, history=history, n_children=len(all_runs))
    sweep.notes += _notes(sweep, df, all_runs)
    return sweep


def _notes(sweep: Sweep, df: pd.DataFrame, all_runs: pd.DataFrame) -> list[str]:
    runs, notes = sweep.runs, []
    running = int((runs["outcome"] == "running").sum())
    if running:
        notes.append(f"{running} of {len(runs)} runs are still running: this report covers the "
                     f"{len(runs) - running} that have ended; run slnn-report --parent-run "
                     f"{sweep.parent_run_id} again when the sweep is over.")
    if sweep.n_cells and len(runs) < sweep.n_cells:
        notes.append(f"the sweep has {sweep.n_cells} cells but only {len(runs)} have a run under "
                     "its parent: it was interrupted or is still starting, or it skipped cells an "
                     "earlier sweep had already run (those runs belong to that sweep's report).")
    dup = len(all_runs) - len(runs)
    if dup:
        notes.append(f"{dup} older run(s) of cells that were run again are left out (the newest "
                     "FINISHED run of each config is used).")
    ended = runs[runs["outcome"] != "running"]
    if len(ended) and not ended["has_history"].any():
        kinds = ", ".join(f"{n} {k}" for k, n in ended["outcome"].value_counts().items())
        notes.append(f"no run has a per-epoch history ({kinds} of {len(ended)} ended runs), so "
                     "no curves could be drawn; the outcomes and the verdict say what happened.")
    nohist = ended[~ended["has_history"] & ~ended["outcome"].isin(["shape_mismatch"])]
    if len(nohist):
        kinds = ", ".join(f"{n} {k}" for k, n in nohist["outcome"].value_counts().items())
        notes.append(f"{len(nohist)} ended run(s) have no history.csv ({kinds}): they are counted "
                     "in the outcomes but have no curves.")
    vary = _varying_params(df, df.index[df["run_id"].isin(runs["run_id"])])
    if vary:
        notes.append("inside a (data, update, activation, lr) cell these params also vary: "
                     f"{', '.join(vary)}; the seeds of such a cell mix those settings.")
    return notes
