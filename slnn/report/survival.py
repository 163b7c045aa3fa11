"""Convergence as time to an event: epochs until the validation error first reaches a target.

    events = time_to_target(history, runs, target=0.1)   # one row per run: time, reached
    km_curves(events)                  # Kaplan-Meier: share not yet at target, per epoch, 95% band
    km_median(events)                  # median epochs to target with its 95% interval
    logrank_tests(events, "input")     # each rule's curve against the reference rule's

A run that never reaches the target is censored, not dropped; where, and why: docs/statistics.md."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as st

from slnn.core.outcomes import RAN

EVENT_COLUMNS = ["run_id", "data", "update", "activation", "lr", "seed", "outcome", "time",
                 "reached"]
BY = ("data", "update")
LEVEL = 0.95


def _metric(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """run_id, epoch, value of ``metric`` from the tidy frame (a ``metric`` column) or the wide
    history (a column named ``metric``)."""
    if "metric" in history.columns and "value" in history.columns:
        h = history[history["metric"] == metric]
        return pd.DataFrame({"run_id": h["run_id"].astype(str), "epoch": h["epoch"],
                             "value": h["value"].astype(float)})
    if metric not in history.columns:
        raise ValueError(f"time_to_target: the history has no column {metric!r}; pass the tidy "
                         f"frame or a wide history with a {metric} column")
    return pd.DataFrame({"run_id": history["run_id"].astype(str), "epoch": history["epoch"],
                         "value": history[metric].astype(float)})


def time_to_target(tidy: pd.DataFrame, runs: pd.DataFrame, target: float,
                   metric: str = "val_error", censor: str = "budget") -> pd.DataFrame:
    """One row per run of ``runs`` with a history (``tidy``: the tidy frame, or the wide history):
    ``time``, the first epoch whose ``metric`` is <= ``target`` (``reached`` True), or, for a
    run that never gets there (``reached`` False), the epoch it is censored at: its budget
    ``epochs_max`` when it ended with a trained or diverged outcome and ``censor="budget"``, else
    its last logged epoch (docs/statistics.md says why). Columns ``EVENT_COLUMNS``."""
    if censor not in ("budget", "last"):
        raise ValueError(f"time_to_target: censor must be 'budget' or 'last', not {censor!r}")
    h = _metric(tidy, metric)
    h = h[h["run_id"].isin(runs["run_id"].astype(str))]
    last = h.groupby("run_id")["epoch"].max()
    hit = h[h["value"] <= target].groupby("run_id")["epoch"].min()
    r = runs.assign(run_id=runs["run_id"].astype(str))
    r = r[r["run_id"].isin(last.index)]
    out = r[[c for c in EVENT_COLUMNS[:7] if c in r.columns]].copy()
    out["reached"] = out["run_id"].map(hit).notna().to_numpy()
    stop = out["run_id"].map(last).to_numpy(dtype=float)
    if censor == "budget" and "epochs_max" in r.columns:
        budget = pd.to_numeric(r["epochs_max"], errors="coerce").to_numpy(dtype=float)
        ended = r["outcome"].isin(RAN).to_numpy() & np.isfinite(budget)
        stop = np.where(ended, np.maximum(budget, stop), stop)
    out["time"] = np.where(out["reached"], out["run_id"].map(hit).to_numpy(dtype=float), stop)
    return out.reindex(columns=EVENT_COLUMNS).reset_index(drop=True)


def _censored(g: pd.DataFrame) -> st.CensoredData:
    t = g["time"].to_numpy(dtype=float)
    hit = g["reached"].to_numpy(dtype=bool)
    return st.CensoredData(uncensored=t[hit], right=t[~hit])


def _km(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, survival, low, high) at epoch 0 and every time in ``g``: the product-limit
    estimate and its log-log band. No event: survival 1, no band. Survival 0: band 0."""
    epochs = np.unique(np.concatenate([[0.0], g["time"].to_numpy(dtype=float)]))
    if not g["reached"].any():
        nan = np.full(len(epochs), np.nan)
        return epochs, np.ones(len(epochs)), nan, nan.copy()
    sf = st.ecdf(_censored(g)).sf
    surv = sf.evaluate(epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined where the curve is 1 or 0: handled below
        ci = sf.confidence_interval(LEVEL, method="log-log")
        lo, hi = ci.low.evaluate(epochs), ci.high.evaluate(epochs)
    lo, hi = np.where(surv == 1, 1.0, lo), np.where(surv == 1, 1.0, hi)
    lo, hi = np.where(surv == 0, 0.0, lo), np.where(surv == 0, 0.0, hi)
    return epochs, surv, lo, hi


def km_curves(events: pd.DataFrame, by=BY) -> pd.DataFrame:
    """Kaplan-Meier curves per group (``by``): the share of runs not yet at the target after each
    epoch (``surv``) with its 95% log-log band (``lo``, ``hi``), at epoch 0 and at every time an
    event or a censoring happens (a step function: hold each value until the next epoch)."""
    out = []
    for key, g in events.groupby(list(by), sort=True, observed=True):
        epochs, surv, lo, hi = _km(g)
        frame = pd.DataFrame(dict(zip(by, key)), index=range(len(epochs)))
        out.append(frame.assign(epoch=epochs, surv=surv, lo=lo, hi=hi))
    if not out:
        return pd.DataFrame(columns=[*by, "epoch", "surv", "lo", "hi"])
    return pd.concat(out, ignore_index=True)


def _first_at_or_below(epochs: np.ndarray, curve: np.ndarray, level: float = 0.5) -> float:
    at = np.flatnonzero(curve <= level)
    return float(epochs[at[0]]) if len(at) else np.nan


def km_median(events: pd.DataFrame, by=BY) -> pd.DataFrame:
    """Per group: the median epochs to target (the first epoch at which the Kaplan-Meier curve is
    <= 0.5; nan, "not reached", if it stays above) and its 95% interval (``lo``: the first epoch
    at which the band's lower edge is <= 0.5; ``hi``: the first at which its upper edge is, nan
    where it stays above 0.5: no upper end), with ``n`` runs and ``n_reached``."""
    rows = []
    for key, g in events.groupby(list(by), sort=True, observed=True):
        epochs, surv, lo, hi = _km(g)
        rows.append({**dict(zip(by, key)), "median": _first_at_or_below(epochs, surv),
                     # the band's lower edge reaches 0.5 first: the early end of the interval
                     "lo": _first_at_or_below(epochs, np.nan_to_num(lo, nan=1.0)),
                     "hi": _first_at_or_below(epochs, np.nan_to_num(hi, nan=1.0)),
                     "n": len(g), "n_reached": int(g["reached"].sum())})
    return pd.DataFrame(rows, columns=[*by, "median", "lo", "hi", "n", "n_reached"])


def logrank_tests(events: pd.DataFrame, reference: str, by: str = "data") -> pd.DataFrame:
    """Per data set (``by``), each other rule ``a`` against the ``reference`` rule ``b``: the
    two-sided log-rank test of their curves (``scipy.stats.logrank``). ``statistic`` is
    (observed - expected) events of ``a`` over its standard deviation: positive when ``a``
    reaches the target sooner than ``b``. nan when neither has an event."""
    rows = []
    for data, d in events.groupby(by, sort=True, observed=True):
        rules = sorted(set(d["update"]))
        if reference not in rules:
            continue
        ref = d[d["update"] == reference]
        for rule in rules:
            if rule == reference:
                continue
            mine = d[d["update"] == rule]
            stat = p = np.nan
            if mine["reached"].any() or ref["reached"].any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = st.logrank(x=_censored(mine), y=_censored(ref))
                stat, p = float(res.statistic), float(res.pvalue)
            rows.append({by: data, "a": rule, "b": reference, "statistic": stat, "p": p})
    return pd.DataFrame(rows, columns=[by, "a", "b", "statistic", "p"])
