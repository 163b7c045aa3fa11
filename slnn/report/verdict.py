"""The report's words, written from its numbers: the verdict per data set, and per cell whether
a rule learns (the answer's own words are ``slnn.report.answer``'s).

Nothing here names a rule: whatever rules the sweep ran are compared. Every claim is as strong as
its test and no stronger: "significantly" only where Holm's adjusted p (over every test of the
report, ``slnn.report.compare``) is below 0.05, counts where a claim holds in some cells only.
Numbers are printed with ``fmt`` so that the headline's equal the tables'.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from slnn.core.outcomes import RAN, Outcome
from slnn.report.inference import ALPHA, no_interval, smallest_p
from slnn.report.stats import chance_by_data

TIE = 1e-12
NEAR = 0.05  # with no interval: "near chance" means within this of the chance level
_NOT_RAN = {str(o) for o in Outcome} - {str(o) for o in RAN}
SHAPES = re.compile(r"step of shape (\([^)]*\)) but W has shape (\([^)]*\))")

# the words of a cell's learning verdict, keyed by kind (the tables' "learns?" column)
LOWERS, RAISES, FLAT, CHANCE, ABOVE, NONE, DIVERGED = (
    "lowers the error significantly", "raises the error significantly",
    "no significant change", "no significant change; stays near chance level",
    "no significant change; above chance level", "could not run", "every run that ran diverged")


def fmt(x: float) -> str:
    """An error rate or a difference as the report prints it: 3 decimals, n/a when unknown."""
    return "n/a" if not np.isfinite(x) else f"{round(float(x), 3) + 0.0:.3f}"  # never -0.000


def fmt_p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


def mismatch_reason(reasons: pd.Series) -> str:
    """The shapes that did not fit, e.g. ``(3, 3) step vs (5, 3) W``, else the commonest reason."""
    m = reasons.str.extract(SHAPES).dropna()
    if len(m):
        top = (m[0] + " step vs " + m[1] + " W").value_counts()
        return "; ".join(top.index[:2])
    r = reasons[reasons != ""].value_counts()
    return r.index[0][:120] if len(r) else "no reason recorded"


def above_chance(mean: float, lo: float, hi: float, chance: float) -> bool:
    """Worse than always answering the commonest class: the 95% interval of the mean final test
    error lies above the chance level; with no interval, the mean is more than ``NEAR`` above."""
    if not (np.isfinite(mean) and np.isfinite(chance)):
        return False
    if np.isfinite(lo) and np.isfinite(hi):
        return lo > chance
    return mean - chance > NEAR


def _too_few(t) -> str:
    """'; with 3 seeds that differ p cannot go below 0.25' where no result could be significant."""
    floor = smallest_p(int(t["n_nonzero"]))
    if floor < ALPHA:
        return ""
    k = int(t["n_nonzero"])
    return (f"; with {k} seed{'s' * (k != 1)} that differ{'s' * (k == 1)} p cannot go below "
            f"{fmt_p(floor)}")


def _diverged_words(r) -> str:
    """Every run that ran diverged, saying so of the others when some did not run."""
    n_runs, n_ran = int(r["n_runs"]), int(r["n_ran"])
    if n_ran == n_runs:
        return f"every run diverged ({n_ran} of {n_runs})"
    others = ", ".join(f"{int(r[c])} {c[2:]}" for c in r.index
                       if c.startswith("n_") and c[2:] in _NOT_RAN and r[c] > 0)
    return f"every run that ran diverged ({n_ran} of {n_runs} ran; {others})"


def near_chance(mean: float, lo: float, hi: float, chance: float) -> bool:
    """The rule for "stays near chance level": the 95% interval of the mean final test error
    covers the chance level; with no interval, the mean is within ``NEAR`` of it."""
    if not (np.isfinite(mean) and np.isfinite(chance)):
        return False
    if np.isfinite(lo) and np.isfinite(hi):
        return lo <= chance <= hi
    return abs(mean - chance) <= NEAR


def learning_verdicts(summary: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """Per summary row: ``learn_kind`` (one of the phrases above) and ``learns`` (the phrase
    with its numbers), from the cell's learning test and the summary's interval."""
    lt = tests[tests["family"] == "learning"].set_index(["data", "update_a", "activation", "lr"])
    kinds, words = [], []
    for _, r in summary.iterrows():
        key = (r["data"], r["update"], r["activation"], r["lr"])
        n_sm = r.get(f"n_{Outcome.SHAPE_MISMATCH}", 0)
        if n_sm == r["n_runs"]:
            kinds.append(NONE)
            words.append(NONE)
            continue
        if key not in lt.index or lt.loc[key, "n"] == 0:
            if r["n_ran"] and r["n_diverged"] == r["n_ran"]:
                kinds.append(DIVERGED)
                words.append(_diverged_words(r))
            else:
                kinds.append(NONE)
                words.append(NONE)
            continue
        t = lt.loc[key]
        move = f"{fmt(t['mean_b'])} -> {fmt(t['mean_a'])}"
        chance = near_chance(r["test_error_mean"], r["test_error_lo"], r["test_error_hi"],
                             r["chance_error"])
        above = above_chance(r["test_error_mean"], r["test_error_lo"], r["test_error_hi"],
                             r["chance_error"])
        if t["significant"]:
            kind = LOWERS if t["diff"] < 0 else RAISES
            text = f"{kind} ({move}, Holm p = {fmt_p(t['p_holm'])})"
            if above:
                text += f"; still above chance level ({fmt(r['chance_error'])})"
        else:
            why = t["note"] or f"Holm p = {fmt_p(t['p_holm'])}{_too_few(t)}"
            if chance:
                kind, text = CHANCE, f"{CHANCE} ({fmt(r['chance_error'])}; {move}, {why})"
            elif above:
                kind, text = ABOVE, f"{ABOVE} ({fmt(r['chance_error'])}; {move}, {why})"
            else:
                kind, text = FLAT, f"{FLAT} ({move}, {why})"
        kinds.append(kind)
        words.append(text)
    return pd.DataFrame({"learn_kind": kinds, "learns": words}, index=summary.index)


# --- the verdict -----------------------------------------------------------------------------

def _pairs(tests: pd.DataFrame, data: str) -> list[tuple[str, str]]:
    h = tests[(tests["family"] == "head_to_head") & (tests["data"] == data)]
    return list(dict.fromkeys(zip(h["update_a"], h["update_b"])))


def head_to_head_counts(tests: pd.DataFrame, data: str, ra: str, rb: str) -> dict:
    """Counts over the (activation, lr) cells of ``data`` where ``ra`` and ``rb`` were paired:
    cells with pairs, lower mean for each, significant (Holm) for each."""
    h = tests[(tests["family"] == "head_to_head") & (tests["data"] == data)
              & (tests["update_a"] == ra) & (tests["update_b"] == rb) & (tests["n"] > 0)]
    return dict(cells=len(h), a_lower=int((h["diff"] < -TIE).sum()),
                b_lower=int((h["diff"] > TIE).sum()),
                a_sig=int((h["significant"] & (h["diff"] < 0)).sum()),
                b_sig=int((h["significant"] & (h["diff"] > 0)).sum()),
                diff_min=h["diff"].min(), diff_max=h["diff"].max())


def _best_line(tests, summary, data, ra, rb) -> str:
    """The best-vs-best test of the answer, in words: each rule at its cross-fitted best cell
    (the cells the test row names), the mean test errors it paired (a diverged run scoring 1),
    the Hodges-Lehmann difference and its test."""
    t = tests[(tests["family"] == "best_vs_best") & (tests["data"] == data)
              & (((tests["update_a"] == ra) & (tests["update_b"] == rb))
                 | ((tests["update_a"] == rb) & (tests["update_b"] == ra)))]
    if t.empty:
        return ""
    t = t.iloc[0]
    text = (f"on {data}, each rule at its cross-fitted best cell, {t['a']} ends with a mean "
            f"test error of {fmt(t['mean_a'])} and {t['b']} with {fmt(t['mean_b'])} (a "
            "diverged run scoring 1)")
    if t["n"] == 0:
        return text + "; no seed ran in both, so they are not compared."
    d = (f"paired over {int(t['n'])} seeds the difference ({t['update_a']} - {t['update_b']}, "
         f"Hodges-Lehmann) is {fmt(t['hl'])} {interval(t['hl_lo'], t['hl_hi'], t['n'])}")
    if not np.isfinite(t["p"]):
        return f"{text}; {d}: {t['note']}."
    sig = "significant" if t["significant"] else "not significant"
    return (f"{text}; {d}, {sig} (p = {fmt_p(t['p'])}, Holm p = {fmt_p(t['p_holm'])}"
            f"{_too_few(t)}).")


def interval(lo: float, hi: float, n: int) -> str:
    """``[lo, hi]``, or why a mean over ``n`` seeds has none."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"({no_interval(int(n))})"
    if 0 < lo and fmt(lo) == "0.000":  # open at 0: it excludes 0 (see sections._ci_or_why)
        return f"(0, {fmt(hi)}]"
    if hi < 0 and fmt(hi) == "0.000":
        return f"[{fmt(lo)}, 0)"
    return f"[{fmt(lo)}, {fmt(hi)}]"


def _sig(count: int, what: str) -> str:
    """'lowers the test error significantly in 3' or, for none, a phrase without the word:
    "significantly" is only ever said of cells where Holm's p < 0.05."""
    if count:
        return f"{what} significantly in {count}"
    return f"{what} with Holm p < {ALPHA:g} in none"


def _chance_counts(k: pd.Series) -> str:
    """'2 of them near chance level, 1 above it' (the second part only when there are any)."""
    text = f"{k.get(CHANCE, 0)} of them near chance level"
    return text + (f", {k[ABOVE]} above it" if k.get(ABOVE, 0) else "")


def _learn_line(data: str, rule: str, cells: pd.DataFrame, level: float = np.nan) -> str:
    k = cells["learn_kind"].value_counts()
    n = len(cells)
    if k.get(NONE, 0) == n:
        return ""
    parts = [_sig(k.get(LOWERS, 0), "lowers the test error"),
             _sig(k.get(RAISES, 0), "raises it"),
             f"shows no significant change in "
             f"{k.get(FLAT, 0) + k.get(CHANCE, 0) + k.get(ABOVE, 0)} "
             f"({_chance_counts(k)})"]
    if k.get(DIVERGED, 0):
        parts.append(f"diverged in every run that ran in {k[DIVERGED]}")
    text = (f"on {data}, of {n} (activation, lr) {_cells(n).split(' ')[1]} `{rule}` "
            + ", ".join(parts))
    if {"test_error_lo", "test_error_hi", "chance_error"} <= set(cells.columns):
        lo, hi = cells["test_error_lo"].astype(float), cells["test_error_hi"].astype(float)
        ch = cells["chance_error"].astype(float)  # each cell's own, over its seeds
        below, above = int((hi < ch).sum()), int((lo > ch).sum())
        worse = k.get(RAISES, 0)
        text += (f"; its 95% interval ends below the chance level (the training split's "
                 f"majority class, {fmt(level)} on {data}) in {below} and above it in "
                 f"{above}; it ends significantly worse than it started in {worse}")
    return text + "."


def _divergence_line(data: str, rule: str, cells: pd.DataFrame) -> str:
    n_ran, n_div = int(cells["n_ran"].sum()), int(cells["n_diverged"].sum())
    if n_div == 0:
        return ""
    from slnn.report.inference import clopper_pearson

    lo, hi = clopper_pearson(n_div, n_ran)
    hit = cells[cells["n_diverged"] > 0].sort_values("div_rate", ascending=False, kind="stable")
    top = hit.iloc[:3]
    where = "; ".join(f"{r['activation']}, lr {r['lr']:g}: {int(r['n_diverged'])} of "
                      f"{int(r['n_ran'])}" for _, r in top.iterrows())
    tied = int((hit["div_rate"].iloc[3:] == top["div_rate"].iloc[-1]).sum()) if len(top) else 0
    if tied:  # as many as the last one named: a cut at 3 would pick among equals
        where += f"; and {tied} more cell{'s' * (tied != 1)} at that rate"
    return (f"on {data}, `{rule}` diverged in {n_div} of {n_ran} runs that ran (rate "
            f"{fmt(n_div / n_ran)} [{fmt(lo)}, {fmt(hi)}], Clopper-Pearson; most in {where}).")


def verdict(runs: pd.DataFrame, summary: pd.DataFrame, tests: pd.DataFrame,
            learn: pd.DataFrame) -> list[str]:
    """Sentences per data set: the head-to-head, the best cells, whether each rule learns,
    where a rule could not run, divergences and failures."""
    done = runs[runs["outcome"] != Outcome.RUNNING]
    s = summary.join(learn)
    chance = chance_by_data(done)
    lines: list[str] = []
    for data in sorted(done["data"].unique()):
        d = done[done["data"] == data]
        if data in chance.index:
            c = chance.loc[data]
            lines.append(f"on {data}, the chance level (the test error of answering the training split's "
                         f"majority class, mean over {int(c['seeds'])} seeds) is "
                         f"{fmt(c['chance_error'])}.")
        for ra, rb in _pairs(tests, data):
            c = head_to_head_counts(tests, data, ra, rb)
            if c["cells"] == 0:
                lines.append(f"on {data}, `{ra}` and `{rb}` never both trained for one seed of "
                             "any cell: no head-to-head comparison.")
                continue
            lines.append(
                f"on {data}, paired by seed, `{ra}` ends with the lower mean test error in "
                f"{c['a_lower']} of {c['cells']} (activation, lr) cells and `{rb}` in "
                f"{c['b_lower']}; the difference has Holm p < {ALPHA:g} in "
                f"{c['a_sig']} cells for `{ra}` and {c['b_sig']} for `{rb}`; the mean paired "
                f"difference ({ra} - {rb}) "
                + (f"per cell ranges from {fmt(c['diff_min'])} to {fmt(c['diff_max'])}."
                   if c["cells"] > 1 else f"is {fmt(c['diff_min'])}."))
            line = _best_line(tests, summary, data, ra, rb)
            if line:
                lines.append(line)
        for rule in sorted(d["update"].unique()):
            r = d[d["update"] == rule]
            cells = s[(s["data"] == data) & (s["update"] == rule)]
            sm = r[r["outcome"] == Outcome.SHAPE_MISMATCH]
            if len(sm) == len(r):
                lines.append(f"on {data}, `{rule}` could not run: {len(r)} of {len(r)} runs "
                             f"shape_mismatch ({mismatch_reason(sm['reason'])}).")
                continue
            if len(sm):
                lines.append(f"on {data}, {len(sm)} of {len(r)} `{rule}` runs shape_mismatch "
                             f"({mismatch_reason(sm['reason'])}).")
            if not _pairs(tests, data):  # no other rule to compare with: its own best cell
                b = cells[cells["best"].astype(bool)]
                if len(b):
                    b = b.iloc[0]
                    ci = interval(b["test_error_lo"], b["test_error_hi"], b["n_seeds"])
                    lines.append(f"on {data}, `{rule}`'s best cell by validation error is "
                                 f"{b['activation']}, lr {b['lr']:g}: test error "
                                 f"{fmt(b['test_error_mean'])} {ci}.")
            level = float(chance["chance_error"].get(data, np.nan))
            for line in (_learn_line(data, rule, cells, level),
                         _divergence_line(data, rule, cells)):
                if line:
                    lines.append(line)
            for kind in (Outcome.FAILED, Outcome.KILLED):
                bad = r[r["outcome"] == kind]
                if len(bad):
                    lines.append(f"on {data}, `{rule}` {kind} in {len(bad)} of {len(r)} runs.")
    return lines


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"
