"""The report's statistical sections as blocks (``("h2", title)``, ``("p", text)``,
``("table", frame)``, ...) that ``slnn.report.render`` writes as Markdown and HTML: why the
guide's rule is not the gradient (with the identity checked on logged runs), the head-to-head
tests, the summary tables per data set, and how the statistics are made."""

from __future__ import annotations

import numpy as np
import pandas as pd

from slnn.core.outcomes import Outcome
from slnn.report.inference import ALPHA, MIN_INTERVAL, RESAMPLES, TEST_NAME
from slnn.report.verdict import NEAR, fmt, fmt_p, interval

Block = tuple[str, object]


def _ci(lo: float, hi: float, digits: int = 3) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _num(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else "n/a"


def summary_display(summary: pd.DataFrame, learn: pd.DataFrame | None = None) -> pd.DataFrame:
    """The summary as people read it, one row per cell in (data, rule, activation, lr) order."""
    if summary.empty:
        return pd.DataFrame()
    s = summary if learn is None else summary.join(learn)
    counts = [c for c in s.columns if c.startswith("n_") and c not in
              ("n_runs", "n_seeds", "n_ran", "n_diverged")]
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
            "test error 95% CI": (_ci(r["test_error_lo"], r["test_error_hi"])
                                  if r["n_seeds"] >= MIN_INTERVAL else
                                  f"n/a ({int(r['n_seeds'])} seed{'s' * (r['n_seeds'] != 1)})"),
            "epoch 0": _num(r["initial_test_error_mean"]),
            "chance": _num(r["chance_error"]),
            **({"learns?": r["learns"]} if "learns" in s else {}),
            "divergence": (f"{int(r['n_diverged'])}/{int(r['n_ran'])} "
                         f"{_ci(r['div_lo'], r['div_hi'])}" if r["n_ran"] else "n/a (none ran)"),
            "epochs run": (f"{_num(r['epochs_mean'], 1)} {_ci(r['epochs_lo'], r['epochs_hi'], 1)}"
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
        rows.append({"data": r["data"], "cell": cell, "a": r["a"], "b": r["b"],
                     "seeds": int(r["n"]), "mean a": fmt(r["mean_a"]), "mean b": fmt(r["mean_b"]),
                     "a - b": fmt(r["diff"]),
                     "95% CI": interval(r["diff_lo"], r["diff_hi"]) if r["n"] else "n/a",
                     "p": fmt_p(r["p"]), "Holm p": fmt_p(r["p_holm"]),
                     "significant": "yes" if r["significant"] else "no",
                     "test": r["method"] or r["note"]})
    return pd.DataFrame(rows)


def identity_blocks(identity: pd.DataFrame | None) -> list[Block]:
    from slnn.report.identity import RULE, WHY

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
                        f"samples: {worst:.1e} (rounding)."))
    show = identity.assign(lr=identity["lr"].map(lambda v: f"{v:g}"),
                           cos_mean=identity["cos_mean"].map(lambda v: f"{v:.3f}"),
                           max_abs_diff=identity["max_abs_diff"].map(lambda v: f"{v:.1e}"))
    show = show.rename(columns={"cos_mean": "mean cos(step, descent) at epoch 0",
                                "max_abs_diff": "max |cos(K, G) - cos(z, x)|"})
    return blocks + [("table", show.drop(columns="run_id"))]


def stats_note(n_tests: int) -> list[str]:
    return [
        f"Paired tests: {TEST_NAME}, on the final test errors of the runs that trained without "
        "diverging, paired by seed (a seed fixes the split and the initial weights, the same for "
        "every rule). It uses scipy's exact null distribution without ties, every sign flip "
        "with ties up to 13 pairs, else the normal approximation (the `test` column says "
        "which). A cell whose differences are all zero has no test and says so. "
        f"Holm's step-down correction runs over all {n_tests} tests of this report at once "
        f"(head-to-head per cell, does-it-learn per cell, best cell against best cell); "
        f"`tests.csv` has each raw and adjusted p. \"Significant\" means Holm p < {ALPHA:g}.",
        "Does it learn: per cell, the final test error against the same runs' test error at "
        "epoch 0, tested the same way. \"Stays near chance level\": not significant, and the "
        "95% interval of the mean final test error covers the chance level (the test split's "
        "majority-class error, 1 - largest class share, mean over the cell's seeds); with no "
        f"interval, the mean within {NEAR:g} of it.",
        f"Intervals: 95% percentile bootstrap over seeds ({RESAMPLES} resamples, fixed seed; "
        f"none with fewer than {MIN_INTERVAL} seeds) for mean errors, mean epochs and mean "
        "paired differences, so each lies within the values' own range ([0, 1] for errors, "
        "[1, epochs] for epochs); the divergence rate's is the exact Clopper-Pearson interval. "
        "The figures' bands are 95% t-intervals over seeds, a picture of the spread.",
        "Errors and best cells: a diverged run (non-finite weights, or a training loss above "
        "train.divergence_loss) counts in the divergence rate, not in any error figure. Each "
        "rule's best cell per data set (**best**) has the lowest mean validation error among "
        "its cells where no run diverged (if it has none, where at least half did not): a cell "
        "whose seeds partly diverged averages only its survivors, which started from kinder "
        "splits and weights. Never chosen on the test error.",
    ]


def analysis_sections(sweep, analysis) -> list[Block]:
    from slnn.report.rulecheck import rulecheck_blocks

    blocks: list[Block] = identity_blocks(analysis.identity)
    blocks += rulecheck_blocks(getattr(analysis, "rule_checks", None), analysis.summary,
                               analysis.learn, analysis.tests)
    shown = tests_display(analysis.tests) if len(analysis.tests) else pd.DataFrame()
    if not shown.empty:
        blocks += [("h2", "Head-to-head"),
                   ("p", "Per (activation, lr) cell, rule a against rule b over the seeds where "
                         "both trained without diverging, then each rule's best cell (by "
                         "validation error) against the other's; a - b is the mean paired "
                         "difference of final test error (negative: a lower)."),
                   ("table", shown)]
    table = summary_display(analysis.summary, analysis.learn)
    blocks.append(("h2", "Summary"))
    if table.empty:
        blocks.append(("p", "(no rows)"))
    for data in table["data"].unique() if not table.empty else []:
        blocks += [("h3", data), ("table", table[table["data"] == data].drop(columns="data"))]
    n_tests = int(np.isfinite(analysis.tests["p"]).sum()) if len(analysis.tests) else 0
    blocks += [("h2", "Statistics")] + [("p", t) for t in stats_note(n_tests)]
    return blocks
