"""The report's words, written from its numbers: the headline, the verdict, and per cell whether
a rule learns.

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
from slnn.report.compare import REFERENCE, best_comparison
from slnn.report.inference import ALPHA, TEST_NAME, no_interval, smallest_p
from slnn.report.stats import chance_by_data, outcome_order

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
    best = summary[(summary["data"] == data) & summary["best"].astype(bool)].set_index("update")
    if ra not in best.index or rb not in best.index:
        return ""
    ca, cb = best.loc[ra], best.loc[rb]
    t = best_comparison(tests, summary, data, ra, rb)
    text = (f"on {data}, chosen by validation error, `{ra}`'s best cell ({ca['activation']}, lr "
            f"{ca['lr']:g}) ends with a test error of {fmt(ca['test_error_mean'])} "
            f"{interval(ca['test_error_lo'], ca['test_error_hi'], ca['n_seeds'])} and `{rb}`'s "
            f"({cb['activation']}, lr {cb['lr']:g}) with {fmt(cb['test_error_mean'])} "
            f"{interval(cb['test_error_lo'], cb['test_error_hi'], cb['n_seeds'])}")
    if t is None or t["n"] == 0:
        return text + "; no seed trained in both cells, so they are not compared."
    d = (f"paired over {int(t['n'])} seeds the difference ({ra} - {rb}, Hodges-Lehmann) is "
         f"{fmt(t['hl'])} {interval(t['hl_lo'], t['hl_hi'], t['n'])}")
    if not np.isfinite(t["p"]):
        return f"{text}; {d}: {t['note']}."
    sig = "significant" if t["significant"] else "not significant"
    return (f"{text}; {d}, {sig} (p = {fmt_p(t['p'])}, Holm p = {fmt_p(t['p_holm'])}"
            f"{_too_few(t)}).")


def interval(lo: float, hi: float, n: int) -> str:
    """``[lo, hi]``, or why a mean over ``n`` seeds has none."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"({no_interval(int(n))})"
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


def _learn_line(data: str, rule: str, cells: pd.DataFrame) -> str:
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
        ch = cells["chance_error"].astype(float)
        below, above = int((hi < ch).sum()), int((lo > ch).sum())
        worse = k.get(RAISES, 0)
        text += (f"; its 95% interval ends below the chance level (the training split's "
                 f"majority class, {fmt(float(ch.mean()))}) in {below} and above it in "
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
            for line in (_learn_line(data, rule, cells), _divergence_line(data, rule, cells)):
                if line:
                    lines.append(line)
            for kind in (Outcome.FAILED, Outcome.KILLED):
                bad = r[r["outcome"] == kind]
                if len(bad):
                    lines.append(f"on {data}, `{rule}` {kind} in {len(bad)} of {len(r)} runs.")
    return lines


# --- the headline ----------------------------------------------------------------------------

def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _div_note(cell: pd.Series) -> str:
    """' (1 of 6 runs in it diverged)' for a best cell that partly diverged, else ''."""
    n = int(cell.get("n_diverged", 0) or 0)
    return f" ({n} of {int(cell['n_ran'])} runs in it diverged)" if n else ""


def _every_pair(tests: pd.DataFrame, s: pd.DataFrame, datas: list[str],
                pairs: list[tuple[str, str]], chance: pd.Series) -> list[str]:
    """A study of three or more rules without ``input``, every pair tested: one sentence on the
    cells of every pair, one on every rule's best cell."""
    bits = []
    for ra, rb in dict.fromkeys(tuple(sorted(p)) for p in pairs):  # a pair once, in one order
        cells = a_sig = b_sig = 0
        for data in datas:  # each data set's own order of the pair (its own rules, sorted)
            here = _pairs(tests, data)
            if (ra, rb) in here:
                c = head_to_head_counts(tests, data, ra, rb)
                cells, a_sig, b_sig = cells + c["cells"], a_sig + c["a_sig"], b_sig + c["b_sig"]
            elif (rb, ra) in here:
                c = head_to_head_counts(tests, data, rb, ra)
                cells, a_sig, b_sig = cells + c["cells"], a_sig + c["b_sig"], b_sig + c["a_sig"]
        if not cells:
            continue
        bits.append(f"`{ra}` against `{rb}` in none of {_cells(cells)}" if not a_sig + b_sig
                    else f"`{ra}` against `{rb}` in {a_sig + b_sig} of {_cells(cells)} (`{ra}` "
                    f"lower in {a_sig}, `{rb}` lower in {b_sig})")
    out = []
    if bits:
        out.append("Paired by seed in the same (activation, lr) cell, the mean test error differs "
                   f"with Holm p < {ALPHA:g} for {_join(bits)}.")
    bests = []
    for data in datas:
        b = s[(s["data"] == data) & s["best"].astype(bool)].set_index("update")
        if len(b):
            each = _join([f"{fmt(b.loc[r, 'test_error_mean'])} for `{r}`{_div_note(b.loc[r])}"
                          for r in sorted(b.index)])
            bests.append(f"{each} on {data} (chance level {fmt(chance.get(data, np.nan))})")
    if bests:
        out.append("Each rule's best cell, chosen by validation error, reaches a test error of "
                   + "; ".join(bests) + "; the verdict tests the best cells of each pair above.")
    return out


def _against_reference(tests: pd.DataFrame, summary: pd.DataFrame, datas: list[str],
                       rules: list[str], chance: pd.Series) -> list[str]:
    """A study of several rules, each tested against ``input`` only: one sentence per data set
    on the paired cell tests, one on the best cells."""
    out = []
    for data in datas:
        bits = []
        for rule in rules:
            c = head_to_head_counts(tests, data, REFERENCE, rule)
            if c["cells"]:
                # a_sig: the reference significantly lower, so the rule's error higher
                n = c["a_sig"] + c["b_sig"]
                bits.append(f"`{rule}` in none of {_cells(c['cells'])}" if not n else
                            f"`{rule}` in {n} of {_cells(c['cells'])} (higher in {c['a_sig']}, "
                            f"lower in {c['b_sig']})")
        if bits:
            out.append(f"On {data}, against `{REFERENCE}` (the gradient) in the same "
                       f"(activation, lr) cell, paired by seed, the mean test error differs "
                       f"with Holm p < {ALPHA:g} for {_join(bits)}.")
        best = summary[(summary["data"] == data) & summary["best"].astype(bool)].set_index("update")
        if REFERENCE not in best.index:
            continue
        vs = []
        for rule in rules:
            if rule not in best.index:
                continue
            t = best_comparison(tests, summary, data, REFERENCE, rule)
            if t is None or not np.isfinite(t["p"]):
                how = "no test"
            elif t["significant"]:
                how = "significantly " + ("higher" if t["diff"] < 0 else "lower")
            else:
                how = "not significantly different"
            vs.append(f"`{rule}` {fmt(best.loc[rule, 'test_error_mean'])} ({how})"
                      f"{_div_note(best.loc[rule])}")
        if vs:
            out.append(f"Best cells by validation error on {data} (chance level "
                       f"{fmt(chance.get(data, np.nan))}): `{REFERENCE}` reaches a test error of "
                       f"{fmt(best.loc[REFERENCE, 'test_error_mean'])}"
                       f"{_div_note(best.loc[REFERENCE])}; {_join(vs)}.")
    return out


def headline(runs: pd.DataFrame, summary: pd.DataFrame, tests: pd.DataFrame,
             learn: pd.DataFrame) -> list[str]:
    """3 to 5 sentences that open the report, every number from the tables."""
    done = runs[runs["outcome"] != Outcome.RUNNING]
    if done.empty:
        return ["No run of this sweep has ended yet."]
    s = summary.join(learn)
    chance = chance_by_data(done)["chance_error"]
    datas = sorted(done["data"].unique())
    n_tests = int(np.isfinite(tests["p"]).sum()) if len(tests) else 0
    ended = done["outcome"].value_counts()
    ended = ", ".join(f"{ended[o]} {o}" for o in outcome_order(ended.index))
    out = [f"This sweep has {len(done)} ended runs ({ended}) of {done['update'].nunique()} "
           f"update rule(s) on {_join(datas)}; every comparison below pairs runs by seed (same "
           f"split, same initial weights) and is a {TEST_NAME.split(' (')[0]} corrected with "
           f"Holm's method over all {n_tests} tests of this report."]
    pairs = list(dict.fromkeys(p for data in datas for p in _pairs(tests, data)))
    if len(pairs) > 1 and all(ra == REFERENCE for ra, _ in pairs):
        out += _against_reference(tests, summary, datas, [rb for _, rb in pairs], chance)
    elif len(pairs) > 1:
        out += _every_pair(tests, s, datas, pairs, chance)
    elif pairs:
        ra, rb = pairs[0]
        per = [(data, head_to_head_counts(tests, data, ra, rb)) for data in datas
               if (ra, rb) in _pairs(tests, data)]
        per = [(data, c) for data, c in per if c["cells"]]
        if per:
            low = _join([f"{c['a_lower']} of the {_cells(c['cells'])} on {data} where both "
                         "trained" for data, c in per])
            sig = _join([str(c["a_sig"]) for _, c in per])
            other = sum(c["b_sig"] for _, c in per)
            out.append(f"`{ra}` ends with a lower mean test error than `{rb}` in {low}; the "
                       f"difference has Holm p < {ALPHA:g} in {sig} of them, and `{rb}` is "
                       + (f"significantly lower in {other} cell{'s' * (other != 1)}."
                          if other else f"lower with Holm p < {ALPHA:g} in none."))
        bests = []
        for data in datas:
            b = s[(s["data"] == data) & s["best"].astype(bool)].set_index("update")
            if ra in b.index and rb in b.index:
                t = best_comparison(tests, summary, data, ra, rb)
                if t is None or not np.isfinite(t["p"]):
                    sig = "no test"
                else:
                    sig = "significant" if t["significant"] else "not significant"
                paired = ""
                if t is not None and t["n"] and (t["n"] < b.loc[ra, "n_seeds"]
                                                 or t["n"] < b.loc[rb, "n_seeds"]):
                    paired = (f"; over the {int(t['n'])} seeds both trained, "
                              f"{fmt(t['mean_a'])} against {fmt(t['mean_b'])}")
                bests.append(f"{fmt(b.loc[ra, 'test_error_mean'])} for `{ra}`"
                             f"{_div_note(b.loc[ra])} against "
                             f"{fmt(b.loc[rb, 'test_error_mean'])} for `{rb}`"
                             f"{_div_note(b.loc[rb])} on {data} "
                             f"(chance level {fmt(chance.get(data, np.nan))}; {sig}{paired})")
        if bests:
            out.append("Each rule's best cell, chosen by validation error, reaches a test error "
                       f"of {_join(bests)}.")
    learn_bits = []
    for rule in sorted(done["update"].unique()):
        mine = s[(s["update"] == rule) & (s["learn_kind"] != NONE)]
        cells = mine[mine["learn_kind"] != DIVERGED]
        n_gone = len(mine) - len(cells)
        gone = f"; every run that ran diverged in {n_gone} more" if n_gone else ""
        if len(cells):
            k = cells["learn_kind"].value_counts()
            above = f", {k[ABOVE]} end above it" if k.get(ABOVE, 0) else ""
            learn_bits.append(f"of the {_cells(len(cells))} where `{rule}` trained, it "
                              f"{_sig(k.get(LOWERS, 0), 'lowers the test error')} "
                              f"({k.get(CHANCE, 0)} stay near chance level{above}{gone})")
        elif n_gone:
            learn_bits.append(f"`{rule}` trained in none of its cells: every run that ran "
                              f"diverged in {_cells(n_gone)}")
    if learn_bits:
        text = _join(learn_bits)
        out.append(text[0].upper() + text[1:] + ".")
    tail = []
    for data in datas:
        for rule in sorted(done["update"].unique()):
            r = done[(done["data"] == data) & (done["update"] == rule)]
            if len(r) and (r["outcome"] == Outcome.SHAPE_MISMATCH).all():
                tail.append(f"`{rule}` could not run on {data} ({len(r)} of {len(r)} runs "
                            f"shape_mismatch)")
    for rule in sorted(done["update"].unique()):
        r = done[(done["update"] == rule) & done["outcome"].isin(RAN)]
        if len(r):
            tail.append(f"`{rule}` diverged in {int((r['outcome'] == Outcome.DIVERGED).sum())} "
                        f"of {len(r)} runs that ran")
    if tail:
        out.append(_join(tail) + ".")
    return out[:5]
