"""The numbers behind the report: the summary table, learning-curve bands.

A mean error rate over seeds gets the score interval of ``inference.rate_intervals`` (inside
[0, 1]), a mean of epochs a t interval clipped to [0, epochs], a divergence rate Clopper-Pearson;
error figures count only runs that trained without diverging. The figures' bands are unclipped
95% t intervals per epoch, a picture of the spread (docs/statistics.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from slnn.core.outcomes import ORDER, RAN, TRAINED, Outcome
from slnn.report.frames import KEYS, SweepData as Sweep
from slnn.report.inference import clopper_pearson, mean_intervals, rate_intervals

# the order outcomes are shown in; any other value found in the data goes after these
OUTCOMES = tuple(str(o) for o in ORDER)


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


def per_seed(runs: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """One row per cell (``KEYS``) and seed, ``cols`` averaged over the seed's runs, with the
    seed in ``unit`` (a run without a seed is its own unit). A cell has several runs of one seed
    when another param varies inside it (``data.seed=0,1``, say): the seed is the unit of
    analysis, so they count once, as their mean, in every figure and every test."""
    seed = pd.to_numeric(runs["seed"], errors="coerce")
    unit = seed.map(lambda v: f"seed {int(v) if float(v).is_integer() else repr(float(v))}",
                    na_action="ignore").fillna("run " + runs["run_id"].astype(str))
    if runs.empty:
        return pd.DataFrame(columns=KEYS + ["unit"] + cols)
    return (runs.assign(unit=unit).groupby(KEYS + ["unit"], sort=False, dropna=False)[cols]
            .mean().reset_index())


def chance_by_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Per data set: the chance level (the test error of answering the training split's
    majority class, logged by each
    run as ``chance_error``), mean over the seeds, and how many seeds that is. Every run of a
    seed has the same split, so each seed counts once."""
    r = runs[np.isfinite(runs["chance_error"])] if "chance_error" in runs else runs.iloc[:0]
    by_seed = r.groupby(["data", "seed"])["chance_error"].mean()
    g = by_seed.groupby(level="data")
    return pd.DataFrame({"chance_error": g.mean(), "seeds": g.size()})


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (data, update, activation, lr), sorted so, with:

    ``n_runs``; ``n_seeds`` (seeds with a run that trained without diverging: the error
    figures' n; a seed's runs count once, as their mean, ``per_seed``);
    ``test_error_mean/lo/hi`` and ``val_error_mean/lo/hi`` (final errors, ``rate_intervals``);
    ``initial_test_error_mean`` (the same seeds at epoch 0); ``chance_error`` (the test split's
    training-majority error, mean over the same seeds); ``epochs_mean/lo/hi`` (epochs run, over the
    seeds with a run that ran, diverged ones included; their number ``n_seeds_ran``); ``n_ran``
    (runs that ran), ``n_diverged``, ``div_rate`` and its Clopper-Pearson ``div_lo/hi`` (over
    runs); ``epochs_max`` (train.epochs); outcome counts ``n_<outcome>``; and ``best``:
    the rule's best cell on its data set, chosen by mean validation error (below).
    """
    done = runs[runs["outcome"] != Outcome.RUNNING]
    if done.empty:
        return pd.DataFrame(columns=KEYS + ["n_runs", "n_seeds"])
    done = done.assign(**{c: done[c] if c in done else np.nan for c in
                          ("val_error", "initial_test_error", "chance_error", "epochs_max")})
    ok = per_seed(done[trained_ok(done)],
                  ["test_error", "val_error", "initial_test_error", "chance_error"])
    ran_runs = done[done["outcome"].isin(RAN) & np.isfinite(done["epochs_run"])]
    ran = per_seed(ran_runs, ["epochs_run"])
    g, gk, gr = (d.groupby(KEYS, sort=True, dropna=False) for d in (done, ok, ran))
    out = g.size().rename("n_runs").to_frame()
    out["n_seeds"] = gk.size()
    for col in ("test_error", "val_error", "initial_test_error"):
        out[f"{col}_mean"] = gk[col].mean()
    # over the seeds the errors are over (with data.seed=null each seed has its own split and
    # chance level); a cell where none trained shows its runs' own
    out["chance_error"] = gk["chance_error"].mean()
    out["chance_error"] = out["chance_error"].fillna(g["chance_error"].mean())
    out["epochs_mean"] = gr["epochs_run"].mean()
    out["n_ran"] = ran_runs.groupby(KEYS, sort=True, dropna=False).size()
    out["n_seeds_ran"] = gr.size()
    out["n_diverged"] = g["outcome"].apply(lambda o: int((o == Outcome.DIVERGED).sum()))
    out = out.fillna({"n_seeds": 0, "n_ran": 0, "n_seeds_ran": 0}).astype(
        {"n_seeds": int, "n_ran": int, "n_seeds_ran": int})
    with np.errstate(all="ignore"):
        out["div_rate"] = np.where(out["n_ran"] > 0, out["n_diverged"] / out["n_ran"], np.nan)
    out["div_lo"], out["div_hi"] = clopper_pearson(out["n_diverged"].to_numpy(),
                                                   out["n_ran"].to_numpy())
    out["epochs_max"] = g["epochs_max"].max()
    # epochs run lie in [0, train.epochs]
    epoch_bounds = (0.0, out["epochs_max"].fillna(np.inf).to_numpy(dtype=float))
    for name, grouped, col, bounds in (("test_error", gk, "test_error", None),
                                       ("val_error", gk, "val_error", None),
                                       ("epochs", gr, "epochs_run", epoch_bounds)):
        values = {k: v.to_numpy() for k, v in grouped[col]}
        samples = [values.get(k, np.empty(0)) for k in out.index]
        ci = rate_intervals(samples) if bounds is None else mean_intervals(samples, bounds)
        out[f"{name}_lo"], out[f"{name}_hi"] = ci[:, 0], ci[:, 1]
    out = out.reset_index()
    counts = done.groupby(KEYS, dropna=False)["outcome"].value_counts().unstack(fill_value=0)
    counts = counts[outcome_order(counts.columns)].add_prefix("n_").drop(columns="n_diverged",
                                                                           errors="ignore")
    out = out.merge(counts.reset_index(), on=KEYS, how="left")
    out["best"] = mark_best(out)
    first = KEYS + ["n_runs", "n_seeds", "best"]
    return out[first + [c for c in out.columns if c not in first]]


def mark_best(summary: pd.DataFrame) -> pd.Series:
    """Per (data, rule): True for the cell with the lowest mean validation error over its
    non-diverged seeds, among the cells where no run diverged; a rule with no such cell, among
    those where at least half did not. A cell whose seeds partly blew up averages only its
    survivors, which started from kinder splits and weights: no fair best setting. Ties go to
    the smaller lr. Never chosen on the test error."""
    best = pd.Series(False, index=summary.index)
    for at in best_cells(summary, ["data", "update"]):
        best[at] = True
    return best


def best_cells(summary: pd.DataFrame, by: list[str]) -> list:
    """The index of the best cell (``mark_best``'s rule) of each group of ``summary`` by ``by``:
    per (data, rule) for the report's best cells, per (data, rule, activation) for its best
    learning rate in the rules table."""
    out = []
    if summary.empty:
        return out
    has = summary[np.isfinite(summary["val_error_mean"].astype(float)) & (summary["n_seeds"] > 0)]
    for _, g in has.groupby(by):
        clean = g[g["n_diverged"] == 0]
        # seeds with seeds: several runs of one seed count once on both sides
        pool = clean if len(clean) else g[g["n_seeds"] >= 0.5 * g["n_seeds_ran"]]
        if len(pool):
            out.append(pool.sort_values(["val_error_mean", "lr", "activation"]).index[0])
    return out


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
