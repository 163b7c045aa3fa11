"""Aggregates where a diverged run is a failure (``slnn.report.aggregate``): probability of
improvement, interquartile mean, performance profile, against hand-computed small cases, scipy's
Mann-Whitney U, and a synthetic sweep in which one rule diverges in half its runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from slnn.report.aggregate import (iqm, iqm_interval, performance_profile,
                                   probability_of_improvement)
from slnn.report.inference import clopper_pearson, paired_test

D = np.nan  # a diverged run's test error


def runs_of(cells: dict) -> pd.DataFrame:
    """{(activation, lr): {rule: [test errors, nan = diverged]}} -> a runs frame."""
    rows = []
    for (act, lr), rules in cells.items():
        for rule, errors in rules.items():
            for seed, e in enumerate(errors):
                rows.append(dict(update=rule, activation=act, lr=lr, seed=seed,
                                 outcome="diverged" if np.isnan(e) else "max_epochs",
                                 test_error=e))
    return pd.DataFrame(rows)


def test_probability_of_improvement_by_hand():
    runs = runs_of({
        # pairs (a, b): (.1,.2) 1, (.1,D) 1, (.2,.2) 0.5, (.2,D) 1 -> 3.5 / 4
        ("sigmoid", 0.1): {"a": [0.1, 0.2], "b": [0.2, D]},
        # (D,D) 0.5, (D,.1) 0, (.3,D) 1, (.3,.1) 0 -> 1.5 / 4
        ("sigmoid", 1.0): {"a": [D, 0.3], "b": [D, 0.1]},
        ("tanh", 0.1): {"a": [0.5, 0.6]},  # only one rule: not a shared cell
    })
    got = probability_of_improvement(runs, "a", "b", reps=500)
    assert got["n_cells"] == 2 and got["p"] == pytest.approx((3.5 / 4 + 1.5 / 4) / 2)
    back = probability_of_improvement(runs, "b", "a", reps=500)
    assert back["p"] == pytest.approx(1 - got["p"])
    assert 0 <= got["lo"] <= got["p"] <= got["hi"] <= 1
    none = probability_of_improvement(runs, "a", "nobody")
    assert none["n_cells"] == 0 and np.isnan(none["p"])


def test_without_divergence_a_cell_is_mann_whitney_u_over_its_pairs():
    rng = np.random.default_rng(5)
    a, b = rng.binomial(38, 0.3, 9) / 38, rng.binomial(38, 0.35, 7) / 38  # ties across rules
    runs = runs_of({("sigmoid", 0.1): {"a": list(a), "b": list(b)}})
    u = st.mannwhitneyu(b, a).statistic  # pairs with b > a, ties counted 1/2
    assert probability_of_improvement(runs, "a", "b", reps=200)["p"] == pytest.approx(
        u / (len(a) * len(b)))


def test_a_rule_that_diverges_in_half_its_runs_is_worse_though_its_survivors_are_equal():
    """Rule ``half`` learns exactly like ``always`` (the same errors, seed by seed) but diverges
    in every other seed: the paired tests on the survivors see no difference, the probability
    of improvement is about 1/4 and its interval is below 1/2."""
    rng = np.random.default_rng(6)
    cells = {}
    for act in ("sigmoid", "tanh"):
        for lr in (0.01, 0.1, 1.0):
            errors = rng.binomial(38, rng.uniform(0.1, 0.4), 20) / 38
            half = np.where(np.arange(20) % 2 == 0, errors, np.nan)
            cells[(act, lr)] = {"half": list(half), "always": list(errors)}
    runs = runs_of(cells)
    survivors = runs[runs["seed"] % 2 == 0]
    for rule in ("half", "always"):  # the survivors' errors are the same, seed by seed
        assert survivors[survivors["update"] == rule]["test_error"].notna().all()
    a, b = (survivors[survivors["update"] == r]["test_error"].to_numpy()
            for r in ("half", "always"))
    assert np.isnan(paired_test(a, b).p)  # every difference zero: no paired test can see it
    got = probability_of_improvement(runs, "half", "always")
    assert got["n_cells"] == 6 and got["p"] < 0.5 and got["hi"] < 0.5
    assert got["p"] == pytest.approx(0.25, abs=0.05)
    again = probability_of_improvement(runs, "half", "always")
    assert again == got  # seeded
    est, lo, hi = iqm_interval(runs, "half")
    est_b, lo_b, hi_b = iqm_interval(runs, "always")
    assert est > est_b and lo > hi_b  # half its runs at error 1.0 lift the middle half


def test_iqm_counts_a_diverged_run_as_error_one():
    assert iqm([0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 1.0, 1.0]) == pytest.approx(
        (0.15 + 0.2 + 0.3 + 0.4) / 4)
    runs = runs_of({("sigmoid", 0.1): {"a": [0.1, 0.2, 0.3, 0.4]},
                    ("sigmoid", 1.0): {"a": [D, D, 0.05, 0.15]}})
    est, lo, hi = iqm_interval(runs, "a", reps=500)
    assert est == pytest.approx(0.2625) and 0 <= lo <= est <= hi <= 1
    assert np.isnan(iqm_interval(runs, "nobody")[0])


def test_the_performance_profile_never_counts_a_diverged_run():
    runs = runs_of({("sigmoid", 0.1): {"a": [0.1, 0.2, D, 0.4], "b": [0.3, 0.3, 0.3, 0.3]}})
    taus = np.array([0.0, 0.15, 0.3, 1.0])
    prof = performance_profile(runs, taus).set_index(["update", "tau"])
    assert list(prof.loc["a", "share"]) == [0, 0.25, 0.5, 0.75]  # 1.0: the diverged run is out
    assert list(prof.loc["b", "share"]) == [0, 0, 1, 1]
    lo, hi = clopper_pearson(np.array([0, 1, 2, 3]), np.full(4, 4))
    np.testing.assert_allclose(prof.loc["a", "lo"], lo)
    np.testing.assert_allclose(prof.loc["a", "hi"], hi)


def test_runs_that_never_ran_are_left_out():
    runs = runs_of({("sigmoid", 0.1): {"a": [0.1, 0.2], "b": [0.3, 0.4]}})
    runs.loc[0, "outcome"] = "killed"  # a's 0.1: not a result of the rule
    assert probability_of_improvement(runs, "a", "b", reps=100)["p"] == 1.0
    prof = performance_profile(runs, [0.15])
    assert prof.set_index("update").loc["a", "n"] == 1
