"""A short verdict written from the numbers: which rule wins where, by how much, which cannot run.

Nothing here names a rule: whatever rules the sweep ran are ranked by their final test errors.
The sentences are built from the runs frame and the summary table (``slnn.report.stats``).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from scipy import stats as st

from slnn.core.outcomes import Outcome
from slnn.report.stats import outcome_order

TIE = 1e-12
SHAPES = re.compile(r"step of shape (\([^)]*\)) but W has shape (\([^)]*\))")


def _e(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.3f}"


def _cell(activation: str, lr: float) -> str:
    return f"{activation}, lr {lr:g}"


def mismatch_reason(reasons: pd.Series) -> str:
    """The shapes that did not fit, e.g. ``(3, 3) step vs (5, 3) W``, else the commonest reason."""
    m = reasons.str.extract(SHAPES).dropna()
    if len(m):
        top = (m[0] + " step vs " + m[1] + " W").value_counts()
        return "; ".join(top.index[:2])
    r = reasons[reasons != ""].value_counts()
    return r.index[0][:120] if len(r) else "no reason recorded"


def _pvalue(test, a, b, **kw) -> float:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # nearly equal samples: scipy warns, p is still usable
        return float(test(a, b, **kw).pvalue)


def _rule_line(data: str, rule: str, runs: pd.DataFrame, summary: pd.DataFrame) -> str:
    ok = runs[np.isfinite(runs["test_error"])]
    final = ok["test_error"].mean()
    init = ok["initial_test_error"]
    paired = ok[np.isfinite(init)]
    learn = ""
    if len(paired):  # does the rule learn at all: its final test error against its epoch-0 one
        i, f = paired["initial_test_error"].mean(), paired["test_error"].mean()
        p = _pvalue(st.ttest_rel, paired["initial_test_error"], paired["test_error"]) \
            if len(paired) > 1 else np.nan
        ptxt = f" (paired t-test p = {p:.2g})" if np.isfinite(p) else " (one run, no test)"
        if np.isfinite(p) and p >= 0.05:
            learn = (f"; its test error does not change significantly: {_e(i)} at epoch 0, "
                     f"{_e(f)} at the end{ptxt}")
        elif f < i:
            learn = f"; it lowers the test error from {_e(i)} at epoch 0 to {_e(f)}{ptxt}"
        else:
            learn = f"; its test error rises from {_e(i)} at epoch 0 to {_e(f)}{ptxt}"
    best = summary.loc[summary["test_error_mean"].idxmin()]
    ci = (f"[{_e(best['test_error_lo'])}, {_e(best['test_error_hi'])}]" if best["n_seeds"] > 1
          else "(1 seed, no interval)")
    return (f"on {data}, `{rule}` reaches a mean final test error of {_e(final)} over {len(ok)} "
            f"runs (best cell {_cell(best['activation'], best['lr'])}: "
            f"{_e(best['test_error_mean'])} {ci}, n = {int(best['n_seeds'])}){learn}.")


def _significant(a: np.ndarray, b: np.ndarray) -> bool:
    """Is ``a``'s mean below ``b``'s at 5% (Welch's t-test)? Seeds that agree exactly count."""
    if len(a) < 2 or len(b) < 2 or not a.mean() < b.mean():
        return False
    if a.std() == 0 and b.std() == 0:
        return True  # no spread at all: the gap is real
    p = _pvalue(st.ttest_ind, a, b, equal_var=False)
    return bool(np.isfinite(p) and p < 0.05)


def _head_to_head(data: str, rules: list[str], runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """The rule with the lowest mean over the (activation, lr) cells every rule ran, against
    each other rule: in how many cells it is lower, how many of those are significant, by how
    much, and where it loses."""
    means = summary.pivot_table(index=["activation", "lr"], columns="update",
                                values="test_error_mean")[rules]
    common = means.dropna()
    if common.empty:
        return [f"on {data} no (activation, lr) cell has finished runs of every rule "
                f"({', '.join(f'`{r}`' for r in rules)}): no head-to-head comparison."]
    errors = {k: g[np.isfinite(g)].to_numpy() for k, g in
              runs.groupby(["update", "activation", "lr"])["test_error"]}
    order = common.mean().sort_values()
    win, n = order.index[0], len(common)
    out = []
    for other in order.index[1:]:
        diff = common[other] - common[win]
        better, worse = int((diff > TIE).sum()), int((diff < -TIE).sum())
        if better == 0 and worse == 0:
            out.append(f"on {data} `{win}` and `{other}` end with the same mean test error in all "
                       f"{n} (activation, lr) cells they share.")
            continue
        sig = sum(_significant(errors[(win, act, lr)], errors[(other, act, lr)])
                  for act, lr in diff.index)
        by = (f"{_e(diff.mean())} on average (from {_e(diff.min())} to {_e(diff.max())})"
              if n > 1 else _e(diff.iloc[0]))
        head = (f"on {data} `{win}` beats `{other}`: a lower" if better > worse else
                f"on {data} neither `{win}` nor `{other}` wins throughout: `{win}` has the lower "
                "average, and a lower")
        text = (f"{head} mean final test error in {better} of {n} (activation, lr) cells ({sig} "
                f"significant at 5% by Welch's t-test, uncorrected), by {by}")
        if worse:
            cells = diff[diff < -TIE].sort_values().index[:3]
            text += (f"; `{other}` is better in {worse} cell(s): "
                     + "; ".join(_cell(a, lr) for a, lr in cells))
        out.append(text + ".")
    return out


def _trouble(data: str, rule: str, runs: pd.DataFrame) -> list[str]:
    out = []
    n = len(runs)
    for kind in (Outcome.DIVERGED, Outcome.FAILED, Outcome.KILLED):
        bad = runs[runs["outcome"] == kind]
        if len(bad):
            where = bad.groupby(["activation", "lr"]).size().sort_values(ascending=False)
            top = "; ".join(f"{_cell(a, lr)}: {k}" for (a, lr), k in where.iloc[:3].items())
            out.append(f"on {data}, `{rule}` {kind} in {len(bad)} of {n} runs (most in {top}).")
    return out


def verdict(runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Sentences, per data set: rules that could not run, each rule's result, the head-to-head,
    divergences and failures."""
    done = runs[runs["outcome"] != Outcome.RUNNING]
    lines: list[str] = []
    for data in sorted(done["data"].unique()):
        d = done[done["data"] == data]
        sd = summary[summary["data"] == data]
        usable, per_rule = [], []
        for rule in sorted(d["update"].unique()):
            r = d[d["update"] == rule]
            sm = r[r["outcome"] == Outcome.SHAPE_MISMATCH]
            if len(sm) == len(r):
                per_rule.append(f"on {data}, `{rule}` could not run: {len(r)} of {len(r)} runs "
                                f"shape_mismatch ({mismatch_reason(sm['reason'])}).")
                continue
            if len(sm):
                per_rule.append(f"on {data}, {len(sm)} of {len(r)} `{rule}` runs shape_mismatch "
                                f"({mismatch_reason(sm['reason'])}).")
            if np.isfinite(r["test_error"]).any():
                usable.append(rule)
                per_rule.append(_rule_line(data, rule, r, sd[sd["update"] == rule]))
            else:
                c = r["outcome"].value_counts()
                kinds = ", ".join(f"{c[o]} {o}" for o in outcome_order(c.index))
                per_rule.append(f"on {data}, no `{rule}` run has a final test error ({kinds}).")
            per_rule += _trouble(data, rule, r)
        # the comparison first: it is the question the report answers
        lines += (_head_to_head(data, usable, d, sd) if len(usable) > 1 else []) + per_rule
    return lines
