"""Which cell is a rule's best, chosen so that the choice does not flatter it.

The study's seeds are split in two halves; each half chooses a best (activation, lr) cell by
validation error (a diverged run scoring 1), and the other half is reported at it (``crossfit``),
so no seed's reported test error comes from a cell it helped choose. With fewer than 4 seeds both
are every seed and ``SeedSplit.held_out`` is False. The tie-breaks and the reasons are in
docs/statistics.md ("Choosing a rule's best cell")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from slnn.core.outcomes import RAN, Outcome

MIN_SPLIT = 4  # seeds needed to hold half of them out


@dataclass(frozen=True)
class SeedSplit:
    choose: tuple  # the first half of the seed values
    report: tuple  # the second half (each half chooses the cell the other is reported at)
    held_out: bool  # False: too few seeds, both are every seed

    @property
    def folds(self) -> list[tuple[tuple, tuple]]:
        """(choosing seeds, seeds reported at their choice) pairs."""
        if not self.held_out:
            return [(self.choose, self.choose)]
        return [(self.choose, self.report), (self.report, self.choose)]

    def words(self) -> str:
        if not self.held_out:
            return (f"chosen and reported on the same {len(self.choose)} seed(s) (too few to "
                    "hold any out: the chosen cell's error is optimistic)")
        return (f"cross-fitted: seeds {_span(self.choose)} choose the cell at which seeds "
                f"{_span(self.report)} are reported and the other way round, so no seed's test "
                "error comes from a cell it helped choose")


def _span(seeds: tuple) -> str:
    s = [int(v) if float(v).is_integer() else v for v in seeds]
    if all(isinstance(v, int) for v in s) and s == list(range(s[0], s[0] + len(s))):
        return f"{s[0]}-{s[-1]}" if len(s) > 1 else str(s[0])
    return ", ".join(str(v) for v in s)


def seed_split(runs: pd.DataFrame) -> SeedSplit:
    """The lower half of the study's distinct seeds (rounded up) choose, the rest report."""
    seeds = sorted(pd.to_numeric(runs["seed"], errors="coerce").dropna().unique().tolist())
    if len(seeds) < MIN_SPLIT:
        return SeedSplit(tuple(seeds), tuple(seeds), False)
    half = (len(seeds) + 1) // 2
    return SeedSplit(tuple(seeds[:half]), tuple(seeds[half:]), True)


def failure_scored(runs: pd.DataFrame, col: str) -> pd.Series:
    """``col`` with a diverged run scored as a failure: error 1 (losses: infinity)."""
    worst = np.inf if "loss" in col else 1.0
    v = pd.to_numeric(runs[col], errors="coerce") if col in runs else pd.Series(
        np.nan, index=runs.index)
    return v.where(runs["outcome"] != Outcome.DIVERGED, worst)


def cell_scores(runs: pd.DataFrame, seeds) -> pd.DataFrame:
    """Per (data, update, activation, lr) cell that ran on a choosing seed: ``score`` (mean
    validation error, diverged = 1), ``tie`` (mean validation loss, diverged = inf),
    ``n_diverged`` and ``n`` over the choosing ``seeds`` (one value per seed)."""
    r = runs[runs["outcome"].isin(RAN)]
    r = r[pd.to_numeric(r["seed"], errors="coerce").isin(seeds)]
    if r.empty:
        return pd.DataFrame(columns=["data", "update", "activation", "lr", "score", "tie",
                                     "n_diverged", "n"])
    r = r.assign(score=failure_scored(r, "val_error"), tie=failure_scored(r, "val_loss"),
                 div=(r["outcome"] == Outcome.DIVERGED).astype(float))
    keys = ["data", "update", "activation", "lr"]
    per_seed = r.groupby(keys + ["seed"])[["score", "tie", "div"]].mean().reset_index()
    g = per_seed.groupby(keys)
    out = g.agg(score=("score", "mean"), tie=("tie", "mean"), n_diverged=("div", "sum"),
                n=("seed", "size")).reset_index()
    return out[np.isfinite(out["score"])]


def choose_best(runs: pd.DataFrame, seeds=None, by=("data", "update")) -> pd.DataFrame:
    """One row per group ``by`` (default: per data set and rule): its best cell by
    ``cell_scores`` over ``seeds`` (default: every seed): the lowest ``score``, ties (to 12
    decimals) to the lower ``tie``, then fewer diverged runs, then the larger learning rate.
    Columns: ``by`` + activation, lr, score, tie, n_diverged, n (the choosing seeds' figures)."""
    if seeds is None:
        seeds = pd.to_numeric(runs["seed"], errors="coerce").dropna().unique()
    s = cell_scores(runs, seeds)
    if s.empty:
        return s
    s = s.assign(_score=s["score"].round(12), _tie=s["tie"].round(12), _lr=-s["lr"].astype(float))
    s = s.sort_values(["_score", "_tie", "n_diverged", "_lr"], kind="stable")
    return (s.drop_duplicates(list(by)).drop(columns=["_score", "_tie", "_lr"])
            .sort_values(list(by)).reset_index(drop=True))


def crossfit(runs: pd.DataFrame, split: SeedSplit | None = None) -> pd.DataFrame:
    """Per (data, update) and reported seed: the run(s) at the cell the other half of the seeds
    chose (``SeedSplit.folds``). Columns: the runs' own, plus ``chosen_on`` (the choosing
    seeds, as text)."""
    split = split or seed_split(runs)
    out = []
    ran = runs[runs["outcome"].isin(RAN)]
    for choose, report in split.folds:
        best = choose_best(runs, choose)
        if best.empty:
            continue
        keys = best[["data", "update", "activation", "lr"]]
        mine = ran[pd.to_numeric(ran["seed"], errors="coerce").isin(report)]
        out.append(mine.merge(keys, on=list(keys.columns)).assign(chosen_on=_span(choose)))
    if not out:
        return ran.iloc[:0].assign(chosen_on="")
    return pd.concat(out, ignore_index=True)
