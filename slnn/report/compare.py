"""Every paired comparison a report makes, as one family of tests corrected together by Holm.

    tests = tests_table(runs, summary)     # one row per test; tests.csv in the report folder

The kinds of test (``head_to_head``, ``learning``, ``best_vs_best``), which pairs of rules are
compared and the columns of a row are in docs/statistics.md ("Which comparisons are made")."""

from __future__ import annotations

import numpy as np
import pandas as pd

from slnn.core.outcomes import RAN
from slnn.report.inference import ALPHA, holm, paired_tests
from slnn.report.stats import per_seed, trained_ok

COLUMNS = ["family", "data", "update_a", "update_b", "activation", "lr", "a", "b", "n",
           "n_nonzero", "mean_a", "mean_b", "diff", "hl", "hl_lo", "hl_hi", "p", "method",
           "p_holm", "significant", "note"]


def cell_label(rule: str, activation: str, lr: float) -> str:
    return f"{rule} ({activation}, lr {lr:g})"


REFERENCE = "input"  # the gradient step: what every other rule is held to in a study of several


def rule_pairs(rules: list[str]) -> list[tuple[str, str]]:
    """The (a, b) rule pairs compared: all pairs of ``rules`` (sorted), or, with more than two
    and ``input`` among them, ``(input, r)`` for each other rule ``r``."""
    rules = sorted(rules)
    if len(rules) > 2 and REFERENCE in rules:
        return [(REFERENCE, r) for r in rules if r != REFERENCE]
    return [(ra, rb) for i, ra in enumerate(rules) for rb in rules[i + 1:]]


def tests_table(runs: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The family of tests of one sweep (columns ``COLUMNS``), sorted by family, data, cell."""
    done = runs[runs["outcome"].isin(RAN)]
    # one value per seed: the mean of its runs where another param varies inside a cell
    ok = per_seed(runs[trained_ok(runs)], ["test_error", "initial_test_error"])
    # per (data, update, activation, lr): final and initial test error by seed
    by_cell = {k: g.set_index("unit")[["test_error", "initial_test_error"]]
               for k, g in ok.groupby(["data", "update", "activation", "lr"])}
    empty = pd.DataFrame(columns=["test_error", "initial_test_error"], dtype=float)
    ran = set(done.groupby(["data", "update", "activation", "lr"]).groups)
    metas, pairs = [], []

    def add(meta: dict, a: pd.Series, b: pd.Series) -> None:
        seeds = a.index.intersection(b.index).sort_values()
        metas.append(meta)
        pairs.append((a[seeds].to_numpy(dtype=float), b[seeds].to_numpy(dtype=float)))

    for data in sorted(done["data"].unique()):
        rules = sorted(done.loc[done["data"] == data, "update"].unique())
        cells = done[done["data"] == data].groupby(["activation", "lr"]).size().index
        for act, lr in cells:
            here = [r for r in rules if (data, r, act, lr) in ran]
            got = {r: by_cell.get((data, r, act, lr), empty) for r in here}
            for ra, rb in rule_pairs(rules):
                if ra in got and rb in got:
                    add(dict(family="head_to_head", data=data, update_a=ra, update_b=rb,
                             activation=act, lr=lr, a=ra, b=rb),
                        got[ra]["test_error"], got[rb]["test_error"])
            for r in here:
                mine = got[r][np.isfinite(got[r]["initial_test_error"].astype(float))]
                add(dict(family="learning", data=data, update_a=r, update_b=r, activation=act,
                         lr=lr, a="final", b="initial"),
                    mine["test_error"], mine["initial_test_error"])
        best = summary[(summary["data"] == data) & summary["best"].astype(bool)]
        best = best.set_index("update")
        for ra, rb in rule_pairs(rules):
            if ra in best.index and rb in best.index:
                ca, cb = best.loc[ra], best.loc[rb]
                if ca["activation"] == cb["activation"] and ca["lr"] == cb["lr"]:
                    continue  # the same cell: its head-to-head test is this comparison
                sel = [by_cell.get((data, r, c["activation"], c["lr"]), empty)["test_error"]
                       for r, c in ((ra, ca), (rb, cb))]
                add(dict(family="best_vs_best", data=data, update_a=ra, update_b=rb,
                         activation="", lr=np.nan,
                         a=cell_label(ra, ca["activation"], ca["lr"]),
                         b=cell_label(rb, cb["activation"], cb["lr"])), sel[0], sel[1])
    if not metas:
        return pd.DataFrame(columns=COLUMNS)
    results = paired_tests(pairs)
    out = pd.DataFrame([{**m, **vars(r)} for m, r in zip(metas, results)])
    out["p_holm"] = holm(out["p"].to_numpy())
    out["significant"] = out["p_holm"] < ALPHA
    order = {"head_to_head": 0, "best_vs_best": 1, "learning": 2}
    out = out.assign(_f=out["family"].map(order)).sort_values(
        ["_f", "data", "update_a", "update_b", "activation", "lr"], kind="stable")
    return out.drop(columns="_f")[COLUMNS].reset_index(drop=True)


def best_comparison(tests: pd.DataFrame, summary: pd.DataFrame, data: str, ra: str,
                    rb: str) -> pd.Series | None:
    """The test of rule ``ra``'s best cell against ``rb``'s on ``data``: the best_vs_best row,
    or the head-to-head row when both best cells are the same cell; None if there is none."""
    t = tests[(tests["data"] == data) & (tests["update_a"] == ra) & (tests["update_b"] == rb)]
    row = t[t["family"] == "best_vs_best"]
    if len(row):
        return row.iloc[0]
    best = summary[(summary["data"] == data) & summary["best"].astype(bool)].set_index("update")
    if ra not in best.index or rb not in best.index:
        return None
    act, lr = best.loc[ra, "activation"], best.loc[ra, "lr"]
    if (best.loc[rb, "activation"], best.loc[rb, "lr"]) != (act, lr):
        return None
    row = t[(t["family"] == "head_to_head") & (t["activation"] == act) & (t["lr"] == lr)]
    return row.iloc[0] if len(row) else None
