"""A report's data files, from which every report is drawn, so that it can be drawn again without
the store (``slnn-report --from DIR``): ``sweep.json`` (the header's facts), ``runs.csv`` (a row
per cell), ``tidy.parquet`` (every run's history, a row group of whole runs at a time,
``TidyWriter``/``tidy_chunks``), and where needed ``identity.csv`` and ``rulecheck.json``.
``write_inputs`` writes them, ``load_inputs`` reads them back; docs/reports.md lists each.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from slnn.report.frames import (FINAL_COLUMNS, METRICS, SweepData, history_finals,
                                needed_runs, parse_histories, tidy_frame)

FORMAT = 1
SWEEP = "sweep.json"
RUNS = "runs.csv"
TIDY = "tidy.parquet"
IDENTITY = "identity.csv"
RULECHECK = "rulecheck.json"
REQUIRED = (SWEEP, RUNS, TIDY)
# tidy.parquet's metadata key saying that each row group holds whole runs (files written before
# it are one metric-major frame: read whole)
WHOLE_RUNS = b"slnn.row_groups"
CHUNK = 200  # runs per row group when a sweep held in memory is written
# runs.csv's text columns: read as text ("None", the logged null of data.seed, stays "None")
TEXT = ("run_id", "status", "start_time", "config_hash", "data", "update", "activation",
        "data_seed", "outcome", "reason", "rule_digest", "rule_fn", "stage", "arm")


class MissingData(ValueError):
    """A folder lacks a data file a report needs; the message names it."""


@dataclass
class Inputs:
    """What a report is rendered from, as read back from its folder."""

    sweep: SweepData
    identity: pd.DataFrame | None
    rule_checks: dict | None
    facts: dict  # sweep.json as read


# --- writing ---------------------------------------------------------------------------------

def facts_of(sweep: SweepData, folder: str | None, target_error: float) -> dict:
    """sweep.json's content for ``sweep`` (no path or password of this machine in it)."""
    from slnn.report.regenerate import display_uri
    from slnn.tracking.console import portable
    from slnn.tracking.faults import mask

    return {"format": FORMAT, "parent_run_id": sweep.parent_run_id,
            "experiment_id": str(sweep.experiment_id), "experiment_name": sweep.experiment_name,
            "tracking_uri": mask(display_uri(sweep.uri)), "study": sweep.study,
            "parent_status": sweep.parent_status, "n_cells": sweep.n_cells,
            "n_children": int(sweep.n_children), "command": mask(portable(sweep.command or "")),
            "notes": list(sweep.notes), "folder": folder, "target_error": float(target_error),
            "files": list(REQUIRED)}


def shown_folder(folder: Path) -> str | None:
    """``folder`` relative to the working directory, or None when it is not below it (its
    absolute path belongs to this machine)."""
    try:
        return Path(folder).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return None


class TidyWriter:
    """tidy.parquet written a chunk of runs at a time: ``write(runs, history)`` appends the
    chunk's rows (``frames.tidy_frame``) as one row group; ``close()`` ends the file. The text
    columns are dictionaries with 32-bit indices whatever a chunk holds, so every row group has
    the schema of the first."""

    def __init__(self, path: Path, runs: pd.DataFrame):
        import pyarrow as pa
        import pyarrow.parquet as pq

        empty = tidy_frame(runs.iloc[:0], parse_histories({})[0])
        base = pa.Schema.from_pandas(empty, preserve_index=False)
        fields = [pa.field(f.name, pa.dictionary(pa.int32(), pa.string()))
                  if pa.types.is_dictionary(f.type) else f for f in base]
        self.schema = pa.schema(fields, metadata={**(base.metadata or {}),
                                                  WHOLE_RUNS: b"whole runs"})
        self.path = Path(path)
        self._writer = pq.ParquetWriter(self.path, self.schema)

    def write(self, runs: pd.DataFrame, history: pd.DataFrame) -> None:
        import pyarrow as pa

        if not len(history):
            return
        table = pa.Table.from_pandas(tidy_frame(runs, history), schema=self.schema,
                                     preserve_index=False)
        self._writer.write_table(table, row_group_size=len(table))

    def close(self) -> None:
        self._writer.close()


def write_tidy(path: Path, runs: pd.DataFrame, history: pd.DataFrame) -> None:
    """tidy.parquet of a sweep held in memory, ``CHUNK`` runs a row group."""
    w = TidyWriter(path, runs)
    try:
        for start in range(0, len(runs), CHUNK):
            part = runs.iloc[start:start + CHUNK]
            w.write(part, history[history["run_id"].isin(part["run_id"])])
    finally:
        w.close()


def write_inputs(sweep: SweepData, out: Path, *, target_error: float,
                 identity: pd.DataFrame | None = None, rule_checks: dict | None = None,
                 tidy_written: bool = False) -> None:
    """Write the data files of ``sweep`` (and the store-only results) into ``out``;
    ``tidy_written``: tidy.parquet is there already (``TidyWriter`` while reading the store)."""
    out.mkdir(parents=True, exist_ok=True)
    facts = facts_of(sweep, shown_folder(out), target_error)
    if not tidy_written:
        write_tidy(out / TIDY, sweep.runs, sweep.history)
    # no path of the machine in the data: a user rule is named by its digest there, not its file
    sweep.runs.drop(columns=["artifact_uri", "rule_fn"], errors="ignore").to_csv(out / RUNS,
                                                                           index=False)
    if identity is not None:
        identity.to_csv(out / IDENTITY, index=False)
        facts["files"].append(IDENTITY)
    if rule_checks is not None:
        write_checks(out / RULECHECK, rule_checks)
        facts["files"].append(RULECHECK)
    (out / SWEEP).write_text(json.dumps(facts, indent=1) + "\n")


def copy_inputs(src: Path, out: Path) -> None:
    """Copy the data files listed in ``src``'s sweep.json into ``out``, byte for byte."""
    if src.resolve() == out.resolve():
        return
    out.mkdir(parents=True, exist_ok=True)
    for name in json.loads((src / SWEEP).read_text()).get("files", REQUIRED):
        shutil.copyfile(src / name, out / name)


# --- reading ---------------------------------------------------------------------------------

def check_folder(src: Path) -> dict:
    """sweep.json of ``src``, after checking that every file it lists is there; one line naming
    the first missing one otherwise (``MissingData``)."""
    src = Path(src)
    if not src.is_dir():
        raise MissingData(f"--from {src}: no such folder: give a report's folder (it holds "
                          f"{', '.join(REQUIRED)})")
    if not (src / SWEEP).exists():
        raise MissingData(f"--from {src}: no {SWEEP} there: the folder of a report written by "
                          "this slnn holds it; write one from the store with slnn-report "
                          "--parent-run <id> --out <folder>")
    try:
        facts = json.loads((src / SWEEP).read_text())
    except (ValueError, OSError) as e:
        raise MissingData(f"--from {src}: {SWEEP} is not readable JSON ({e}): write it again "
                          "from the store with slnn-report --parent-run <id> --out <folder>") \
            from None
    for name in dict.fromkeys([*REQUIRED, *facts.get("files", [])]):
        if not (src / name).exists():
            raise MissingData(f"--from {src}: no {name} there (its {SWEEP} lists it): copy the "
                              "whole report folder, or write it again from the store")
    return facts


def read_runs(path: Path) -> pd.DataFrame:
    head = pd.read_csv(path, nrows=0).columns
    runs = pd.read_csv(path, keep_default_na=False, na_values=[""],
                       dtype={c: str for c in TEXT if c in head})
    if "reason" in runs:
        runs["reason"] = runs["reason"].fillna("")
    return runs


def history_of(tidy: pd.DataFrame) -> pd.DataFrame:
    """The wide history (run_id, epoch, step, one column per metric) back from the tidy frame,
    rows in the order the tidy frame has them (``frames.tidy_frame`` is metric-major). Runs and
    metrics are compared by their codes (``pd.factorize``): turning a million categorical
    labels into strings took most of a report's reading."""
    columns = ["run_id", "epoch", "step", *METRICS]
    if tidy.empty:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns[1:]})
        empty.insert(0, "run_id", pd.Series(dtype=str))
        return empty.astype({"epoch": "int64", "step": "int64"})
    mcodes, mnames = pd.factorize(tidy["metric"])
    code_of = {str(m): i for i, m in enumerate(mnames)}
    rcodes, rnames = pd.factorize(tidy["run_id"])
    rnames = np.array([str(r) for r in rnames], dtype=object)
    epoch = tidy["epoch"].to_numpy()
    value = tidy["value"].to_numpy(dtype="float64")
    first = mcodes == mcodes[0]
    runs_first, epochs_first = rcodes[first], epoch[first]
    wide = pd.DataFrame({"run_id": rnames[runs_first],
                         "epoch": epochs_first.astype("int64"),
                         "step": tidy["step"].to_numpy()[first].astype("int64")})
    keys = None
    for m in METRICS:
        sel = mcodes == code_of.get(m, -2)
        if sel.sum() == len(wide) and (rcodes[sel] == runs_first).all() and \
                (epoch[sel] == epochs_first).all():
            wide[m] = value[sel]
        else:  # another order, or a metric some runs lack: by (run, epoch)
            if keys is None:
                keys = pd.MultiIndex.from_arrays([wide["run_id"], wide["epoch"]])
            s = pd.Series(value[sel], index=pd.MultiIndex.from_arrays(
                [rnames[rcodes[sel]], epoch[sel]]))
            s = s[~s.index.duplicated()]
            wide[m] = s.reindex(keys).to_numpy(dtype="float64")
    return wide[columns]


HISTORY_OF = ["run_id", "epoch", "step", "metric", "value"]  # the columns history_of reads


def tidy_chunks(path: Path):
    """``chunks(runs=None)``: a function that yields tidy.parquet's wide history (``history_of``)
    a row group at a time, or, with ``runs`` (a set of run ids), only those runs' rows, skipping
    row groups without them. A file written before row groups held whole runs is read whole, once
    (its wide history is kept for the next call)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    meta = pf.schema_arrow.metadata or {}
    if WHOLE_RUNS not in meta:
        whole = []

        def legacy(runs=None):
            if not whole:
                whole.append(history_of(pd.read_parquet(path)))
            h = whole[0]
            yield h if runs is None else h[h["run_id"].isin(runs)]
        return legacy

    import pyarrow as pa

    def chunks(runs=None):
        for i in range(pf.num_row_groups):
            if runs is not None:
                ids = pf.read_row_group(i, columns=["run_id"]).column(0)
                if not any(r in runs for r in ids.unique().to_pylist()):
                    continue
            h = history_of(pf.read_row_group(i, columns=HISTORY_OF).to_pandas())
            pa.default_memory_pool().release_unused()  # Arrow's pool keeps what it freed
            yield h if runs is None else h[h["run_id"].isin(runs)]
    return chunks


def load_inputs(src: Path, *, full: bool = False, derived: bool = False) -> Inputs:
    """The folder's data files as a ``SweepData`` plus the store-only results.

    tidy.parquet is read a row group at a time: first for each run's figures made from its
    history (``frames.history_finals``), then for the histories the report draws
    (``frames.needed_runs``), which are all ``SweepData.history`` holds (``history_runs`` says
    so); ``full`` keeps every run's history and the tidy frame as the file has it. ``derived``:
    runs.csv's columns made from the histories were made by this code in this process (the
    store was just read), so the first pass is skipped."""
    src = Path(src)
    facts = check_folder(src)
    runs = read_runs(src / RUNS)
    chunks = tidy_chunks(src / TIDY)
    if derived and {*FINAL_COLUMNS, "has_history"} <= set(runs.columns):
        have = set(runs.loc[runs["has_history"].astype(bool), "run_id"])
    else:
        finals, have = [], set()
        for h in chunks():
            if len(h):
                ids = h["run_id"].unique()
                have.update(ids)
                finals.append(history_finals(runs[runs["run_id"].isin(ids)], h))
        if finals:  # derived columns: made again by this code, from the histories
            f = pd.concat(finals)
            for col in FINAL_COLUMNS:
                runs[col] = runs["run_id"].map(f[col])
    runs["has_history"] = runs["run_id"].isin(have)
    study = facts.get("study", "sweep")
    needed = None if full else needed_runs(runs, study)
    if needed is not None and have and not (needed & have):
        # nothing drawn, but the figures must still see that histories exist
        needed = {next(iter(sorted(have)))}
    parts = [h for h in chunks(needed) if len(h)]
    history = pd.concat(parts, ignore_index=True) if parts else history_of(pd.DataFrame())
    n_cells = facts.get("n_cells")
    sweep = SweepData(uri=facts.get("tracking_uri", ""), parent_run_id=facts["parent_run_id"],
                      experiment_id=str(facts.get("experiment_id", "")),
                      experiment_name=facts.get("experiment_name", ""),
                      study=study,
                      parent_status=facts.get("parent_status", ""),
                      n_cells=int(n_cells) if n_cells is not None else None, runs=runs,
                      history=history, n_children=int(facts.get("n_children", len(runs))),
                      notes=list(facts.get("notes", [])), command=facts.get("command", ""),
                      history_runs="all" if full else "needed")
    if full:
        sweep.__dict__["tidy"] = pd.read_parquet(src / TIDY)  # the cached property: the file
    sweep.folder = facts.get("folder")
    identity = None
    if IDENTITY in facts.get("files", []):
        identity = pd.read_csv(src / IDENTITY, dtype={"run_id": str, "data": str,
                                                     "activation": str})
    checks = None
    if RULECHECK in facts.get("files", []):
        checks = checks_from_json(json.loads((src / RULECHECK).read_text()))
    return Inputs(sweep, identity, checks, facts)


# --- the checker's results as data -----------------------------------------------------------

def checks_to_json(checks: dict) -> dict:
    """``{rule: RuleCheck}`` as JSON: every figure the report shows, not the batches' arrays."""
    return {rule: {"rule": rc.rule, "label": rc.label, "note": rc.note,
                   "single": {a: list(s) for a, s in rc.single.items()},
                   "results": (None if rc.results is None
                               else [r.to_json() for r in rc.results])}
            for rule, rc in checks.items()}


def write_checks(path: Path, checks: dict) -> None:
    path.write_text(json.dumps(checks_to_json(checks), indent=1, default=_plain) + "\n")


def _plain(x):
    """A NumPy scalar or array as JSON has it."""
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serializable")


def _restore(cls, values: dict, skip: tuple = ()):
    """An instance of a checker result class with ``values`` as its attributes, without running
    its ``__post_init__`` (which would check the batches again)."""
    obj = object.__new__(cls)
    for k, v in values.items():
        if k in skip or isinstance(getattr(cls, k, None), property):
            continue
        setattr(obj, k, v)
    return obj


def _shape(j: dict):
    from slnn.check.checker import ShapeCheck

    s = _restore(ShapeCheck, j, skip=("W", "step", "shape", "batch_sizes"))
    s.fit = j.get("shape", "")
    steps = [tuple(x) for x in j.get("step", [])] or [None]
    s.batches = [SimpleNamespace(n=n, step_shape=steps[i % len(steps)], fit=s.fit)
                 for i, n in enumerate(j.get("batch_sizes", []))]
    return s


def checks_from_json(data: dict) -> dict:
    from slnn.check.checker import ActivationResult
    from slnn.report.rulecheck import RuleCheck

    out = {}
    for rule, v in data.items():
        results = None
        if v.get("results") is not None:
            results = []
            for j in v["results"]:
                r = _restore(ActivationResult, j, skip=("shapes",))
                r.shapes = [_shape(s) for s in j.get("shapes", [])]
                results.append(r)
        out[rule] = RuleCheck(v["rule"], v["label"], results=results, note=v.get("note", ""),
                              single={a: tuple(s) for a, s in v.get("single", {}).items()})
    return out
