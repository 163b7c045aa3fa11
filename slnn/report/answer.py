"""The report's first screen: the answer in at most 60 words, one table, one figure.

Per data set and rule: the best cell (``selection``, cross-fitted), its test error (a diverged run
counted as 1), the probability of improvement over the reference rule (``aggregate``), the
divergence rate and the median epochs to the target (``survival``). The words come from the
best-vs-best tests, each rule's best cell against the reference rule's, paired by seed, Holm-
adjusted with every other test (docs/statistics.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from slnn.core.outcomes import RAN, Outcome
from slnn.report.inference import ALPHA, clopper_pearson, holm, rate_interval, smallest_p
from slnn.report.inference import paired_tests
from slnn.report.selection import SeedSplit, choose_best, crossfit, failure_scored, seed_split

MAX_WORDS = 60
FAMILY = "best_vs_best"


@dataclass
class Answer:
    sentences: list[str]
    table: pd.DataFrame  # one row per (data, update); see ``answer_table``
    split: SeedSplit
    reference: str
    target: float
    tests: pd.DataFrame  # the best-vs-best rows (family FAMILY), before Holm
    events: pd.DataFrame = field(default_factory=pd.DataFrame)  # time to target, best cells
    km: pd.DataFrame = field(default_factory=pd.DataFrame)  # Kaplan-Meier curves, best cells
    logrank: pd.DataFrame = field(default_factory=pd.DataFrame)


def reference_rule(runs: pd.DataFrame) -> str:
    from slnn.report.compare import REFERENCE

    rules = sorted(runs["update"].unique())
    return REFERENCE if REFERENCE in rules else rules[0]


def _per_seed(runs: pd.DataFrame, col: str) -> pd.Series:
    """``col`` scored with divergence as failure, one value per seed (the mean of its runs)."""
    v = runs.assign(_v=failure_scored(runs, col))
    return v.groupby("seed")["_v"].mean()


def _cells(c: pd.DataFrame) -> str:
    """'tanh, lr 0.1' or, when the two halves chose differently, both."""
    cells = c.drop_duplicates(["activation", "lr"])
    return " / ".join(f"{r.activation}, lr {r.lr:g}" for r in cells.itertuples())


def best_tests(fitted: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per data set, every rule at its cross-fitted best cell against the reference rule at
    its own, paired by seed (the seeds where both ran), a diverged run scoring an error of 1."""
    metas, pairs = [], []
    for data, d in fitted.groupby("data"):
        if reference not in set(d["update"]):
            continue
        ref = d[d["update"] == reference]
        a = _per_seed(ref, "test_error")
        for rule in sorted(set(d["update"]) - {reference}):
            mine = d[d["update"] == rule]
            o = _per_seed(mine, "test_error")
            seeds = a.index.intersection(o.index).sort_values()
            metas.append(dict(family=FAMILY, data=data, update_a=reference, update_b=rule,
                              activation="", lr=np.nan, a=f"{reference} ({_cells(ref)})",
                              b=f"{rule} ({_cells(mine)})"))
            pairs.append((a[seeds].to_numpy(float), o[seeds].to_numpy(float)))
    if not metas:
        return pd.DataFrame()
    return pd.DataFrame([{**m, **vars(r)} for m, r in zip(metas, paired_tests(pairs))])


def with_best_tests(tests: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """The report's family of tests with its best-vs-best rows replaced by ``best`` (held-out
    seeds, divergence as failure), Holm's adjustment redone over the whole family."""
    keep = tests[tests["family"] != FAMILY] if len(tests) else tests
    out = pd.concat([keep, best], ignore_index=True) if len(best) else keep.copy()
    if out.empty:
        return out
    out["p_holm"] = holm(out["p"].to_numpy(dtype=float))
    out["significant"] = out["p_holm"] < ALPHA
    cols = list(tests.columns) if len(tests.columns) else list(out.columns)
    return out[[c for c in cols if c in out] + [c for c in out if c not in cols]]


def answer_table(runs: pd.DataFrame, fitted: pd.DataFrame, reference: str,
                 tests: pd.DataFrame, medians: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (data, update) that ran anywhere: numeric columns, for tables and figures."""
    from slnn.report.aggregate import probability_of_improvement

    rows = []
    for data in sorted(runs["data"].unique()):
        here = runs[runs["data"] == data]
        f = fitted[fitted["data"] == data]
        for rule in sorted(here["update"].unique()):
            mine = here[here["update"] == rule]
            ran = mine[mine["outcome"].isin(RAN)]
            n_div = int((ran["outcome"] == Outcome.DIVERGED).sum())
            dlo, dhi = clopper_pearson(n_div, len(ran))
            row = dict(data=data, update=rule, n_runs=len(mine), n_ran=len(ran),
                       n_diverged=n_div, div_rate=n_div / len(ran) if len(ran) else np.nan,
                       div_lo=dlo, div_hi=dhi, activation="", lr=np.nan, n_report=0,
                       test_error=np.nan, test_lo=np.nan, test_hi=np.nan,
                       poi=np.nan, poi_lo=np.nan, poi_hi=np.nan, poi_cells=0,
                       median=np.nan, median_lo=np.nan, median_hi=np.nan, n_reached=0,
                       # diff: the Hodges-Lehmann estimate of reference - rule
                       n_pairs=0, n_nonzero=0, p_holm=np.nan, significant=False, diff=np.nan,
                       why="" if len(ran) else _why_not(mine),
                       shape=bool((mine["outcome"] == Outcome.SHAPE_MISMATCH).all()))
            mine_f = f[f["update"] == rule]
            if len(mine_f):
                v = _per_seed(mine_f, "test_error").to_numpy(float)
                lo, hi = rate_interval(v) if len(v) else (np.nan, np.nan)
                first = mine_f.iloc[0]
                row.update(activation=_cells(mine_f), lr=float(first["lr"]), n_report=len(v),
                           test_error=float(v.mean()) if len(v) else np.nan, test_lo=lo,
                           test_hi=hi)
            if rule != reference and (here["update"] == reference).any() and len(ran):
                p = probability_of_improvement(here, rule, reference)
                row.update(poi=p["p"], poi_lo=p["lo"], poi_hi=p["hi"], poi_cells=p["n_cells"])
            if len(tests):
                t = tests[(tests["family"] == FAMILY) & (tests["data"] == data)
                          & (tests["update_b"] == rule)]
                if len(t):
                    row.update(n_pairs=int(t["n"].iloc[0]), n_nonzero=int(t["n_nonzero"].iloc[0]),
                               p_holm=float(t["p_holm"].iloc[0]),
                               significant=bool(t["significant"].iloc[0]),
                               diff=float(t["hl"].iloc[0] if "hl" in t else t["diff"].iloc[0]))
            if medians is not None and len(medians):
                m = medians[(medians["data"] == data) & (medians["update"] == rule)]
                if len(m):
                    row.update(median=float(m["median"].iloc[0]),
                               median_lo=float(m["lo"].iloc[0]), median_hi=float(m["hi"].iloc[0]),
                               n_reached=int(m["n_reached"].iloc[0]))
            rows.append(row)
    return pd.DataFrame(rows)


def _why_not(runs: pd.DataFrame) -> str:
    c = runs["outcome"].value_counts()
    return ", ".join(f"{int(n)} {o}" for o, n in c.items())


def _f(x: float) -> str:
    from slnn.report.verdict import fmt

    return fmt(x)


def _p(p: float) -> str:
    return "Holm p < 0.001" if p < 1e-3 else f"Holm p = {p:.2g}"


def _list(items: list[str]) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def sentences(table: pd.DataFrame, reference: str) -> list[str]:
    """The answer: at most ``MAX_WORDS`` words, every claim from a test of the table."""
    if table.empty:
        return ["No run of this sweep has ended yet."]
    t = table.copy()
    others = [r for r in sorted(t["update"].unique()) if r != reference]
    if not others:
        b = t[np.isfinite(t["test_error"])]
        parts = [f"{_f(r.test_error)} on {r.data}" for r in b.itertuples()]
        out = ([f"`{reference}` at its best cell ends at a test error of {_list(parts)}."]
               if parts else [])
        out += _compose(t, reference, [], "short")
        return out or [f"`{reference}` has no run that trained."]
    out = []
    for variant in ("full", "short", "counts"):
        out = _compose(t, reference, others, variant)
        if sum(len(s.split()) for s in out) <= MAX_WORDS:
            return out
    words = " ".join(out).split()[:MAX_WORDS]
    return [" ".join(words).rstrip(",;") + "."]


def _compose(t: pd.DataFrame, reference: str, others: list[str], variant: str) -> list[str]:
    """The answer's sentences; ``variant`` "full" names numbers, "short" only names, "counts"
    only counts (each shorter than the one before, for studies with many rules)."""
    datas = sorted(t["data"].unique())
    ref = t[t["update"] == reference].set_index("data")
    lines = []
    kinds = {}  # (data, rule) -> "lower" (ref lower, significant), "higher", "same", "none"
    for r in t[t["update"] != reference].itertuples():
        if r.n_ran == 0 or r.data not in ref.index or ref.loc[r.data, "n_ran"] == 0:
            continue
        kinds[(r.data, r.update)] = ("tie" if r.n_pairs and not r.n_nonzero else
                                     "none" if not np.isfinite(r.p_holm) else
                                     "few" if smallest_p(r.n_nonzero) > ALPHA else
                                     "same" if not r.significant else
                                     "lower" if r.diff < 0 else "higher")
    by = {k: [key for key, v in kinds.items() if v == k]
          for k in ("lower", "higher", "same", "few", "tie", "none")}
    row = t.set_index(["data", "update"])

    def p_of(keys):
        worst = max(row.loc[k, "p_holm"] for k in keys)
        if worst < 1e-3 or len(keys) == 1:
            return _p(worst)
        return f"Holm p <= {worst:.2g}"

    if len(others) == 1:
        rule = others[0]
        if by["lower"]:
            nums = ([f"{_f(ref.loc[d, 'test_error'])} vs {_f(row.loc[(d, r), 'test_error'])} "
                     f"on {d}" for d, r in by["lower"]] if variant == "full"
                    else [d for d, _ in by["lower"]])
            lines.append(f"At each rule's best cell, `{reference}` ends with a lower test error "
                         f"than `{rule}` ({_list(nums)}; {p_of(by['lower'])}).")
        if by["higher"]:
            lines.append(f"`{rule}` ends lower than `{reference}` on "
                         f"{_list([d for d, _ in by['higher']])} ({p_of(by['higher'])}).")
        if by["same"]:
            lines.append(f"No significant difference between them on "
                         f"{_list([d for d, _ in by['same']])}.")
        if by["few"]:
            n = min(int(row.loc[k, "n_nonzero"]) for k in by["few"])
            lines.append(f"Too few seeds to tell them apart on {_list([d for d, _ in by['few']])}"
                         f" ({n} seeds differ: p cannot go below {smallest_p(n):.2g}).")
        if by["tie"]:
            lines.append(f"Every seed ends with the same test error for both on "
                         f"{_list([d for d, _ in by['tie']])}.")
        if by["none"]:
            lines.append(f"No test on {_list([d for d, _ in by['none']])} (too few seeds where "
                         "both ran).")
    else:
        for data in datas:
            bits = []
            for kind, words in (("lower", "ends lower than"), ("same", "does not differ "
                                "significantly from"), ("higher", "ends higher than"),
                                ("few", "has too few differing seeds to be told from"),
                                ("tie", "ties with"), ("none", "has no test against")):
                rules = [r for d, r in by[kind] if d == data]
                if not rules:
                    continue
                if variant == "counts":
                    text = f"{words} {len(rules)} rule{'s' * (len(rules) != 1)}"
                else:
                    text = f"{words} {_list([f'`{r}`' for r in rules])}"
                if kind in ("lower", "higher"):
                    text += f" ({p_of([(data, r) for r in rules])})"
                bits.append(text)
            if bits:
                refx = ref["test_error"].get(data, np.nan)
                lines.append(f"On {data}, at each rule's best cell, `{reference}` "
                             f"({_f(refx)}) {'; '.join(bits)}.")
    fails = [f"`{r.update}` cannot run on {r.data}" for r in t.itertuples()
             if r.n_ran == 0 and r.n_runs and r.shape]
    lost = t.assign(lost=t["n_runs"] - t["n_ran"])
    for rule in others + [reference]:
        m = lost[(lost["update"] == rule) & ~lost["shape"].astype(bool)]
        if int(m["lost"].sum()):
            fails.append(f"`{rule}` failed in {int(m['lost'].sum())} of {int(m['n_runs'].sum())} "
                         "runs")
    if fails:
        text = _list(fails)
        lines.append(text[0].upper() + text[1:] + ".")
    div = []
    for rule in others + [reference]:
        m = t[t["update"] == rule]
        n, k = int(m["n_ran"].sum()), int(m["n_diverged"].sum())
        if n and k / n >= 0.05:
            div.append((k / n, rule, k, n))
    div.sort(key=lambda x: (-x[0], x[1]))
    if div and len(div) <= 2 and variant == "full":
        text = _list([f"`{rule}` diverges in {k} of {n} runs" for _, rule, k, n in div])
        lines.append(text[0].upper() + text[1:] + ".")
    elif div:
        lines.append("Runs that diverged: " + ", ".join(f"`{rule}` {round(100 * x)}%"
                                                       for x, rule, _, _ in div) + ".")
    return lines


def build(runs: pd.DataFrame, tests: pd.DataFrame, history: pd.DataFrame | None,
          target: float) -> tuple[Answer, pd.DataFrame]:
    """The answer and the report's family of tests with the cross-fitted best-vs-best rows."""
    split = seed_split(runs)
    reference = reference_rule(runs)
    fitted = crossfit(runs, split)
    bt = best_tests(fitted, reference)
    family = with_best_tests(tests, bt)
    events = km = lr_tests = medians = pd.DataFrame()
    if history is not None and len(history) and len(fitted):
        from slnn.report.survival import km_curves, km_median, logrank_tests, time_to_target

        events = time_to_target(history, fitted, target)
        if len(events):
            km = km_curves(events)
            medians = km_median(events)
            lr_tests = logrank_tests(events, reference)
    table = answer_table(runs, fitted, reference, family, medians)
    answer = Answer(sentences(table, reference), table, split, reference, target, bt, events,
                    km, lr_tests)
    return answer, family


def best_flags(summary: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
    """``summary``'s ``best`` column by ``selection.choose_best`` (one rule for every table)."""
    best = choose_best(runs)
    keys = set(map(tuple, best[["data", "update", "activation", "lr"]].itertuples(index=False)))
    return pd.Series([(r.data, r.update, r.activation, r.lr) in keys
                      for r in summary[["data", "update", "activation", "lr"]].itertuples(
                          index=False)], index=summary.index)


def _ci(lo: float, hi: float, digits: int = 3) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return ""
    return f" [{lo:.{digits}f}, {hi:.{digits}f}]"


def _epochs(r) -> str:
    if r.n_report == 0 or not np.isfinite(r.test_error):
        return "n/a"
    if not np.isfinite(r.median):
        return f"not reached ({r.n_reached} of {r.n_report} runs reached it)"
    hi = f"{r.median_hi:.0f}" if np.isfinite(r.median_hi) else "not reached"
    lo = f"{r.median_lo:.0f}" if np.isfinite(r.median_lo) else "n/a"
    return f"{r.median:.0f} [{lo}, {hi}]"


def display(answer: Answer) -> pd.DataFrame:
    """The answer table as people read it: rule x data set."""
    poi_col = f"P(better than `{answer.reference}`)"
    med_col = f"median epochs to val error <= {answer.target:g}"
    rows = []
    for r in answer.table.itertuples():
        if r.n_ran == 0:
            rows.append({"data": r.data, "rule": f"`{r.update}`",
                         "best cell": f"cannot run ({r.why})", "test error [95% CI]": "n/a",
                         poi_col: "n/a", "diverged [95% CI]": "n/a", med_col: "n/a"})
            continue
        best = r.activation if r.activation else "none trained"
        te = (f"{r.test_error:.3f}{_ci(r.test_lo, r.test_hi)}" if np.isfinite(r.test_error)
              else "n/a")
        poi = ("(reference)" if r.update == answer.reference else
               f"{r.poi:.2f}{_ci(r.poi_lo, r.poi_hi, 2)}" if np.isfinite(r.poi) else "n/a")
        div = (f"{r.n_diverged}/{r.n_ran} ({r.div_rate:.1%})"
               f"{_ci(r.div_lo, r.div_hi, 3)}")
        rows.append({"data": r.data, "rule": f"`{r.update}`", "best cell": best,
                     "test error [95% CI]": te, poi_col: poi, "diverged [95% CI]": div,
                     med_col: _epochs(r)})
    return pd.DataFrame(rows)


def caption(answer: Answer) -> str:
    """What the table's columns are, in one paragraph."""
    return (f"Each rule's best cell is chosen by validation error (a diverged run scoring 1; ties "
            f"to the lower validation loss), {answer.split.words()}; two cells are shown when the "
            "halves chose differently. Test error: the mean over seeds at those cells, a diverged "
            "run counted as an error of 1, with a 95% interval. P(better): the chance that a run "
            "of the rule ends with a lower test "
            f"error than a run of `{answer.reference}` in the same (activation, lr) cell, "
            "averaged over every cell both ran (a diverged run loses to any run that did not "
            "diverge), with a stratified bootstrap interval; 0.5 is a tie. Diverged: over every "
            "run of the rule on the data set, Clopper-Pearson interval. Median epochs: "
            "Kaplan-Meier over the same runs, a run that never reaches the "
            "target (diverged runs included) censored at the epoch budget: a run that stopped "
            "early never reaches it later.")
