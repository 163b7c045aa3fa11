"""The numbers behind the report: the summary table, learning-curve bands, epochs to a target.

The summary table's intervals respect their bounds: means of error rates and of epochs get a 95%
percentile-bootstrap interval over seeds (``slnn.report.inference``), which lies inside the
values' range; a divergence rate gets the exact Clopper-Pearson interval. Error figures count
only the runs that trained without diverging; a cell where every run diverged has none. The
figures' bands are 95% t-intervals over seeds, ``mean +- t(0.975, n - 1) * sd / sqrt(n)``: a
picture of the spread, cheap at every epoch; the table holds the inference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from slnn.core.outcomes import ORDER, RAN, TRAINED, Outcome
from slnn.report.frames import KEYS, SweepData as Sweep
from slnn.report.inference import bootstrap_means, clopper_pearson

# the order outcomes are shown in; any other value found in the data goes after these
OUTCOMES = tuple(str(o) for o in ORDER)
# what each bounded column of the summary must lie in (epochs: [1, the cell's max epochs])
BOUNDS = {"test_error": (0.0, 1.0), "val_error": (0.0, 1.0), "div_rate": (0.0, 1.0),
          "epochs": (1.0, "epochs_max")}


def t_halfwidth(sd, n):
    """Half the width of the 95% t-interval of a mean; nan where n < 2."""
    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = st.t.ppf(0.975, np.where(n >= 2, n - 1, np.nan))
        return q * sd / np.sqrt(n)


def outcome_order(present) -> list[str]:
    present = list(dict.fromkeys(present))
    return [o for o in OUTCOMES if o in present] + sorted(o for o in present if o not in OUTCOMES)


def trained_ok(runs: pd.DataFrame) -> pd.Series:
    """The runs whose errors count: trained without diverging, with a finite test error."""
    return runs["outcome"].isin(TRAINED) & np.isfinite(runs["test_error"])


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (data, update, activation, lr), sorted so, with:

    ``n_runs``; ``n_seeds`` (runs that trained without diverging: the error figures' n);
    ``test_error_mean/lo/hi`` and ``val_error_mean/lo/hi`` (final errors, bootstrap interval);
    ``initial_test_error_mean`` (the same seeds at epoch 0); ``chance_error`` (the test split's
    majority-class error, mean over the cell's runs); ``epochs_mean/lo/hi`` (epochs run, by
    every run that ran, diverged ones included); ``n_ran``, ``n_diverged``, ``div_rate`` and its
    Clopper-Pearson ``div_lo/hi``; ``epochs_max`` (train.epochs); outcome counts ``n_<outcome>``; and ``best``:
    the rule's best cell on its data set, chosen by mean validation error (below).
    """
    done = runs[runs["outcome"] != Outcome.RUNNING]
    if done.empty:
        return pd.DataFrame(columns=KEYS + ["n_runs", "n_seeds"])
    rows, err_samples, val_samples, ep_samples = [], [], [], []
    for key, g in done.groupby(KEYS, sort=True, dropna=False):
        ok = g[trained_ok(g)]
        ran = g[g["outcome"].isin(RAN) & np.isfinite(g["epochs_run"])]
        n_div = int((g["outcome"] == Outcome.DIVERGED).sum())
        lo, hi = clopper_pearson(n_div, len(ran))
        rows.append({**dict(zip(KEYS, key)), "n_runs": len(g), "n_seeds": len(ok),
                     "test_error_mean": ok["test_error"].mean(),
                     "val_error_mean": ok["val_error"].mean() if "val_error" in ok else np.nan,
                     "initial_test_error_mean": (ok["initial_test_error"].mean()
                                                 if "initial_test_error" in ok else np.nan),
                     "chance_error": g["chance_error"].mean() if "chance_error" in g else np.nan,
                     "epochs_mean": ran["epochs_run"].mean(), "n_ran": len(ran),
                     "n_diverged": n_div, "div_rate": n_div / len(ran) if len(ran) else np.nan,
                     "div_lo": lo, "div_hi": hi,
                     "epochs_max": g["epochs_max"].max() if "epochs_max" in g else np.nan})
        err_samples.append(ok["test_error"].to_numpy())
        val_samples.append(ok["val_error"].to_numpy() if "val_error" in ok else np.empty(0))
        ep_samples.append(ran["epochs_run"].to_numpy())
    out = pd.DataFrame(rows)
    for name, samples in (("test_error", err_samples), ("val_error", val_samples),
                          ("epochs", ep_samples)):
        ci = bootstrap_means(samples)
        out[f"{name}_lo"], out[f"{name}_hi"] = ci[:, 0], ci[:, 1]
    counts = done.groupby(KEYS, dropna=False)["outcome"].value_counts().unstack(fill_value=0)
    counts = counts[outcome_order(counts.columns)].add_prefix("n_").drop(columns="n_diverged",
                                                                           errors="ignore")
    out = out.merge(counts.reset_index(), on=KEYS, how="left")
    out["best"] = mark_best(out)
    first = KEYS + ["n_runs", "n_seeds", "best"]
    return out[first + [c for c in out.columns if c not in first]]


def mark_best(summary: pd.DataFrame) -> pd.Series:
    """Per (data, rule): True for the cell with the lowest mean validation error over its
    non-diverged seeds, among cells where at least half the runs that ran did not diverge (a
    cell where most seeds blew up is no rule's best setting, however lucky its survivors); ties
    go to fewer divergences, then the smaller lr. Never chosen on the test error."""
    best = pd.Series(False, index=summary.index)
    ok = summary[np.isfinite(summary["val_error_mean"])
                 & (summary["n_seeds"] >= 0.5 * summary["n_ran"]) & (summary["n_seeds"] > 0)]
    for _, g in ok.groupby(["data", "update"]):
        i = g.sort_values(["val_error_mean", "n_diverged", "lr", "activation"]).index[0]
        best[i] = True
    return best


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
