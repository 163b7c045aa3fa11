"""A report's data files: everything a report is drawn from, so that it can be drawn again
without the store (``slnn-report --from DIR``).

Reading the store ends by writing them (``write_inputs``); every report, from the store or from a
folder, is then rendered from them as read back (``load_inputs``), so the two cannot differ:

- ``sweep.json``: the sweep's header facts (parent run id, experiment, tracking URI as shown,
  parent status, counts, study, the command that ran it, what is missing), the folder the data
  were first written to, the target error, and the list of files below that this report needs;
- ``runs.csv``: one row per cell (the newest run per config), as read from the store;
- ``tidy.parquet``: every run's history, one row per (run, epoch, metric);
- ``identity.csv`` (sweeps with the guide's rule): the cos(z, x) identity checked on logged runs,
  which needs their initial weights and configs from the store's artifacts (exact figures);
- ``rulecheck.json`` (sweeps with a rule other than the guide's two): the checker's results per
  rule (``slnn.report.rulecheck``), so a report is drawn again without running any rule.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from slnn.report.frames import METRICS, SweepData, add_history_finals

FORMAT = 1
SWEEP = "sweep.json"
RUNS = "runs.csv"
TIDY = "tidy.parquet"
IDENTITY = "identity.csv"
RULECHECK = "rulecheck.json"
REQUIRED = (SWEEP, RUNS, TIDY)
# runs.csv's text columns: read as text ("None", the logged null of data.seed, stays "None")
TEXT = ("run_id", "status", "start_time", "config_hash", "data", "update", "activation",
        "data_seed", "outcome", "reason", "rule_digest", "rule_fn")


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


def write_inputs(sweep: SweepData, out: Path, *, target_error: float,
                 identity: pd.DataFrame | None = None, rule_checks: dict | None = None) -> None:
    """Write the data files of ``sweep`` (and the store-only results) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    facts = facts_of(sweep, shown_folder(out), target_error)
    sweep.tidy.to_parquet(out / TIDY, index=False)
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
    rows in the order the tidy frame has them (``frames.tidy_frame`` is metric-major)."""
    columns = ["run_id", "epoch", "step", *METRICS]
    if tidy.empty:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns[1:]})
        empty.insert(0, "run_id", pd.Series(dtype=str))
        return empty.astype({"epoch": "int64", "step": "int64"})
    metric = tidy["metric"].astype(str).to_numpy()
    first = tidy[metric == metric[0]]
    wide = pd.DataFrame({"run_id": first["run_id"].astype(str).to_numpy(),
                         "epoch": first["epoch"].to_numpy(dtype="int64"),
                         "step": first["step"].to_numpy(dtype="int64")})
    keys = pd.MultiIndex.from_arrays([wide["run_id"], wide["epoch"]])
    for m in METRICS:
        block = tidy[metric == m]
        if len(block) == len(wide) and (block["run_id"].astype(str).to_numpy()
                                        == wide["run_id"].to_numpy()).all() and \
                (block["epoch"].to_numpy() == wide["epoch"].to_numpy()).all():
            wide[m] = block["value"].to_numpy(dtype="float64")
        else:  # another order, or a metric some runs lack: by (run, epoch)
            s = block.set_index([block["run_id"].astype(str), "epoch"])["value"]
            s = s[~s.index.duplicated()]
            wide[m] = s.reindex(keys).to_numpy(dtype="float64")
    return wide[columns]


def load_inputs(src: Path) -> Inputs:
    """The folder's data files as a ``SweepData`` plus the store-only results."""
    src = Path(src)
    facts = check_folder(src)
    runs = read_runs(src / RUNS)
    tidy = pd.read_parquet(src / TIDY)
    history = history_of(tidy)
    if len(history):  # derived columns: made again by this code, from the histories
        add_history_finals(runs, history)
    runs["has_history"] = runs["run_id"].isin(set(history["run_id"]))
    n_cells = facts.get("n_cells")
    sweep = SweepData(uri=facts.get("tracking_uri", ""), parent_run_id=facts["parent_run_id"],
                      experiment_id=str(facts.get("experiment_id", "")),
                      experiment_name=facts.get("experiment_name", ""),
                      study=facts.get("study", "sweep"),
                      parent_status=facts.get("parent_status", ""),
                      n_cells=int(n_cells) if n_cells is not None else None, runs=runs,
                      history=history, n_children=int(facts.get("n_children", len(runs))),
                      notes=list(facts.get("notes", [])), command=facts.get("command", ""))
    sweep.__dict__["tidy"] = tidy  # the cached property: the file as it is
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
