"""Read one sweep out of MLflow: its parent run, one row per cell, and every run's full history.

    from slnn.report.source import read_sweep
    sweep = read_sweep("sqlite:///mlflow.db", "<parent run id>")
    sweep.runs      # one row per cell: data, update, activation, lr, seed, outcome, test_error, ...
    sweep.tidy      # run_id, data, update, activation, lr, seed, outcome, epoch, step, metric, value

Params, tags and final metrics come from paged ``MlflowClient.search_runs`` queries; the
per-epoch history comes from each run's ``history.csv`` artifact, read straight from disk when the
artifact store is local and downloaded with a small thread pool otherwise. Nothing is fetched one
metric at a time. Shaping what was read into frames is ``slnn.report.frames`` (no MLflow there).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from slnn.core.outcomes import Outcome
from slnn.report.frames import (REQUIRED_HISTORY, SweepData, add_history_finals,
                                newest_per_cell, notes, parse_histories, runs_frame)


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


def _with_cells_done_elsewhere(client, exp_id: str, parent, df: pd.DataFrame) -> pd.DataFrame:
    """Add the FINISHED runs of grid cells that this sweep skipped because another sweep had
    already run them (they are children of that other sweep's parent)."""
    hashes = _grid_hashes(client, parent)
    if not hashes:
        return df
    have = set(df["tags.slnn.config_hash"].dropna()) if "tags.slnn.config_hash" in df else set()
    missing = set(hashes) - have
    if not missing:
        return df
    done = search_frame(client, [exp_id], "attributes.status = 'FINISHED'")
    if done.empty or "tags.slnn.config_hash" not in done:
        return df
    extra = done[done["tags.slnn.config_hash"].isin(missing)]
    return pd.concat([df, extra], ignore_index=True) if len(extra) else df


def _follow_links(client, exp_id: str, df: pd.DataFrame) -> pd.DataFrame:
    """Replace each link run (a cell this sweep reused from another sweep) by the run it links
    to, whose history and artifacts are the cell's."""
    if "tags.slnn.link_to" not in df or df["tags.slnn.link_to"].isna().all():
        return df
    links = df["tags.slnn.link_to"].notna()
    targets = list(dict.fromkeys(df.loc[links, "tags.slnn.link_to"]))
    found = [search_frame(client, [exp_id], "attributes.run_id IN (" +
                          ", ".join(f"'{t}'" for t in targets[i:i + 100]) + ")")
             for i in range(0, len(targets), 100)]
    return pd.concat([df[~links], *found], ignore_index=True)


def _reap(client, exp_id: str) -> None:
    """Runs of dead processes are closed as KILLED first, so the report does not count them as
    running (best effort: a read-only store is still reported)."""
    from slnn.tracking.runs import reap_dead_runs

    try:
        reap_dead_runs(client, exp_id)
    except Exception:  # noqa: BLE001
        pass


def read_sweep(uri: str, parent_run_id: str) -> SweepData:
    """The sweep's runs, then their histories. Raises ``ReportError`` with one line when the
    parent does not exist, is not a sweep's parent, or has no children."""
    client = open_client(uri)
    parent = _parent(client, uri, parent_run_id)
    exp_id = parent.info.experiment_id
    _reap(client, exp_id)
    exp = _mlflow_call(uri, "looking up the experiment", client.get_experiment, exp_id)
    study = parent.data.tags.get("slnn.study", "sweep")
    df = _mlflow_call(uri, "searching the sweep's runs", search_frame, client, [exp_id],
                      f"tags.mlflow.parentRunId = '{parent_run_id}'")
    if df is not None and not df.empty:
        df = _mlflow_call(uri, "reading the runs this sweep reused", _follow_links, client,
                          exp_id, df)
    # cells other sweeps ran (done before, or claimed by a concurrent sweep) count as well
    df = _mlflow_call(uri, "searching runs of cells done by other sweeps",
                      _with_cells_done_elsewhere, client, exp_id, parent,
                      df if df is not None else pd.DataFrame())
    if df is None or df.empty:
        raise ReportError(f"sweep {parent_run_id} ({study}) at {uri} has no runs yet: wait for "
                          "its first job to start, or check the sweep's output for errors")
    all_runs = runs_frame(df)
    runs = newest_per_cell(all_runs)
    history, lacking = read_histories(uri, runs)
    add_history_finals(runs, history)
    runs["has_history"] = runs["run_id"].isin(history["run_id"].unique())
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
    sweep.notes += notes(sweep, df, all_runs)
    return sweep
