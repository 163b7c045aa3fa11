"""The report's frames, from what the store gave: pure pandas, no MLflow.

``runs_frame`` shapes a search's rows into one row per run; ``newest_per_cell`` keeps one run per
config; ``parse_histories`` joins every run's ``history.csv`` into one wide frame, whatever
columns each file has; ``tidy_frame`` makes the long frame; ``SweepData`` holds them all.
``history_finals`` gives each run's figures from its own history (so histories can be read a
chunk at a time) and ``needed_runs`` the runs whose histories a report draws.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from slnn.core.outcomes import Outcome
from slnn.core.trainer import HISTORY_COLUMNS

METRICS = tuple(c for c in HISTORY_COLUMNS if c not in ("epoch", "step"))
# the history columns a report cannot do without; any other column may be missing (it is then
# nan) and any extra one is ignored
REQUIRED_HISTORY = ("epoch", "val_loss", "val_error", "test_error")
KEYS = ["data", "update", "activation", "lr"]  # one cell of the grid, over seeds
TIDY_COLUMNS = ["run_id", "data", "update", "activation", "lr", "seed", "outcome", "epoch",
                "step", "metric", "value"]
# a run's final figures: column -> where runs keep it now (``slnn.tracking.recorder``: summaries
# under ``final/``, constants as tags), then where runs logged before that kept it (a metric of
# the same name); a store may hold both kinds (a sweep resumed over older runs)
FINALS = {"test_error": ("metrics.final/test_error", "metrics.test_error"),
          "test_loss": ("metrics.final/test_loss", "metrics.test_loss"),
          "epochs_run": ("metrics.final/epochs_run", "metrics.epochs_run"),
          "steps_run": ("metrics.final/steps_run", "metrics.steps_run"),
          "train_seconds": ("metrics.final/train_seconds", "metrics.train_seconds"),
          "final_epoch": ("metrics.final/epoch", "metrics.final_epoch"),
          "chance_error": ("tags.slnn.chance_error", "metrics.chance_error"),
          "n_classes": ("tags.slnn.n_classes", "metrics.n_classes")}


@dataclass
class SweepData:
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
    command: str = ""  # the slnn-train command that ran the sweep, as typed (tag slnn.command)
    # whose histories ``history`` holds: "all" runs', or, as a report reads its folder
    # (``datafiles.load_inputs``), only the "needed" ones (``needed_runs``)
    history_runs: str = "all"

    @property
    def done(self) -> pd.DataFrame:
        """The runs that have ended (not ``running``)."""
        return self.runs[self.runs["outcome"] != Outcome.RUNNING]

    @cached_property
    def tidy(self) -> pd.DataFrame:
        """The long frame: one row per (run, epoch, metric)."""
        return tidy_frame(self.runs, self.history)


# --- one row per cell --------------------------------------------------------------------------

def _col(df: pd.DataFrame, name: str, default=np.nan) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index)


def runs_frame(df: pd.DataFrame) -> pd.DataFrame:
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
        # the split's own seed: null (logged "None") draws each run's split from its seed
        "data_seed": _col(df, "params.data.seed", None),
        "epochs_max": pd.to_numeric(_col(df, "params.train.epochs"), errors="coerce"),
        "outcome": _col(df, "tags.slnn.outcome", None),
        "reason": _col(df, "tags.slnn.reason", "").fillna(""),
        "artifact_uri": _col(df, "artifact_uri", "").fillna(""),
        # a user's rule (update=custom): its FILE.py:FUNCTION and the file's sha256
        "rule_fn": _col(df, "tags.slnn.rule_fn", None),
        "rule_digest": _col(df, "tags.slnn.rule_digest", None),
    })
    if "tags.slnn.stage" in df.columns:  # a tuned study: stage, arm, trial (a grid has none)
        out["stage"] = _col(df, "tags.slnn.stage", None)
        out["arm"] = _col(df, "tags.slnn.arm", None)
        out["trial"] = pd.to_numeric(_col(df, "tags.slnn.trial"), errors="coerce")
    for m, (now, before) in FINALS.items():
        out[m] = pd.to_numeric(_col(df, now), errors="coerce").fillna(
            pd.to_numeric(_col(df, before), errors="coerce"))
    for k in ("data", "update", "activation"):
        out[k] = out[k].fillna("?").astype(str)
    # the status wins over a stale tag: a run still open is running; a closed run whose tag still
    # says running (its process died before recording an outcome) ended as its status says
    by_status = out["status"].map({"FAILED": str(Outcome.FAILED), "KILLED": str(Outcome.KILLED)})
    by_status = by_status.fillna(str(Outcome.UNKNOWN))
    stale = (out["status"] != "RUNNING") & (out["outcome"].isna() | (out["outcome"] == Outcome.RUNNING))
    out.loc[stale, "outcome"] = by_status[stale]
    out.loc[out["status"] == "RUNNING", "outcome"] = str(Outcome.RUNNING)
    return out


def newest_per_cell(runs: pd.DataFrame) -> pd.DataFrame:
    """Per ``config_hash`` the newest FINISHED child, or else the newest child (a rerun after a
    failure leaves the FAILED/KILLED one beside the new one)."""
    r = runs.assign(_done=(runs["status"] == "FINISHED").astype(int))
    r = r.sort_values(["_done", "start_time"], ascending=[False, False], kind="stable")
    keyed = r["config_hash"].notna()
    kept = pd.concat([r[keyed].drop_duplicates("config_hash"), r[~keyed]])
    return kept.drop(columns="_done").sort_values(KEYS + ["seed"]).reset_index(drop=True)


def varying_params(sub: pd.DataFrame) -> list[str]:
    """Params other than seed that differ inside one (data, update, activation, lr) cell, among
    the rows of ``sub`` (``tags.slnn.*`` and ``params.*`` columns: the kept runs, or their
    distinct rows, ``source.RunRecords.params_frame``)."""
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

def parse_histories(blobs: dict[str, bytes | None]) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Every run's ``history.csv`` (``run_id -> bytes``) in one wide frame: ``run_id``, ``epoch``,
    ``step`` and one column per metric of ``METRICS``.

    Files are grouped by their header and each group is parsed in one go. A file with extra
    columns, or without an optional one (left nan), is read; a file that lacks a column of
    ``REQUIRED_HISTORY`` is left out and returned in the second value, ``run_id -> missing``.
    """
    groups: dict[bytes, list[tuple[str, bytes]]] = {}
    for run_id, blob in blobs.items():
        if not blob:
            continue
        head, _, body = blob.partition(b"\n")
        if not body.strip():
            continue
        groups.setdefault(head.strip(), []).append(
            (run_id, body if body.endswith(b"\n") else body + b"\n"))
    lacking: dict[str, list[str]] = {}
    frames = []
    for head, items in groups.items():
        names = [c.strip() for c in head.decode("utf-8", "replace").split(",")]
        missing = [c for c in REQUIRED_HISTORY if c not in names]
        if missing:
            lacking.update({run_id: missing for run_id, _ in items})
            continue
        try:
            frames.append(_read_histories(head, items, names))
        except Exception:  # noqa: BLE001 - one run's corrupt file: read them one by one
            for run_id, body in items:
                try:
                    frames.append(_read_histories(head, [(run_id, body)], names))
                except Exception as e:  # noqa: BLE001 - named in the report, left out
                    why = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
                    lacking[run_id] = [f"readable table ({type(e).__name__}: {why})"]
    columns = ["run_id", "epoch", "step", *METRICS]
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns[1:]})
        empty.insert(0, "run_id", pd.Series(dtype=str))
        return empty.astype({"epoch": "int64", "step": "int64"}), lacking
    wide = pd.concat(frames, ignore_index=True).reindex(columns=columns)
    for c in METRICS:
        wide[c] = pd.to_numeric(wide[c], errors="coerce").astype("float64")
    wide["epoch"] = pd.to_numeric(wide["epoch"], errors="coerce").astype("int64")
    # a history without steps: one step per epoch is the best guess, and only labels the x-axis
    wide["step"] = pd.to_numeric(wide["step"], errors="coerce").fillna(wide["epoch"]).astype("int64")
    return wide, lacking


def _read_histories(head: bytes, items: list[tuple[str, bytes]], names: list[str]) -> pd.DataFrame:
    """The rows of history files sharing the header ``head``; raises on a file pandas cannot
    parse or whose epochs are not whole numbers (``parse_histories`` then names that run)."""
    wide = pd.read_csv(io.BytesIO(head + b"\n" + b"".join(b for _, b in items)))
    wide.columns = names
    epochs = pd.to_numeric(wide["epoch"], errors="coerce")
    if epochs.isna().any() or (epochs % 1 != 0).any():
        raise ValueError("an epoch that is not a whole number")
    wide.insert(0, "run_id", np.repeat([r for r, _ in items], [b.count(b"\n") for _, b in items]))
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


# --- what is missing or odd ------------------------------------------------------------------

def notes(sweep: SweepData, params: pd.DataFrame, all_runs: pd.DataFrame) -> list[str]:
    """What is missing or odd, in sentences; ``params``: the kept runs' cell keys and params
    (``varying_params``)."""
    runs, notes = sweep.runs, []
    running = int((runs["outcome"] == Outcome.RUNNING).sum())
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
    ended = runs[runs["outcome"] != Outcome.RUNNING]
    if len(ended) and not ended["has_history"].any():
        kinds = ", ".join(f"{n} {k}" for k, n in ended["outcome"].value_counts().items())
        notes.append(f"no run has a per-epoch history ({kinds} of {len(ended)} ended runs), so "
                     "no curves could be drawn; the outcomes and the verdict say what happened.")
    nohist = ended[~ended["has_history"] & (ended["outcome"] != Outcome.SHAPE_MISMATCH)]
    if len(nohist):
        kinds = ", ".join(f"{n} {k}" for k, n in nohist["outcome"].value_counts().items())
        notes.append(f"{len(nohist)} ended run(s) have no history.csv ({kinds}): they are counted "
                     "in the outcomes but have no curves.")
    vary = varying_params(params)
    if vary:
        notes.append("inside a (data, update, activation, lr) cell these params also vary: "
                     f"{', '.join(vary)}; the seeds of such a cell mix those settings, and where "
                     "one seed has several runs in a cell, their mean counts once, as that "
                     "seed's value, in every figure of the tables and every test.")
    return notes


def add_history_finals(runs: pd.DataFrame, history: pd.DataFrame) -> None:
    """Add, from the histories, ``initial_test_error`` (epoch 0) and ``val_error`` and
    ``val_loss`` of the final epoch (``final_epoch``, the last with finite figures; for a run logged without it, the last
    epoch whose losses are finite), in place."""
    h = history.sort_values(["run_id", "epoch"])
    first = h.drop_duplicates("run_id").set_index("run_id")["test_error"]
    runs["initial_test_error"] = runs["run_id"].map(first)
    finite = h[np.isfinite(h["train_loss"]) & np.isfinite(h["test_error"])]
    last = finite.drop_duplicates("run_id", keep="last").set_index("run_id")
    fe = runs.set_index("run_id")["final_epoch"] if "final_epoch" in runs else None
    at = pd.Series(last["epoch"]) if fe is None else fe.fillna(last["epoch"].reindex(fe.index))
    keys = pd.MultiIndex.from_arrays([at.index, at.fillna(-1).astype(int).values])
    for col in ("val_error", "val_loss"):  # the loss breaks ties between best cells
        if col in h:
            val = h.set_index(["run_id", "epoch"])[col]
            runs[col] = runs["run_id"].map(pd.Series(val.reindex(keys).values, index=at.index))


FINAL_COLUMNS = ["initial_test_error", "val_error", "val_loss"]


def history_finals(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """``add_history_finals``'s columns for the runs of ``runs``, indexed by run_id: each is a
    function of one run's own history, so a sweep's runs can be done a chunk at a time."""
    r = runs[[c for c in ("run_id", "final_epoch") if c in runs.columns]].copy()
    add_history_finals(r, history)
    return r.set_index("run_id").reindex(columns=FINAL_COLUMNS)


def needed_runs(runs: pd.DataFrame, study: str) -> set[str]:
    """The runs whose histories a report draws or reads: every run of each rule's best cell per
    (data, activation) (the curves and cosines, ``answer_figures``), the cross-fitted best cells'
    runs (the time to target, ``answer.build``), and, for the guide's reproduction (its plot
    picks the cell with most seeds per rule among all), every run. The rest of a sweep's
    histories only give each run's ``history_finals``."""
    from slnn.report.selection import choose_best, crossfit, seed_split

    if "stage" in runs and runs["stage"].notna().any():  # a tuned study: its confirm runs
        runs = runs[runs["stage"] == "confirm"]
    if study == "guide_reproduction" or runs.empty:
        return set(runs["run_id"])
    done = runs[runs["outcome"] != Outcome.RUNNING]
    best = choose_best(done, by=("data", "update", "activation"))
    keep = set()
    if len(best):
        keep |= set(runs.merge(best[KEYS], on=KEYS)["run_id"])
    keep |= set(crossfit(runs, seed_split(runs))["run_id"])
    return keep
