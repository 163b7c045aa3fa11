"""The report's first screen: the best cell chosen on half the seeds and reported on the other
half, ties broken by the validation loss, divergence scored as failure, the answer's words no
stronger than its tests and at most 60 words, every number recomputed here independently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from slnn.report.answer import MAX_WORDS, build, display
from slnn.report.selection import choose_best, seed_split

RULES = ("input", "kronecker")


def runs_frame(levels: dict, *, seeds: int = 10, datas=("iris_petal",), acts=("sigmoid", "tanh"),
               lrs=(0.1, 1.0), diverge=None, rng=0, noise=0.01) -> pd.DataFrame:
    """Synthetic runs: ``levels[rule]`` is the error level (a float, or a function of
    (act, lr, seed)); ``diverge(rule, act, lr, seed)`` True makes that run diverge."""
    g = np.random.default_rng(rng)
    rows = []
    for data in datas:
        for rule, level in levels.items():
            for act in acts:
                for lr in lrs:
                    for seed in range(seeds):
                        base = level(act, lr, seed) if callable(level) else level
                        err = float(np.clip(base + noise * g.standard_normal(), 0, 1))
                        div = bool(diverge and diverge(rule, act, lr, seed))
                        rows.append(dict(
                            run_id=f"{data}-{rule}-{act}-{lr}-{seed}", data=data, update=rule,
                            activation=act, lr=lr, seed=seed,
                            outcome="diverged" if div else "max_epochs", reason="",
                            epochs_run=20.0, epochs_max=20.0,
                            test_error=err, val_error=err + 0.001 * g.standard_normal(),
                            val_loss=err / 2, initial_test_error=0.66, chance_error=0.66,
                            n_classes=3))
    return pd.DataFrame(rows)


def _by_hand(runs: pd.DataFrame, rule: str, choose, report) -> pd.DataFrame:
    """The cross-fitted choice, written again here: the cell with the lowest mean validation
    error (diverged = 1) over ``choose``; ``report``'s runs at that cell."""
    r = runs[(runs["update"] == rule) & runs["seed"].isin(choose)]
    score = r.assign(s=np.where(r["outcome"] == "diverged", 1.0, r["val_error"]))
    act, lr = score.groupby(["activation", "lr"])["s"].mean().idxmin()
    return runs[(runs["update"] == rule) & (runs["activation"] == act) & (runs["lr"] == lr)
                & runs["seed"].isin(report)]


def test_each_half_of_the_seeds_is_reported_at_the_cell_the_other_half_chose():
    # sigmoid/0.1 looks best on seeds 0-4 but is bad on 5-9, and the other way round for tanh/1
    def level(act, lr, seed):
        if (act, lr) == ("sigmoid", 0.1):
            return 0.05 if seed < 5 else 0.5
        if (act, lr) == ("tanh", 1.0):
            return 0.5 if seed < 5 else 0.06
        return 0.2

    runs = runs_frame({"input": level, "kronecker": 0.6})
    split = seed_split(runs)
    assert split.choose == tuple(range(5)) and split.report == tuple(range(5, 10))
    a = _by_hand(runs, "input", range(5), range(5, 10))
    b = _by_hand(runs, "input", range(5, 10), range(5))
    assert set(a["activation"]) == {"sigmoid"} and set(b["activation"]) == {"tanh"}
    answer, _ = build(runs, pd.DataFrame(columns=["family", "p"]), None, 0.1)
    row = answer.table.set_index("update").loc["input"]
    expect = pd.concat([a, b])["test_error"].mean()  # 0.5 either way: no winner's curse
    assert row["test_error"] == pytest.approx(expect, abs=1e-12)
    assert expect > 0.4 and row["n_report"] == 10
    assert row["activation"] == "sigmoid, lr 0.1 / tanh, lr 1"
    assert "seeds 0-4 choose the cell at which seeds 5-9 are reported" in answer.split.words()
    # choosing and reporting on the same seeds would have claimed about 0.05
    same = _by_hand(runs, "input", range(5), range(5))["test_error"].mean()
    assert same < 0.1


def test_ties_go_to_the_lower_validation_loss_never_to_the_name():
    runs = runs_frame({"input": 0.1}, acts=("aaa", "zzz"), lrs=(0.1,), noise=0.0)
    runs["val_error"] = 0.1  # every cell ties on the validation error
    runs.loc[runs["activation"] == "zzz", "val_loss"] = 0.01  # ... but not on the loss
    best = choose_best(runs)
    assert best["activation"].tolist() == ["zzz"]


def test_a_diverged_run_counts_as_a_failure_in_the_choice():
    # tanh is a little better when it trains, but one choosing seed in five diverges
    runs = runs_frame({"input": lambda a, lr, s: 0.08 if a == "tanh" else 0.1}, lrs=(0.1,),
                      diverge=lambda r, a, lr, s: a == "tanh" and s == 0, noise=0.0)
    best = choose_best(runs)
    assert best["activation"].tolist() == ["sigmoid"]
    # the score recomputed: tanh's mean over seeds 0-4 with the diverged one scoring 1
    tanh = runs[(runs["activation"] == "tanh") & (runs["seed"] < 5)]
    score = np.where(tanh["outcome"] == "diverged", 1.0, tanh["val_error"]).mean()
    assert score > 0.1


def test_divergence_counts_and_intervals_match_scipy():
    runs = runs_frame({"input": 0.1, "kronecker": 0.5},
                      diverge=lambda r, a, lr, s: r == "kronecker" and (s % 3 == 0))
    answer, _ = build(runs, pd.DataFrame(columns=["family", "p"]), None, 0.1)
    row = answer.table.set_index("update").loc["kronecker"]
    k = int((runs[runs["update"] == "kronecker"]["outcome"] == "diverged").sum())
    n = int((runs["update"] == "kronecker").sum())
    assert (row["n_diverged"], row["n_ran"]) == (k, n)
    ci = st.binomtest(k, n).proportion_ci(method="exact")
    assert (row["div_lo"], row["div_hi"]) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_best_vs_best_is_paired_on_held_out_seeds_with_divergence_as_failure_and_holm():
    from statsmodels.stats.multitest import multipletests

    from slnn.report.compare import tests_table
    from slnn.report.inference import paired_test
    from slnn.report.stats import summary_table

    runs = runs_frame({"input": 0.1, "kronecker": 0.5}, seeds=12,
                      diverge=lambda r, a, lr, s: r == "kronecker" and s == 11)
    summary = summary_table(runs)
    family = tests_table(runs, summary)
    answer, tests = build(runs, family, None, 0.1)
    bb = tests[tests["family"] == "best_vs_best"]
    assert len(bb) == 1
    score = {}
    for r in RULES:
        c = pd.concat([_by_hand(runs, r, range(6), range(6, 12)),
                       _by_hand(runs, r, range(6, 12), range(6))]).sort_values("seed")
        score[r] = np.where(c["outcome"] == "diverged", 1.0, c["test_error"])
    assert len(score["input"]) == 12  # every seed, the diverged seed 11 kept as a failure
    expect = paired_test(score["input"], score["kronecker"])  # the reference rule is a
    assert bb["p"].iloc[0] == pytest.approx(expect.p, rel=1e-12)
    assert expect.p == pytest.approx(2 / 2 ** 12)  # every seed one way: exact
    ok = np.isfinite(tests["p"].to_numpy(float))
    holm = multipletests(tests["p"].to_numpy(float)[ok], method="holm")[1]
    assert tests["p_holm"].to_numpy(float)[ok] == pytest.approx(holm, rel=1e-12)


@pytest.mark.parametrize("case", ["two_rules", "many_rules", "cannot_run", "one_rule"])
def test_the_answer_is_at_most_60_words_and_says_only_what_its_tests_say(case):
    if case == "two_rules":
        runs = runs_frame({"input": 0.1, "kronecker": 0.5}, datas=("blobs", "iris", "iris_petal"),
                          seeds=20,
                          diverge=lambda r, a, lr, s: r == "kronecker" and s % 4 == 0)
    elif case == "many_rules":
        rules = ["input", "kronecker", "no_derivative", "ascent", "outer_transposed",
                 "sum_not_mean", "sigmoid_shortcut", "no_bias"]
        runs = runs_frame({r: 0.1 + 0.08 * i for i, r in enumerate(rules)})
    elif case == "cannot_run":
        runs = runs_frame({"input": 0.1, "kronecker": 0.5}, datas=("iris", "iris_petal"))
        runs.loc[(runs["data"] == "iris") & (runs["update"] == "kronecker"),
                 ["outcome", "test_error", "val_error"]] = ["shape_mismatch", np.nan, np.nan]
    else:
        runs = runs_frame({"input": 0.1})
    from slnn.report.compare import tests_table
    from slnn.report.stats import summary_table

    answer, tests = build(runs, tests_table(runs, summary_table(runs)), None, 0.1)
    text = " ".join(answer.sentences)
    assert 0 < len(text.split()) <= MAX_WORDS, text
    shown = display(answer)
    assert len(shown) == answer.table.shape[0]
    if case == "two_rules":
        assert "`input` ends with a lower test error than `kronecker`" in text, text
        assert "diverges in" in text
    if case == "cannot_run":
        assert "`kronecker` cannot run on iris" in text
    bb = tests[tests["family"] == "best_vs_best"]
    if not bb["significant"].any():
        assert "lower test error" not in text and "worse than" not in text


def test_the_verdicts_best_cell_sentence_is_the_answers_cross_fitted_test():
    """The appendix quotes the best-vs-best test: its cells and means are the answer table's,
    not those of a cell chosen on every seed (a re-analysis found the two mixed)."""
    from slnn.report import analyse

    def level(act, lr, seed):  # the all-seeds choice and the cross-fitted one differ
        return {("sigmoid", 0.1): 0.05 if seed < 5 else 0.5, ("tanh", 1.0): 0.5 if seed < 5
                else 0.06}.get((act, lr), 0.2)

    runs = runs_frame({"input": level, "kronecker": 0.6}, seeds=10)
    a = analyse(runs)
    line = [v for v in a.verdict if "cross-fitted best cell" in v][0]
    t = a.answer.table.set_index("update")
    for rule in RULES:
        assert f"{t.loc[rule, 'test_error']:.3f}" in line, (rule, line)
    assert "input (sigmoid, lr 0.1 / tanh, lr 1)" in line
