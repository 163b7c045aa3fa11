"""Convergence as time to an event (``slnn.report.survival``), against a product-limit estimate
and Greenwood's variance written out here, on small censored data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from slnn.report.survival import km_curves, km_median, logrank_tests, time_to_target


def product_limit(times, reached):
    """The Kaplan-Meier estimate by hand: at each event time t, S *= 1 - d / n_at_risk, where the
    runs censored at t are still at risk at t. Returns {t: (S(t), Greenwood variance sum)}."""
    times, reached = np.asarray(times, float), np.asarray(reached, bool)
    s, g, out = 1.0, 0.0, {}
    for t in sorted(set(times[reached])):
        at_risk = int((times >= t).sum())
        d = int(((times == t) & reached).sum())
        s *= 1 - d / at_risk
        g += d / (at_risk * (at_risk - d)) if at_risk > d else np.inf
        out[t] = (s, g)
    return out


def loglog_band(s, g, z=st.norm.ppf(0.975)):
    """The log-log band: S ** exp(+-z sqrt(g) / log S)."""
    w = z * math.sqrt(g) / math.log(s)
    return s ** math.exp(-w), s ** math.exp(w)


def events_frame(groups):
    rows = []
    for (data, rule), (times, reached) in groups.items():
        for i, (t, r) in enumerate(zip(times, reached)):
            rows.append(dict(run_id=f"{data}-{rule}-{i}", data=data, update=rule,
                             activation="sigmoid", lr=0.1, seed=i, outcome="max_epochs",
                             time=float(t), reached=bool(r)))
    return pd.DataFrame(rows)


SMALL = {("toy", "input"): ([2, 3, 3, 3, 5, 6, 6, 8], [1, 1, 1, 0, 1, 0, 1, 0]),
         ("toy", "kronecker"): ([4, 7, 9, 9, 9], [1, 1, 0, 0, 0])}


def test_km_curve_and_band_are_the_product_limit_estimate_by_hand():
    ev = events_frame(SMALL)
    km = km_curves(ev)
    for (data, rule), (times, reached) in SMALL.items():
        mine = km[(km["data"] == data) & (km["update"] == rule)].set_index("epoch")
        assert mine.loc[0.0, "surv"] == 1.0
        hand = product_limit(times, reached)
        for t, (s, g) in hand.items():
            assert mine.loc[t, "surv"] == pytest.approx(s, rel=1e-12)
            if 0 < s < 1:
                lo, hi = loglog_band(s, g)
                assert (mine.loc[t, "lo"], mine.loc[t, "hi"]) == pytest.approx((lo, hi), rel=1e-9)
        # a censoring time with no event holds the value of the last event before it
        end = max(times)
        assert mine.loc[float(end), "surv"] == pytest.approx(hand[max(hand)][0])
    inp = product_limit(*SMALL[("toy", "input")])
    assert inp[2.0][0] == pytest.approx(7 / 8) and inp[3.0][0] == pytest.approx(7 / 8 * 5 / 7)


def test_km_median_and_its_interval_come_from_the_curve_and_its_band():
    ev = events_frame(SMALL)
    med = km_median(ev).set_index("update")
    hand = product_limit(*SMALL[("toy", "input")])
    # input: S = 7/8, 5/8, then 5/8 * 3/4 = 0.469 at epoch 5: the median is 5
    assert med.loc["input", "median"] == 5.0 and hand[5.0][0] < 0.5 < hand[3.0][0]
    bands = {t: loglog_band(s, g) for t, (s, g) in hand.items() if 0 < s < 1}
    # the band's lower edge drops to 0.5 first (the interval's early end), its upper edge last
    # (or never: no upper end, "not reached")
    lo = min(t for t, (low, _) in bands.items() if low <= 0.5)
    hi = min(t for t, (_, h) in bands.items() if h <= 0.5) if any(
        h <= 0.5 for _, h in bands.values()) else np.nan
    assert med.loc["input", "lo"] == lo <= med.loc["input", "median"]
    assert (np.isnan(hi) and np.isnan(med.loc["input", "hi"])) or (
        med.loc["input", "median"] <= med.loc["input", "hi"] == hi)
    # kronecker: 2 of 5 reach the target, the curve ends at 3/5 > 0.5: no median
    assert np.isnan(med.loc["kronecker", "median"])
    assert (med.loc["kronecker", "n"], med.loc["kronecker", "n_reached"]) == (5, 2)


def test_logrank_is_scipys_with_the_rule_first():
    ev = events_frame(SMALL)
    lr = logrank_tests(ev, "input")
    assert list(lr[["data", "a", "b"]].iloc[0]) == ["toy", "kronecker", "input"]
    x = st.CensoredData(uncensored=[4, 7], right=[9, 9, 9])
    y = st.CensoredData(uncensored=[2, 3, 3, 5, 6], right=[3, 6, 8])
    res = st.logrank(x, y)
    assert lr["statistic"].iloc[0] == pytest.approx(res.statistic)
    assert res.statistic < 0  # kronecker reaches the target later
    assert lr["p"].iloc[0] == pytest.approx(res.pvalue)


def _history(curves: dict[str, list[float]]) -> pd.DataFrame:
    rows = [dict(run_id=r, epoch=e, val_error=v) for r, vals in curves.items()
            for e, v in enumerate(vals)]
    return pd.DataFrame(rows)


def test_a_run_that_stops_without_reaching_the_target_is_censored_at_the_budget():
    """Four runs of six diverge at epoch 2, two reach the target at epoch 5: the median is not
    reached, where censoring the diverged runs at epoch 2 would make it 5."""
    curves, outcomes = {}, {}
    for i in range(6):
        if i % 3:
            curves[f"r{i}"], outcomes[f"r{i}"] = [0.6, 0.5, np.nan], "diverged"
        else:
            curves[f"r{i}"], outcomes[f"r{i}"] = [0.6, 0.5, 0.4, 0.3, 0.2, 0.05, 0.04, 0.04,
                                                  0.04, 0.04, 0.04], "max_epochs"
    runs = pd.DataFrame({"run_id": list(curves), "data": "toy", "update": "input",
                         "activation": "sigmoid", "lr": 0.1, "seed": range(6),
                         "outcome": [outcomes[r] for r in curves], "epochs_max": 10})
    ev = time_to_target(_history(curves), runs, target=0.1)
    assert list(ev["reached"]) == [True, False, False] * 2
    assert list(ev["time"]) == [5.0, 10.0, 10.0] * 2
    med = km_median(ev).iloc[0]
    assert np.isnan(med["median"]) and (med["n"], med["n_reached"]) == (6, 2)
    km = km_curves(ev).set_index("epoch")
    assert km.loc[5.0, "surv"] == pytest.approx(4 / 6)
    assert km.loc[10.0, "surv"] == km.loc[5.0, "surv"]
    last = time_to_target(_history(curves), runs, target=0.1, censor="last")
    assert list(last["time"]) == [5.0, 2.0, 2.0] * 2
    assert km_median(last).iloc[0]["median"] == 5.0  # the survivor bias "budget" avoids


def test_time_to_target_reads_the_tidy_frame_too():
    from slnn.report.frames import tidy_frame

    curves = {"a": [0.5, 0.3, 0.1, 0.05], "b": [0.5, 0.4, 0.3, 0.2]}
    runs = pd.DataFrame({"run_id": ["a", "b"], "data": "toy", "update": "input",
                         "activation": "sigmoid", "lr": 0.1, "seed": [0, 1],
                         "outcome": ["max_epochs", "early_stopped"], "epochs_max": 9})
    wide = _history(curves)
    for col in ("step", "train_loss", "val_loss", "test_loss", "train_error", "test_error",
                "grad_cosine", "weight_norm"):
        wide[col] = 0.0
    tidy = tidy_frame(runs, wide)
    for frame in (wide, tidy):
        ev = time_to_target(frame, runs, target=0.1)
        assert list(ev["time"]) == [2.0, 9.0] and list(ev["reached"]) == [True, False]
    with pytest.raises(ValueError, match="no column 'nope'"):
        time_to_target(wide, runs, 0.1, metric="nope")
