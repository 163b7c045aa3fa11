"""The numbers behind the report: the summary table, learning-curve bands, epochs to a target.

Every interval is a 95% t-interval over seeds, ``mean +- t(0.975, n - 1) * sd / sqrt(n)``,
computed here with pandas and scipy (not seaborn's bootstrap, which is slow on big frames and
differs from run to run). With one seed there is no interval: it is nan and the table says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from slnn.core.outcomes import ORDER, RAN, Outcome
from slnn.report.frames import KEYS, SweepData as Sweep

# the order outcomes are shown in; any other value found in the data goes after these
OUTCOMES = tuple(str(o) for o in ORDER)


def t_halfwidth(sd, n):
    """Half the width of the 95% t-interval of a mean; nan where n < 2."""
    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = st.t.ppf(0.975, np.where(n >= 2, n - 1, np.nan))
        return q * sd / np.sqrt(n)


def mean_interval(values: pd.Series) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values."""
    v = values[np.isfinite(values)]
    n = len(v)
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    m = float(v.mean())
    h = float(t_halfwidth(v.std(ddof=1) if n > 1 else np.nan, n))
    return m, m - h, m + h, n


def outcome_order(present) -> list[str]:
    present = list(dict.fromkeys(present))
    return [o for o in OUTCOMES if o in present] + sorted(o for o in present if o not in OUTCOMES)


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (data, update, activation, lr): runs, seeds with a final test error, that error's mean
    and 95% interval, epochs run (by the runs that trained) with its interval, outcome counts."""
    done = runs[runs["outcome"] != Outcome.RUNNING]
    if done.empty:
        return pd.DataFrame(columns=KEYS + ["n_runs", "n_seeds"])
    trained = done["outcome"].isin(RAN)
    cols = pd.DataFrame({
        **{k: done[k] for k in KEYS},
        "test_error": done["test_error"].where(np.isfinite(done["test_error"])),
        "epochs": done["epochs_run"].where(trained & np.isfinite(done["epochs_run"]))})
    g = cols.groupby(KEYS, sort=True, dropna=False)
    out = g.size().rename("n_runs").to_frame()
    for name, col in (("test_error", "test_error"), ("epochs", "epochs")):
        mean, sd, n = g[col].mean(), g[col].std(ddof=1), g[col].count()
        half = t_halfwidth(sd, n)
        if name == "test_error":
            out["n_seeds"] = n
        out[f"{name}_mean"], out[f"{name}_lo"], out[f"{name}_hi"] = mean, mean - half, mean + half
    counts = done.groupby(KEYS, dropna=False)["outcome"].value_counts().unstack(fill_value=0)
    counts = counts[outcome_order(counts.columns)].add_prefix("n_")
    return out.join(counts).reset_index()


def bands(sweep: Sweep, metrics: list[str], *, hold_last: bool,
          drop=(Outcome.DIVERGED,)) -> pd.DataFrame:
    """Mean and 95% band over seeds of each metric at each epoch, per cell.

    ``hold_last``: a run that stopped early (converged, early-stopped) keeps its last value up to
    the last epoch of its cell, since its weights no longer change; without it, a curve averages
    only the runs still going. Runs whose outcome is in ``drop`` are left out (a diverged run's
    loss dwarfs every other curve; the outcomes figure counts them).
    Returns KEYS + [metric, epoch, step, mean, lo, hi, n].
    """
    meta = sweep.runs.set_index("run_id")
    h = sweep.history[sweep.history["run_id"].isin(meta.index[~meta["outcome"].isin(drop)])]
    if h.empty:
        return pd.DataFrame(columns=KEYS + ["metric", "epoch", "step", "mean", "lo", "hi", "n"])
    cell = meta.loc[h["run_id"].unique(), KEYS].copy()
    cell["last"] = h.groupby("run_id")["epoch"].max()
    cell["cell_last"] = cell.groupby(KEYS, dropna=False)["last"].transform("max")
    steps = h.merge(cell[KEYS].reset_index(), on="run_id").groupby(KEYS + ["epoch"])["step"].max()
    out = []
    for metric in metrics:
        wide = h.pivot(index="run_id", columns="epoch", values=metric).loc[cell.index]
        epochs = wide.columns.values
        if hold_last:
            beyond = epochs[None, :] > cell["last"].values[:, None]
            wide = wide.where(~beyond, wide.ffill(axis=1))
        wide = wide.where(epochs[None, :] <= cell["cell_last"].values[:, None])
        grp = wide.set_index(pd.MultiIndex.from_frame(cell[KEYS])).groupby(level=KEYS, dropna=False)
        mean, sd, n = grp.mean(), grp.std(ddof=1), grp.count()
        half = t_halfwidth(sd.values, n.values)
        long = mean.index.to_frame(index=False).iloc[np.repeat(np.arange(len(mean)), len(epochs))]
        long = long.reset_index(drop=True)
        long["metric"] = metric
        long["epoch"] = np.tile(epochs, len(mean))
        long["mean"] = mean.values.ravel()
        long["lo"] = (mean.values - half).ravel()
        long["hi"] = (mean.values + half).ravel()
        long["n"] = n.values.ravel()
        out.append(long[long["n"] > 0])
    res = pd.concat(out, ignore_index=True)
    res["step"] = steps.reindex(pd.MultiIndex.from_frame(res[KEYS + ["epoch"]])).values
    return res


def epochs_to_target(sweep: Sweep, target: float, metric: str = "val_error") -> pd.DataFrame:
    """Per ended run with a history: the first epoch whose ``metric`` is <= ``target`` (nan if
    never). Returns KEYS + [run_id, seed, outcome, reached, epoch]."""
    h = sweep.history
    runs = sweep.runs[sweep.runs["has_history"]]
    hit = h.loc[h[metric] <= target].groupby("run_id")["epoch"].min()
    out = runs[["run_id", *KEYS, "seed", "outcome"]].copy()
    out["epoch"] = out["run_id"].map(hit)
    out["reached"] = out["epoch"].notna()
    return out.reset_index(drop=True)
