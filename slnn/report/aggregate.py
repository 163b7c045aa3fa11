"""Aggregates over a data set's runs in which a diverged run is a failed run, not a missing one.

    probability_of_improvement(runs, "kronecker", "input")   # {"p", "lo", "hi", "n_cells"}
    iqm_interval(runs, "kronecker")                          # (estimate, lo, hi)
    performance_profile(runs, np.linspace(0, 1, 101))        # update, tau, share, lo, hi

``runs``: one data set's runs (update, activation, lr, seed, outcome, test_error). Why these
measures, how a diverged run counts, and why not ``rliable``: docs/statistics.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from slnn.core.outcomes import RAN, Outcome
from slnn.report.inference import clopper_pearson

DIVERGED_ERROR = 1.0  # a diverged run's test error in the interquartile mean
BY = ("activation", "lr")  # a cell, within one data set and rule
LEVEL = 0.95


def failed(runs: pd.DataFrame) -> pd.Series:
    """True for a run that diverged: outcome ``diverged`` or a test error that is nan or inf."""
    err = pd.to_numeric(runs["test_error"], errors="coerce").to_numpy(dtype=float)
    return pd.Series((runs["outcome"] == Outcome.DIVERGED).to_numpy() | ~np.isfinite(err),
                     index=runs.index)


def scored(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that ran (trained or diverged) with ``score``: the test error, inf where the run
    failed (``failed``), so that ``<`` and ``==`` rank a failure below every success and equal to
    another failure."""
    r = runs[runs["outcome"].isin(RAN)]
    err = pd.to_numeric(r["test_error"], errors="coerce").to_numpy(dtype=float)
    return r.assign(score=np.where(failed(r).to_numpy(), np.inf, err))


def _percentile(draws: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(draws, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return float(lo), float(hi)


def probability_of_improvement(runs: pd.DataFrame, a: str, b: str, by=BY, reps: int = 2000,
                               seed: int = 0) -> dict:
    """P(a run of rule ``a`` ends with a lower test error than a run of rule ``b`` of the same
    cell), averaged over the cells (``by``) where both have a run that ran. Within a cell every
    pair (i of a, j of b) counts 1 if a's error is lower, 0.5 if equal (two failures are equal),
    0 otherwise: the Mann-Whitney U of the cell over n_a n_b. So p(a, b) + p(b, a) = 1, and 0.5
    is "neither is better". The interval is a stratified percentile bootstrap (``reps``
    resamples of the runs within each cell and rule, seeded by ``seed``).

    Returns ``dict(p=, lo=, hi=, n_cells=)``; p, lo, hi are nan without a shared cell."""
    r = scored(runs)
    by = list(by)
    rng = np.random.default_rng(seed)
    cells = {k: g for k, g in r[r["update"].isin([a, b])].groupby(by, sort=True, dropna=False)}
    point, boot, n = 0.0, np.zeros(reps), 0
    for g in cells.values():
        x = g.loc[g["update"] == a, "score"].to_numpy()
        y = g.loc[g["update"] == b, "score"].to_numpy()
        if not len(x) or not len(y):
            continue
        wins = (x[:, None] < y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        point += wins.mean()
        # a resample of a cell's runs is a vector of counts; its PoI is a weighted mean of wins
        wx = rng.multinomial(len(x), np.full(len(x), 1 / len(x)), size=reps)
        wy = rng.multinomial(len(y), np.full(len(y), 1 / len(y)), size=reps)
        boot += np.einsum("ri,ij,rj->r", wx, wins, wy) / (len(x) * len(y))
        n += 1
    if n == 0:
        return dict(p=np.nan, lo=np.nan, hi=np.nan, n_cells=0)
    lo, hi = _percentile(boot / n)
    return dict(p=float(point / n), lo=lo, hi=hi, n_cells=n)


def iqm(values) -> float:
    """The interquartile mean: the mean of the middle half of ``values`` (a quarter cut from each
    end, ``scipy.stats.trim_mean(values, 0.25)``); nan for no values."""
    v = np.asarray(values, dtype=float)
    return float(st.trim_mean(v, 0.25)) if v.size else np.nan


def iqm_interval(runs: pd.DataFrame, rule: str, by=BY, reps: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """The IQM of the test error of every run of ``rule`` that ran, a diverged run counted as
    error ``DIVERGED_ERROR`` (1.0: every answer wrong), with a stratified percentile bootstrap
    interval (runs resampled within each cell ``by``). Returns (estimate, lo, hi); nan without
    runs."""
    r = scored(runs)
    r = r[r["update"] == rule]
    if r.empty:
        return np.nan, np.nan, np.nan
    values = np.where(np.isfinite(r["score"]), r["score"], DIVERGED_ERROR)
    rng = np.random.default_rng(seed)
    cells = list(r.reset_index(drop=True).groupby(list(by), dropna=False).indices.values())
    sizes = [len(c) for c in cells]
    starts = np.cumsum([0] + sizes[:-1])
    # each resample's draws, cell after cell, kept as positions within the cell (one byte each in
    # cells of up to 256 runs) into the values ordered cell by cell: reps x runs bytes, where
    # positions in all the runs took 4 (134 MB for 16,700 runs)
    local = np.empty((reps, len(values)), dtype=np.min_scalar_type(max(sizes) - 1))
    for start, rows in zip(starts, cells):
        local[:, start:start + len(rows)] = rng.integers(0, len(rows), (reps, len(rows)))
    ordered, offset = values[np.concatenate(cells)], np.repeat(starts, sizes)
    # a block of resamples at a time: every resample's values at once took 0.4 GB at 42,000 runs
    draws = np.concatenate([st.trim_mean(ordered[local[i:i + 100] + offset], 0.25, axis=1)
                            for i in range(0, reps, 100)])
    return (iqm(values), *_percentile(draws))


def performance_profile(runs: pd.DataFrame, taus) -> pd.DataFrame:
    """Per rule (``update``) and tau: the share of its runs that ran whose test error is <= tau
    (a diverged run never is), with a Clopper-Pearson 95% interval at each tau (pointwise, not a
    band). Returns columns update, tau, share, lo, hi, n (runs), reached."""
    r = scored(runs)
    taus = np.asarray(taus, dtype=float)
    out = []
    for rule, g in r.groupby("update", sort=True):
        s = g["score"].to_numpy()
        k = (s[None, :] <= taus[:, None]).sum(axis=1)
        lo, hi = clopper_pearson(k, np.full(len(taus), len(s)))
        out.append(pd.DataFrame({"update": rule, "tau": taus, "share": k / len(s), "lo": lo,
                                 "hi": hi, "n": len(s), "reached": k}))
    if not out:
        return pd.DataFrame(columns=["update", "tau", "share", "lo", "hi", "n", "reached"])
    return pd.concat(out, ignore_index=True)
