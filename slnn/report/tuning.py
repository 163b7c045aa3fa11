"""A tuned study's report ("tune, then confirm", ``slnn.sweep.tune``): which runs tuned and which
confirmed, per arm the learning rate found and its trials, the slice plot, and the comparison
with a grid's best cell for the same arm (``grid_comparison``, also usable from a benchmark).
The answer, tests, figures and appendix use only the ``confirm`` runs (``split_stages``); this
module reports the ``tune`` runs. docs/reports.md ("A tuned study") says more.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from slnn.core.outcomes import Outcome
from slnn.core.trials import choose, tie_loss, trial_score
from slnn.report.figbase import Fig, _save, _suptitle
from slnn.report.inference import rate_interval
from slnn.report.selection import _span, choose_best, failure_scored, seed_split

ARM = ["data", "update", "activation"]
GRID_RUNS = "grid_runs.csv"  # the grid's runs at the arms' cells, kept with the report's data
PRUNED, FAILED = str(Outcome.PRUNED), str(Outcome.FAILED)  # a trial's states, and complete
GRID_COLUMNS = ["data", "update", "activation", "lr", "seed", "outcome", "val_error",
                "val_loss", "test_error"]
MAX_PANELS = 12
HOW = {"crossfit": "cross-fitted as the grid's own report chooses (each half of its seeds "
                   "chooses the arm's lr on validation error, the other half is reported there)",
       "best": "the grid's best cell by mean validation error over all its seeds, reported on "
               "the same seeds (the winner's curse flatters it)"}


class GridError(ValueError):
    """``--grid DIR`` is not a grid report's folder; the message says what to give."""


def is_tuned(runs: pd.DataFrame) -> bool:
    """Whether ``runs`` come from a tuned study (some run has a stage tag)."""
    return "stage" in runs.columns and runs["stage"].notna().any()


def split_stages(sweep):
    """(the sweep with only its ``confirm`` runs, the ``tune`` runs)."""
    runs = sweep.runs
    confirm = runs[runs["stage"] == "confirm"].reset_index(drop=True)
    tune = runs[runs["stage"] == "tune"].reset_index(drop=True)
    out = dataclasses.replace(sweep, runs=confirm)
    if hasattr(sweep, "folder"):
        out.folder = sweep.folder
    return out, tune


@dataclass
class Tuning:
    """What the Tuning section shows."""

    table: pd.DataFrame  # one row per arm (``tuning_table``)
    trials: pd.DataFrame  # one row per tuning trial (``slice_data``)
    tune_seeds: tuple
    confirm_seeds: tuple
    comparison: pd.DataFrame | None = None  # ``grid_comparison``, when a grid was given
    grid_name: str = ""
    how: str = "crossfit"

    def seeds_words(self) -> str:
        return (f"Each arm's learning rate was tuned on seeds {_span(self.tune_seeds)} "
                f"(validation error only) and confirmed on seeds {_span(self.confirm_seeds)}, "
                "which the tuning never saw; only the confirming runs enter the answer, the "
                "tests, the figures and the appendix, so each arm is one cell there.")

    def caption_words(self) -> str:
        """What the answer's caption adds for a tuned study."""
        return (self.seeds_words() + " With each rule at its own tuned learning rate, two rules "
                "rarely share an (activation, lr) cell, so P(better) is mostly n/a; the "
                "best-against-best tests pair the rules by confirming seed.")


def _seeds(runs: pd.DataFrame) -> tuple:
    return tuple(sorted(pd.to_numeric(runs["seed"], errors="coerce").dropna().unique().tolist()))


def slice_data(tune: pd.DataFrame) -> pd.DataFrame:
    """One row per tuning trial (its value on every tuning seed, the newest run of each seed):
    its arm, lr, its seeds (``seed``: how many), the validation error the search scored it by
    (the mean over its seeds' final validation errors, a diverged run scoring 1; a pruned run's
    at the pruning epoch), the mean final validation loss (ties), the most epochs a seed ran,
    and ``state``: pruned (a seed's run was pruned), failed (a seed's run never finished:
    failed, killed, or still running) or complete."""
    cols = ["arm", *ARM, "trial", "lr", "seed", "outcome", "val_error", "val_loss", "epochs_run",
            "state"]
    if tune.empty:
        return pd.DataFrame(columns=cols)
    t = tune.sort_values("start_time", ascending=False, kind="stable")
    t = t.drop_duplicates(["arm", "trial", "seed"]).copy()
    t["val_error"] = failure_scored(t, "val_error")
    finished = t["status"] == "FINISHED"
    t["state"] = np.where(t["outcome"] == Outcome.PRUNED, PRUNED,
                          np.where(finished, "complete", FAILED))
    # a finished run without a validation error scores 1, as the search scored it
    t.loc[(t["state"] == "complete") & t["val_error"].isna(), "val_error"] = 1.0
    rank = {"complete": 0, PRUNED: 1, FAILED: 2}  # a trial is as bad as its worst seed
    rows = []
    for (arm, trial), g in t.groupby(["arm", "trial"], sort=True):
        state = max(g["state"], key=rank.get)
        first = g.iloc[0]
        g = g.sort_values("seed")  # the search's order: its sums, to the last bit
        pairs = list(zip(g["outcome"], pd.to_numeric(g["val_error"], errors="coerce")))
        rows.append({"arm": arm, **{k: first[k] for k in ARM}, "trial": trial, "lr": first["lr"],
                     "seed": len(g), "outcome": (Outcome.PRUNED if state == PRUNED
                                                 else first["outcome"]),
                     "val_error": (trial_score(pairs) if state == "complete"
                                   else float(g["val_error"].mean())),
                     "val_loss": tie_loss(list(zip(g["outcome"], pd.to_numeric(
                         g["val_loss"], errors="coerce")))),
                     "epochs_run": g["epochs_run"].max(), "state": state})
    return pd.DataFrame(rows, columns=cols).sort_values(["arm", "trial"]).reset_index(drop=True)


def _mean_ci(values) -> tuple[float, float, float, int]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return np.nan, np.nan, np.nan, 0
    lo, hi = rate_interval(v)
    return float(v.mean()), lo, hi, len(v)


def per_seed_test_error(runs: pd.DataFrame) -> pd.Series:
    """Per seed the final test error (a diverged run scoring 1; several runs of a seed: their
    mean), of the runs that ran."""
    from slnn.core.outcomes import RAN

    r = runs[runs["outcome"].isin(RAN)]
    return r.assign(_te=failure_scored(r, "test_error")).groupby("seed")["_te"].mean()


class _Trial(NamedTuple):
    value: float
    number: int
    loss: float
    lr: float


def tuning_table(tune: pd.DataFrame, confirm: pd.DataFrame) -> pd.DataFrame:
    """Per arm: the learning rate confirmed (the confirming runs', all the same) and the trial it
    came from with that trial's validation error; how many trials completed, were pruned or
    failed; the confirmed mean test error over the confirming seeds with its interval. An arm
    with no confirming run shows its best completed trial (lowest validation error, then
    validation loss, then the lower trial number, as the search picks)."""
    trials = slice_data(tune)
    rows = []
    arms = sorted(set(trials["arm"].dropna()) | set(confirm["arm"].dropna()))
    for arm in arms:
        tr = trials[trials["arm"] == arm]
        co = confirm[confirm["arm"] == arm]
        keys = (co if len(co) else tr).iloc[0]
        done = tr[tr["state"] == "complete"]
        if len(co):
            trial = int(pd.to_numeric(co["trial"]).iloc[0])
            lr = float(co["lr"].iloc[0])
        elif len(done):  # chosen as the search chooses (slnn.core.trials.choose)
            candidates = [_Trial(float(r.val_error), int(r.trial), float(r.val_loss),
                                 float(r.lr)) for r in done.itertuples()]
            top = choose(candidates, lambda r: r.loss)
            trial, lr = top.number, top.lr
        else:
            trial, lr = -1, np.nan
        at = tr[tr["trial"] == trial]
        m, lo, hi, n = _mean_ci(per_seed_test_error(co)) if len(co) else (np.nan,) * 3 + (0,)
        rows.append({"arm": arm, "data": keys["data"], "update": keys["update"],
                     "activation": keys["activation"], "lr": lr,
                     "trial": trial if trial >= 0 else np.nan,
                     "tune_val_error": float(at["val_error"].iloc[0]) if len(at) else np.nan,
                     "tune_seeds": float(at["seed"].iloc[0]) if len(at) else np.nan,
                     "trials": len(tr), "complete": int((tr["state"] == "complete").sum()),
                     PRUNED: int((tr["state"] == PRUNED).sum()),
                     FAILED: int((tr["state"] == FAILED).sum()),
                     "confirm_runs": len(co), "confirm_seeds": n, "test_error": m,
                     "test_lo": lo, "test_hi": hi})
    return pd.DataFrame(rows)


# --- the grid's best cell for the same arm ------------------------------------------------------

def load_grid(folder: str | Path) -> pd.DataFrame:
    """A grid report's runs (its runs.csv, with the validation errors the report computed) from
    its folder; ``GridError`` (one line) when it is none."""
    from slnn.report.datafiles import RUNS, SWEEP, read_runs

    src = Path(folder)
    if not (src / RUNS).exists() or not (src / SWEEP).exists():
        raise GridError(f"--grid {src}: no {RUNS} and {SWEEP} there: give a grid report's "
                        "folder (e.g. reports/guide_vs_correct)")
    runs = read_runs(src / RUNS)
    missing = [c for c in GRID_COLUMNS if c not in runs.columns]
    if missing:
        raise GridError(f"--grid {src}: its {RUNS} has no column {missing[0]}: write the grid's "
                        "report again with this slnn (slnn-report --parent-run <id>)")
    if is_tuned(runs):
        raise GridError(f"--grid {src}: that is a tuned study's report, not a grid's: give a "
                        "grid report's folder (e.g. reports/guide_vs_correct)")
    return runs


def grid_cells(grid: pd.DataFrame, how: str = "crossfit") -> pd.DataFrame:
    """The grid's runs reported for each arm (data, update, activation): ``how="crossfit"``, each
    half of the grid's seeds (``selection.seed_split``) chooses the arm's lr
    (``selection.choose_best``: mean validation error, a diverged run scoring 1) and the other
    half is reported at it; ``how="best"``, the lr chosen on every seed, every seed reported.
    Columns: the runs' own, plus ``chosen_on`` (the choosing seeds)."""
    from slnn.core.outcomes import RAN

    if how not in HOW:
        raise ValueError(f"how={how!r}: use one of {', '.join(HOW)}")
    split = seed_split(grid)
    folds = split.folds if how == "crossfit" else [(_seeds(grid), _seeds(grid))]
    ran = grid[grid["outcome"].isin(RAN)]
    out = []
    for choosing, report in folds:
        best = choose_best(grid, choosing, by=tuple(ARM))
        if best.empty:
            continue
        mine = ran[pd.to_numeric(ran["seed"], errors="coerce").isin(report)]
        out.append(mine.merge(best[ARM + ["lr"]], on=ARM + ["lr"]).assign(
            chosen_on=_span(choosing)))
    if not out:
        return ran.iloc[:0].assign(chosen_on="")
    return pd.concat(out, ignore_index=True)


def grid_comparison(confirm: pd.DataFrame, grid: pd.DataFrame,
                    how: str = "crossfit") -> pd.DataFrame:
    """Per arm of the tuned study's confirming runs that the grid also ran: the grid's cell(s)
    (``grid_cells``) with its mean test error over seeds and interval
    (``inference.rate_interval``, a diverged run scoring 1), the tuned arm's confirmed mean and
    interval, and ``no_worse``: the tuned mean is at most the grid's interval's upper end (its
    mean, when it has no interval)."""
    cells = grid_cells(grid, how)
    rows = []
    for keys, co in confirm.groupby(ARM, sort=True):
        g = cells[(cells[ARM] == pd.Series(keys, index=ARM)).all(axis=1)]
        if g.empty:
            continue
        gm, glo, ghi, gn = _mean_ci(per_seed_test_error(g))
        tm, tlo, thi, tn = _mean_ci(per_seed_test_error(co))
        bound = ghi if np.isfinite(ghi) else gm
        lrs = sorted(g["lr"].astype(float).unique())
        rows.append({"data": keys[0], "update": keys[1], "activation": keys[2],
                     "grid_lr": ", ".join(f"{v:g}" for v in lrs), "grid_seeds": gn,
                     "grid_test_error": gm, "grid_lo": glo, "grid_hi": ghi,
                     "tuned_lr": float(co["lr"].iloc[0]), "tuned_seeds": tn,
                     "tuned_test_error": tm, "tuned_lo": tlo, "tuned_hi": thi,
                     "no_worse": bool(np.isfinite(tm) and np.isfinite(bound) and tm <= bound),
                     "grid_epochs": _budget(g), "tuned_epochs": _budget(co)})
    return pd.DataFrame(rows)


def _budget(runs: pd.DataFrame) -> str:
    """The runs' epoch budget(s), as text."""
    if "epochs_max" not in runs:
        return ""
    return ", ".join(f"{v:g}" for v in sorted(pd.to_numeric(runs["epochs_max"],
                                                             errors="coerce").dropna().unique()))


def keep_grid(grid: pd.DataFrame, confirm: pd.DataFrame, folder: Path, name: str,
              how: str = "crossfit") -> None:
    """Write the grid's runs of the tuned study's arms into ``folder`` (``GRID_RUNS``) and list
    the file in its sweep.json, so that ``slnn-report --from`` draws the comparison again."""
    from slnn.report.datafiles import SWEEP

    arms = confirm[ARM].drop_duplicates()
    cols = GRID_COLUMNS + [c for c in ("epochs_max",) if c in grid.columns]
    grid[cols].merge(arms, on=ARM).to_csv(folder / GRID_RUNS, index=False)
    facts = json.loads((folder / SWEEP).read_text())
    if GRID_RUNS not in facts.get("files", []):
        facts.setdefault("files", []).append(GRID_RUNS)
    facts["grid"], facts["grid_how"] = name, how
    (folder / SWEEP).write_text(json.dumps(facts, indent=1) + "\n")


def analyse_tuning(tune: pd.DataFrame, confirm: pd.DataFrame, grid: pd.DataFrame | None = None,
                   grid_name: str = "", how: str = "crossfit") -> Tuning:
    comparison = grid_comparison(confirm, grid, how) if grid is not None else None
    return Tuning(tuning_table(tune, confirm), slice_data(tune), _seeds(tune), _seeds(confirm),
                  comparison, grid_name, how)


# --- the figure and the section -----------------------------------------------------------------

def slice_figure(tuning: Tuning, out: Path, pal: dict) -> Fig:
    """Every trial of each arm: lr (log axis) against the validation error it ended with, one
    panel per (data set, activation), rules as colours; a pruned trial is an open triangle at
    its last validation error, a failed one is left out (it has none)."""
    key, title = "tuning_slice", "tuning: every trial's learning rate and validation error"
    cap = ("one point per tuning trial: its learning rate (log scale) against the mean "
           "validation error its runs on the tuning seeds ended with (a diverged run at 1); "
           "dots: completed trials, open triangles: pruned trials, at their runs' last "
           "validation errors; the ringed dot: the trial each arm confirmed.")
    t = tuning.trials
    t = t[t["state"] != FAILED]
    if t.empty:
        return Fig(key, title, cap, note="no tuning trial has a validation error")
    import matplotlib.pyplot as plt

    panels = sorted(t[["data", "activation"]].drop_duplicates().itertuples(index=False,
                                                                          name=None))
    note = ""
    if len(panels) > MAX_PANELS:
        note = f"{len(panels) - MAX_PANELS} (data, activation) panels not drawn"
        panels = panels[:MAX_PANELS]
    ncol = min(len(panels), 3)
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(10, 3.0 * nrow + 0.6), squeeze=False,
                             sharey=True)
    chosen = tuning.table.set_index("arm")["trial"] if len(tuning.table) else pd.Series()
    for i, (ax, (data, act)) in enumerate(zip(axes.flat, panels)):
        p = t[(t["data"] == data) & (t["activation"] == act)]
        for rule, r in p.groupby("update", sort=True):
            c = pal.get(rule, "#888888")
            done, pruned = r[r["state"] == "complete"], r[r["state"] == PRUNED]
            ax.scatter(done["lr"], done["val_error"], color=c, s=28, label=f"{rule}")
            ax.scatter(pruned["lr"], pruned["val_error"], facecolors="none", edgecolors=[c],
                       marker="^", s=40, label=f"{rule} (pruned)")
            top = r[r["trial"] == r["arm"].map(chosen)]
            ax.scatter(top["lr"], top["val_error"], facecolors="none", edgecolors="black",
                       s=110, lw=1.2)
        ax.set_xscale("log")
        ax.set_title(f"{data}, {act}", fontsize=10)
        ax.set_xlabel("learning rate", fontsize=10)
        ax.set_ylabel("validation error", fontsize=10)
        ax.tick_params(which="both", labelsize=9)
        ax.grid(alpha=0.3)
        if i == 0:  # the same rules and markers in every panel
            ax.legend(fontsize=9, framealpha=0.8, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    _suptitle(fig, title, y=1.0, va="bottom")
    fig.tight_layout()
    return Fig(key, title, cap, _save(fig, out / f"{key}.png"), note=note)


def _f(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if x is not None and np.isfinite(x) else "n/a"


def _mean_with_ci(m, lo, hi, digits: int = 3) -> str:
    if not np.isfinite(m):
        return "n/a"
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
    return f"{m:.{digits}f}{ci}"


def table_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "data": r.data, "rule": f"`{r.update}`", "activation": r.activation,
        "lr found": f"{r.lr:.4g}" if np.isfinite(r.lr) else "none",
        "tuning val error (trial, seeds)": (
            f"{_f(r.tune_val_error)} (#{int(r.trial)}, {int(r.tune_seeds)} seeds)"
            if np.isfinite(r.tune_val_error) else "n/a"),
        "trials: completed / pruned / failed": f"{r.complete} / {r.pruned} / {r.failed}",
        "confirmed test error [95% CI] (seeds)":
            f"{_mean_with_ci(r.test_error, r.test_lo, r.test_hi)} ({r.confirm_seeds})",
    } for r in table.itertuples()])


def comparison_display(c: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "data": r.data, "rule": f"`{r.update}`", "activation": r.activation,
        "grid lr": r.grid_lr,
        "grid test error [95% CI] (seeds)":
            f"{_mean_with_ci(r.grid_test_error, r.grid_lo, r.grid_hi)} ({r.grid_seeds})",
        "tuned lr": f"{r.tuned_lr:.4g}",
        "tuned test error [95% CI] (seeds)":
            f"{_mean_with_ci(r.tuned_test_error, r.tuned_lo, r.tuned_hi)} ({r.tuned_seeds})",
        "no worse": "yes" if r.no_worse else "**no**",
    } for r in c.itertuples()])


def _budget_words(c: pd.DataFrame) -> str:
    differ = c[(c["grid_epochs"] != c["tuned_epochs"]) & (c["grid_epochs"] != "")
               & (c["tuned_epochs"] != "")]
    if differ.empty:
        return ""
    r = differ.iloc[0]
    return (f" The epoch budgets differ (grid {r.grid_epochs}, tuned {r.tuned_epochs}, in "
            f"{len(differ)} arm(s)), so the comparison is not like for like.")


def tuning_blocks(tuning: Tuning, figs: list[Fig]) -> list:
    """The Tuning section: the seeds, the table per arm, the slice plot, the grid comparison."""
    t = tuning.table
    blocks: list = [("h2", "Tuning"), ("p", tuning.seeds_words() + (
        f" The search ran {int(t['trials'].sum())} trial(s) over {len(t)} arm(s), each its "
        f"learning rate on every tuning seed, scored by their mean validation error "
        f"({int(t['complete'].sum())} completed, {int(t[PRUNED].sum())} pruned: a seed's run "
        f"stopped by the median rule, {int(t[FAILED].sum())} failed), then "
        f"{int(t['confirm_runs'].sum())} confirming run(s)." if len(t) else "")),
        ("table", table_display(t) if len(t) else pd.DataFrame()),
        ("caption", "Per arm: the learning rate found (the trial with the lowest mean "
                    "validation error over the tuning seeds, a diverged run scoring 1; ties to "
                    "the lower mean validation loss) and that mean; the trials by how they ended "
                    "(pruned: a seed's run stopped by the pruner; failed: a run never finished); "
                    "the test error at the learning rate found, mean over the confirming seeds, "
                    "a diverged run scoring 1, with a score interval.")]
    blocks += [("fig", f) for f in figs if f.key == "tuning_slice"]
    c = tuning.comparison
    if c is not None:
        blocks.append(("h3", f"Against the grid's best cell ({tuning.grid_name})"))
        if c.empty:
            blocks.append(("p", "the grid ran none of these arms (data, rule, activation)."))
        else:
            n = int(c["no_worse"].sum())
            blocks += [("table", comparison_display(c)),
                       ("caption", f"The grid's cell for each arm: {HOW[tuning.how]}; its test "
                                   "error is the mean over the seeds reported there. No worse: "
                                   "the tuned arm's confirmed mean test error is at most the "
                                   "upper end of the grid's interval. "
                                   f"{n} of {len(c)} arm(s) are no worse."
                                   + _budget_words(c))]
    return blocks
