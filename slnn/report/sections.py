"""The report's statistical sections as blocks (``("h2", title)``, ``("p", text)``,
``("table", frame)``, ...) that ``slnn.report.render`` writes as Markdown and HTML: why the
guide's rule is not the gradient (with the identity checked on logged runs), the head-to-head
tests, the summary tables per data set, and how the statistics are made."""

from __future__ import annotations

import numpy as np
import pandas as pd

from slnn.core.outcomes import RAN as RAN_OUTCOMES, Outcome
from slnn.report.inference import ALPHA, EXACT_MAX, MIN_INTERVAL, TEST_NAME, smallest_p
from slnn.report.verdict import NEAR, fmt, fmt_p

Block = tuple[str, object]


def _ci(lo: float, hi: float, digits: int = 3) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _ci_or_why(lo: float, hi: float, n: int, digits: int = 3) -> str:
    """An interval, or why there is none: too few values, or all of them equal. An end that
    excludes 0 but rounds to it is shown open, "(0, 0.039]", so that it reads as excluding 0
    (a Hodges-Lehmann interval excludes 0 exactly when its test's p < 0.05)."""
    if np.isfinite(lo) and np.isfinite(hi):
        if 0 < lo and round(lo, digits) == 0:
            return f"(0, {hi:.{digits}f}]"
        if hi < 0 and round(hi, digits) == 0:
            return f"[{lo:.{digits}f}, 0)"
        return _ci(lo, hi, digits)
    return f"n/a ({n} seed{'s' * (n != 1)})" if n < MIN_INTERVAL else f"n/a (all {n} equal)"


def _num(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else "n/a"


def summary_display(summary: pd.DataFrame, learn: pd.DataFrame | None = None) -> pd.DataFrame:
    """The summary as people read it, one row per cell in (data, rule, activation, lr) order."""
    if summary.empty:
        return pd.DataFrame()
    s = summary if learn is None else summary.join(learn)
    counts = [c for c in s.columns if c.startswith("n_") and c not in
              ("n_runs", "n_seeds", "n_ran", "n_seeds_ran", "n_diverged")]
    rows = []
    for _, r in s.iterrows():
        outcomes = {c[2:]: int(r[c]) for c in counts if r[c] > 0}
        if r["n_diverged"]:
            outcomes[str(Outcome.DIVERGED)] = int(r["n_diverged"])
        rows.append({
            "data": r["data"], "rule": r["update"], "activation": r["activation"],
            "lr": f"{r['lr']:g}", "best": "**best**" if r["best"] else "",
            "runs": int(r["n_runs"]), "trained": int(r["n_seeds"]),
            "val error": _num(r["val_error_mean"]),
            "test error": _num(r["test_error_mean"]),
            "test error 95% CI": _ci_or_why(r["test_error_lo"], r["test_error_hi"],
                                            int(r["n_seeds"])),
            "epoch 0": _num(r["initial_test_error_mean"]),
            "chance": _num(r["chance_error"]),
            **({"learns?": r["learns"]} if "learns" in s else {}),
            "divergence": (f"{int(r['n_diverged'])}/{int(r['n_ran'])} "
                         f"{_ci(r['div_lo'], r['div_hi'])}" if r["n_ran"] else "n/a (none ran)"),
            "epochs run": (f"{_num(r['epochs_mean'], 1)} "
                           f"{_ci_or_why(r['epochs_lo'], r['epochs_hi'], int(r['n_seeds_ran']), 1)}"
                           if r["n_ran"] else "n/a"),
            "outcomes": ", ".join(f"{n} {o}" for o, n in outcomes.items()),
        })
    return pd.DataFrame(rows)


def tests_display(tests: pd.DataFrame) -> pd.DataFrame:
    """The head-to-head and best-vs-best tests as people read them."""
    t = tests[tests["family"] != "learning"]
    rows = []
    for _, r in t.iterrows():
        cell = (f"{r['activation']}, lr {r['lr']:g}" if r["family"] == "head_to_head"
                else "best vs best")
        rows.append({"data": r["data"], "a_rule": r["update_a"], "b_rule": r["update_b"],
                     "cell": cell, "a": r["a"], "b": r["b"],
                     "seeds": int(r["n"]), "mean a": fmt(r["mean_a"]), "mean b": fmt(r["mean_b"]),
                     "a - b": fmt(r["hl"]),  # Hodges-Lehmann: the interval inverts the test
                     "95% CI": (_ci_or_why(r["hl_lo"], r["hl_hi"], int(r["n"]))
                                if r["n"] else "n/a"),
                     "p": fmt_p(r["p"]), "Holm p": fmt_p(r["p_holm"]),
                     "significant": "yes" if r["significant"] else "no",
                     "test": (f"{r['method']}, {int(r['n_nonzero'])} of {int(r['n'])} differ"
                              if r["method"] and r["n_nonzero"] < r["n"]
                              else r["method"] or r["note"])})
    return pd.DataFrame(rows)


def identity_blocks(identity: pd.DataFrame | None) -> list[Block]:
    from slnn.report.step_cosine import RULE, WHY, residue

    if identity is None:
        return []
    blocks: list[Block] = [("h2", "Why the guide's rule is not the gradient")]
    blocks += [("p", w) for w in WHY]
    if identity.empty:
        return blocks + [("p", f"No logged `{RULE}` run that trained has initial weights and a "
                               "config.yaml that rebuilds its data set, so the identity could "
                               "not be checked on this sweep.")]
    worst = identity["max_abs_diff"].max()
    blocks.append(("p", f"Checked on {len(identity)} logged `{RULE}` runs: each run's data set "
                        "rebuilt from its `config.yaml`, its `weights/initial.npy` loaded, and "
                        "for every training sample the cosine between the guide's step and the "
                        "gradient step (both from `slnn.core.rules`) compared with cos(z, x). "
                        f"Largest absolute difference over {int(identity['samples'].sum())} "
                        f"samples: {residue(worst)}."))
    show = identity.assign(lr=identity["lr"].map(lambda v: f"{v:g}"),
                           cos_mean=identity["cos_mean"].map(lambda v: f"{v:.3f}"),
                           max_abs_diff=identity["max_abs_diff"].map(lambda v: residue(v, "")))
    show = show.rename(columns={"cos_mean": "mean cos(step, descent) at epoch 0",
                                "max_abs_diff": "max |cos(K, G) - cos(z, x)|"})
    return blocks + [("table", show.drop(columns="run_id"))]


def split_words(runs: pd.DataFrame | None) -> str:
    """What a seed fixes in these runs: the split too only where ``data.seed`` is null."""
    seeds = set() if runs is None or "data_seed" not in runs else set(
        runs["data_seed"].dropna().astype(str))
    drawn = runs is not None and "data" in runs and (runs["data"] == "blobs").any()
    what = "the data set (blobs) and its split" if drawn else "the split"
    if seeds and seeds <= {"None", "null"}:
        return (f"a seed fixes {what}, the initial weights and the order of the samples, the "
                "same for every rule")
    if seeds and not seeds & {"None", "null"}:
        fixed = ", ".join(sorted(seeds))
        return ("a seed fixes the initial weights and the order of the samples, the same for "
                f"every rule; {what} {'are' if drawn else 'is'} not drawn per seed but fixed by "
                f"data.seed ({fixed}), so the tests say nothing about other "
                f"{'data sets and splits' if drawn else 'splits'}")
    return ("a seed fixes the initial weights and the order of the samples, the same for every "
            f"rule, and {what} where data.seed is null")


def power_words(tests: pd.DataFrame) -> str:
    """How many tests could never reach significance: too few seeds whose difference is not 0."""
    t = tests[np.isfinite(tests["p"])] if len(tests) else tests
    if not len(t):
        return ""
    weak = int((t["n_nonzero"].map(smallest_p) >= ALPHA).sum())
    if not weak:
        return ""
    return (f" In {weak} of the {len(t)} tests at most 5 seeds differ, so even before Holm's "
            f"correction p could not go below {ALPHA:g}: there \"not significant\" means too few "
            "seeds to tell, not evidence of no difference.")


def stats_note(n_tests: int, runs: pd.DataFrame | None = None,
               tests: pd.DataFrame | None = None) -> list[str]:
    return [
        f"Paired tests: {TEST_NAME}, paired by seed ({split_words(runs)}). Per cell, the final "
        "test errors of the seeds where both rules trained without diverging; best cell "
        "against best cell, every seed where both ran, a diverged run scoring an error of 1. "
        f"Zero differences are dropped first; with at most {EXACT_MAX} left, p is exact over "
        "every sign flip of them (ties given mid-ranks), counted by a dynamic program; with "
        "more, the normal approximation (the `test` column says which). With k seeds that "
        "differ, the smallest p is 2 / 2^k (0.0625 with 5, 0.031 with 6). A comparison whose "
        "differences are all zero has no test and says so. Beside p, the Hodges-Lehmann "
        "estimate of the paired difference (the median of the Walsh averages) and its 95% "
        "interval, the shifts the same test does not reject: it excludes 0 exactly when p < "
        f"{ALPHA:g}. Holm's step-down correction runs over all {n_tests} tests of this report "
        "at once (head-to-head per cell, does-it-learn per cell, best cell against best cell); "
        f"`tests.csv` has each raw and adjusted p. \"Significant\" means Holm p < {ALPHA:g}."
        + (power_words(tests) if tests is not None else ""),
        "Does it learn: per cell, the final test error against the same runs' test error at "
        "epoch 0, tested the same way. \"Stays near chance level\": not significant, and the "
        "95% interval of the mean final test error covers the chance level (the test error "
        "of always answering the training split's majority class, mean over the cell's "
        f"seeds); with no interval, the mean within {NEAR:g} of it. \"Above chance level\": "
        f"the interval (or, with none, the mean less {NEAR:g}) lies above it: worse than "
        "always answering the commonest class.",
        "Intervals: a cell's mean error over seeds gets a score (Wilson-type) interval whose "
        "width comes from the seeds' own spread, always inside [0, 1] (simulated coverage "
        f"93-96% at 10 and 20 seeds; none with fewer than {MIN_INTERVAL} seeds, nor when every "
        "seed gave the same value); mean epochs a Student t interval clipped to [0, epochs]; a "
        "divergence rate the exact Clopper-Pearson interval; the probability of improvement "
        "and the interquartile mean a stratified percentile bootstrap (2000 resamples of the "
        "runs within each cell); the median epochs to target the Kaplan-Meier curve's log-log "
        "band. The figures' bands are 95% t intervals over the runs at each epoch, a picture "
        "of the spread.",
        "Errors and best cells: in the per-cell tables a diverged run (non-finite weights, or a "
        "training loss above train.divergence_loss) counts in the divergence rate, not in any "
        "error figure; in the answer, the best-vs-best tests, the probability of improvement, "
        "the interquartile mean and the performance profile it counts as a failure. A rule's "
        "best cell (**best** in the tables) has the lowest mean validation error over its "
        "seeds, a diverged run scoring 1, ties going to the lower validation loss; never chosen "
        "on the test error. The answer cross-fits that choice: each half of the seeds is "
        "reported at the cell the other half chose, so no reported error comes from a cell its "
        "own seed helped choose.",
    ]


def analysis_sections(sweep, analysis) -> list[Block]:
    """The sections between the answer and the figures: why the guide's rule is not the
    gradient, the rules' checker verdicts, how the statistics are made."""
    from slnn.report.rulecheck import rulecheck_blocks

    blocks: list[Block] = identity_blocks(analysis.identity)
    blocks += rulecheck_blocks(getattr(analysis, "rule_checks", None), analysis.summary,
                               analysis.learn, analysis.tests)
    n_tests = int(np.isfinite(analysis.tests["p"]).sum()) if len(analysis.tests) else 0
    runs = getattr(sweep, "runs", None)
    blocks += [("h2", "Statistics")] + [("p", t) for t in stats_note(n_tests, runs,
                                                                     analysis.tests)]
    return blocks


def appendix_sections(analysis) -> list[Block]:
    """The per-cell detail, after the figures: the verdict's sentences, every paired test and
    the summary, grouped by data set (and, for the tests, by the pair of rules), each table
    sorted by activation and learning rate."""
    blocks: list[Block] = [("h2", "Appendix: verdict per data set"),
                           ("ul", analysis.verdict or ["no run has ended yet."])]
    shown = tests_display(analysis.tests) if len(analysis.tests) else pd.DataFrame()
    if not shown.empty:
        blocks += [("h2", "Appendix: head-to-head per cell"),
                   ("p", "Per (activation, lr) cell, rule a against rule b over the seeds where "
                         "both trained without diverging (a diverged run has no final error to "
                         "pair; the answer's table and its probability of improvement count it "
                         "as a failure), then each rule at its best cell against the reference "
                         "rule at its own, a diverged run scoring 1. a - b is the Hodges-Lehmann "
                         "estimate of the paired difference of final test error (negative: a "
                         "lower); its interval inverts the same test, so it excludes 0 exactly "
                         "when p < 0.05.")]
        for (data, a, b), g in shown.groupby(["data", "a_rule", "b_rule"], sort=True):
            blocks += [("h3", f"{data}: `{a}` against `{b}`"),
                       ("table", g.drop(columns=["data", "a_rule", "b_rule"]))]
    table = summary_display(analysis.summary, analysis.learn)
    blocks.append(("h2", "Appendix: summary per cell"))
    if table.empty:
        blocks.append(("p", "(no rows)"))
    for data in table["data"].unique() if not table.empty else []:
        d = table[table["data"] == data]
        for rule in d["rule"].unique():
            blocks += [("h3", f"{data}: `{rule}`"),
                       ("table", d[d["rule"] == rule].drop(columns=["data", "rule"]))]
    return blocks


def time_to_target_blocks(answer, figs) -> list[Block]:
    """How fast each rule's best cell reaches the target: the Kaplan-Meier figure, the medians
    and the log-rank tests against the reference rule."""
    blocks: list[Block] = [("h2", "Time to target")]
    blocks.append(("p", f"Epochs until a run's validation error first reaches "
                        f"{answer.target:g} (`--target-error`), for each rule at its best cell "
                        f"({answer.split.words()}). A run that never reaches it, "
                        "diverged runs included, is censored at the epoch budget instead of being "
                        "dropped (a run that stopped never gets there later), so a rule that "
                        "rarely gets there cannot look fast."))
    blocks += [("fig", f) for f in figs]
    t = answer.table
    if len(t):
        rows = []
        for r in t.itertuples():
            if not r.n_report:
                continue
            med = ("not reached" if not np.isfinite(r.median) else f"{r.median:.0f}")
            lo = f"{r.median_lo:.0f}" if np.isfinite(r.median_lo) else "n/a"
            hi = f"{r.median_hi:.0f}" if np.isfinite(r.median_hi) else "not reached"
            rows.append({"data": r.data, "rule": f"`{r.update}`",
                         "best cell": r.activation,
                         "runs": int(r.n_report), "reached": int(r.n_reached),
                         "median epochs": med,
                         "95% CI": f"[{lo}, {hi}]" if np.isfinite(r.median) else "n/a"})
        if rows:
            blocks.append(("table", pd.DataFrame(rows)))
    lr = answer.logrank
    if lr is not None and len(lr):
        shown = lr.assign(p=lr["p"].map(fmt_p), statistic=lr["statistic"].map(
            lambda v: f"{v:.2f}" if np.isfinite(v) else "n/a"))
        blocks += [("p", "Log-rank tests of each rule's curve against the reference rule's "
                         "(scipy.stats.logrank, two-sided); descriptive, not in the report's "
                         "Holm family."), ("table", shown)]
    return blocks


def every_run_blocks(answer, runs: pd.DataFrame, figs) -> list[Block]:
    """Every run counted, a diverged one as a failure: per data set and rule, the interquartile
    mean of the test error and the probability of improvement over the reference rule, each with
    a stratified bootstrap interval, and the performance profile."""
    from slnn.report.aggregate import iqm_interval

    rows = []
    for data in sorted(runs["data"].unique()):
        d = runs[runs["data"] == data]
        t = answer.table[answer.table["data"] == data].set_index("update")
        for rule in sorted(d["update"].unique()):
            est, lo, hi = iqm_interval(d, rule)
            if not np.isfinite(est):
                continue
            r = t.loc[rule] if rule in t.index else None
            poi = ("(reference)" if rule == answer.reference else "n/a" if r is None
                   or not np.isfinite(r["poi"]) else
                   f"{r['poi']:.2f} [{r['poi_lo']:.2f}, {r['poi_hi']:.2f}] over "
                   f"{int(r['poi_cells'])} cells")
            rows.append({"data": data, "rule": f"`{rule}`",
                         "runs": int(d[(d["update"] == rule) & d["outcome"].isin(
                             RAN_OUTCOMES)].shape[0]),
                         "IQM of test error [95% CI]": f"{est:.3f} [{lo:.3f}, {hi:.3f}]",
                         f"P(better than `{answer.reference}`) [95% CI]": poi})
    if not rows:
        return []
    return ([("h2", "Every run counted"),
             ("p", "Over every run that ran in every (activation, lr) cell, no cell chosen, a "
                   "diverged run counted as a failure: the interquartile mean (IQM) of the test "
                   "error (a diverged run scoring 1; the mean of the middle half of the runs, "
                   "robust to a few outliers), the probability that a run of the rule ends below "
                   f"a run of `{answer.reference}` in the same cell (0.5: a tie), both with "
                   "stratified bootstrap intervals (2000 resamples within each cell), and the "
                   "performance profile (Agarwal et al. 2021)."),
             ("table", pd.DataFrame(rows))] + [("fig", f) for f in figs])
