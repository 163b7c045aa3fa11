"""The report's section on each update rule beside its checker verdict (``slnn.check``).

    checks = check_rules(runs)                  # {rule: RuleCheck}, the checker run per rule
    blocks = rulecheck_blocks(checks, summary, learn, tests)

A registry rule is checked by name; a user's rule only from a file given to the report whose
SHA-256 is the one its runs recorded (``allow_rule_files``). docs/reports.md says when the section
appears and what it says; docs/extending.md why a report never runs the code a store names."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from slnn.report.verdict import NONE, fmt, fmt_p

GUIDE_RULES = ("input", "kronecker")
REFERENCE = "input"
IDENTITY_TOL = 1e-8
FLAG = "--rule-file"
# the rule files the user gave this report (its command line): the only ones it may run
_ALLOWED: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("rule_files",
                                                                           default=())


@contextlib.contextmanager
def allow_rule_files(paths):
    """Within the block, a report may run a user's rule from these files (and no others), each
    only if its sha256 is the one the runs recorded: ``slnn-report --rule-file``, the sweep's own
    report (the file it validated), ``slnn-check --compare`` (the file it checked)."""
    token = _ALLOWED.set(tuple(str(p) for p in paths or ()))
    try:
        yield
    finally:
        _ALLOWED.reset(token)


@dataclass
class RuleCheck:
    """The checker's results for one rule of the sweep (None with a ``note`` when not checked)."""

    rule: str
    label: str
    results: list | None = None
    note: str = ""
    # per activation: (batches, max |cos(step, -grad) - cos(z, x)|, min, mean, max cos(z, x))
    single: dict = field(default_factory=dict)

    def by_activation(self) -> dict:
        return {r.activation: r for r in (self.results or [])}


def applies(runs: pd.DataFrame) -> bool:
    """Whether the sweep trained a rule other than the guide's two."""
    return bool(set(runs["update"].unique()) - set(GUIDE_RULES) - {"?"})


def _single_sample_identity(results) -> dict:
    """Per activation, on the checked single-sample batches where ``d + 1 == k`` and the step
    fits: how far the step's cosine with the negative gradient is from ``cos(z, x)``."""
    from slnn.core.activations import ACTIVATIONS

    out = {}
    for r in results:
        act = ACTIVATIONS[r.activation]
        diffs, coses = [], []
        for shape in r.shapes:
            if shape.n_features + 1 != shape.n_outputs:
                continue
            for b in shape.batches:
                if b.n != 1 or b.fit != "right" or b.cosine is None:
                    continue
                x = b.batch.x[0]
                z = act.f(b.batch.x @ b.batch.W)[0]
                nz, nx = float(np.linalg.norm(z)), float(np.linalg.norm(x))
                if nz == 0 or nx == 0:
                    continue
                cos_zx = float(z @ x) / (nz * nx)
                diffs.append(abs(b.cosine - cos_zx))
                coses.append(cos_zx)
        if diffs:
            out[r.activation] = (len(diffs), max(diffs), min(coses), float(np.mean(coses)),
                                 max(coses))
    return out


def _sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _rule_function(rule: str, rows: pd.DataFrame, rule_files=None):
    """(callable, label, note): the rule's step, how to name it, and why it was not checked.

    A user's rule runs only from one of ``rule_files`` (default: ``allow_rule_files``'s) whose
    sha256 is the recorded one; the store's ``rule_fn`` gives only its function's name and the
    label, never a file to open."""
    from slnn.core.rules import CUSTOM, UPDATE_RULES

    if rule in UPDATE_RULES:
        return UPDATE_RULES[rule].step, f"`{rule}`", ""
    if rule != CUSTOM:
        return None, f"`{rule}`", "not a registered rule of this slnn: not checked"
    fns = sorted(set(rows.get("rule_fn", pd.Series(dtype=str)).dropna()))
    digests = sorted(set(rows.get("rule_digest", pd.Series(dtype=str)).dropna()))
    if len(fns) != 1 or len(digests) != 1:
        return None, "`custom`", ("its runs name no single file and digest "
                                  f"({len(fns)} files, {len(digests)} digests): not checked")
    fn, digest = fns[0], digests[0]
    recorded, _, func = fn.rpartition(":")
    name = Path(recorded).name
    label = f"`custom` ({name}:{func})"
    given = tuple(_ALLOWED.get() if rule_files is None else rule_files)
    if not given:
        return None, label, (f"a report runs a rule only from a file named on its own command "
                             f"line: pass {FLAG} <your {name}> (its sha256 must be "
                             f"{digest[:12]}..., as its runs recorded) to check it")
    shas = {p: _sha256(p) for p in given}
    match = next((p for p, sha in shas.items() if sha == digest), None)
    if match is None:
        seen = ", ".join(f"{Path(p).name} {sha[:12] if sha else 'unreadable'}"
                         for p, sha in shas.items())
        return None, label, (f"no file given with {FLAG} has the sha256 its runs recorded "
                             f"({digest[:12]}...; given: {seen}): not checked; pass {FLAG} "
                             "with the file these runs trained with")
    from slnn.core.rulefile import RuleLoadError, load_rule

    try:  # load_rule hashes the bytes it executes and refuses others (the file may change now)
        loaded = load_rule(f"{match}:{func}", expect=digest)
    except RuleLoadError as e:
        return None, label, f"the file given with {FLAG} cannot be loaded ({e}): not checked"
    return loaded, label, ""


def check_rules(runs: pd.DataFrame, seed: int = 0, rule_files=None) -> dict[str, RuleCheck]:
    """The checker (``slnn.check.check_rule``) for every rule of the sweep, on the activations
    the sweep trained it with; a user's rule only from ``rule_files`` (default: those of
    ``allow_rule_files``) by its recorded digest (``_rule_function``)."""
    import contextlib
    import sys
    import warnings

    from slnn.check.checker import check_rule
    from slnn.core.activations import ACTIVATIONS

    out = {}
    for rule in sorted(runs["update"].unique()):
        rows = runs[runs["update"] == rule]
        fn, label, note = _rule_function(rule, rows, rule_files)
        acts = [a for a in ACTIVATIONS if a in set(rows["activation"])]
        rc = RuleCheck(rule, label, note=note)
        if fn is not None and acts:
            # a rule is code: what it prints or warns is not the report's, and if it raises, the
            # report says so for this rule and goes on
            try:
                with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rc.results = check_rule(fn, activations=acts, seed=seed)
                rc.single = _single_sample_identity(rc.results)
            except Exception as e:  # noqa: BLE001
                first = (str(e).splitlines() or [type(e).__name__])[0][:200]
                rc.note = f"the checker could not run it ({type(e).__name__}: {first})"
        out[rule] = rc
    return out


# --- the learning side ---------------------------------------------------------------------

def _best_rows(summary: pd.DataFrame, learn: pd.DataFrame) -> pd.DataFrame:
    """Per (data, rule, activation): its best lr, by the rule the report's best cells follow
    (``stats.best_cells``: lowest mean validation error among the cells where no run diverged,
    else where at least half did not)."""
    from slnn.report.stats import best_cells

    s = summary.join(learn)
    return s.loc[best_cells(s, ["data", "update", "activation"])].set_index(
        ["data", "update", "activation"])


def _against_reference(tests: pd.DataFrame, data: str, rule: str, act: str, lr: float):
    """The head-to-head test of ``rule`` against ``input`` in one cell, as (diff rule - input,
    Holm p, significant), or None."""
    h = tests[(tests["family"] == "head_to_head") & (tests["data"] == data)
              & (tests["activation"] == act) & (tests["lr"] == lr)]
    for a, b, sign in ((rule, REFERENCE, 1.0), (REFERENCE, rule, -1.0)):
        row = h[(h["update_a"] == a) & (h["update_b"] == b)]
        if len(row):
            r = row.iloc[0]
            if not np.isfinite(r["p"]):
                return sign * r["diff"], math.nan, False, r["note"]
            return sign * r["diff"], r["p_holm"], bool(r["significant"]), ""
    return None


def _signed(x: float) -> str:
    """+0.012, -0.012, and 0.000 for what rounds to zero (not -0.000)."""
    text = f"{x:+.3f}"
    return "0.000" if text in ("+0.000", "-0.000") else text


def _vs_text(t) -> str:
    if t is None:
        return "n/a"
    diff, p, sig, note = t
    if not np.isfinite(p):
        return f"{_signed(diff)} ({note or 'no test'})"
    return f"{_signed(diff)} ({'significant' if sig else 'not significant'}, Holm p {fmt_p(p)})"


def _verdict_text(r) -> str:
    if r is None:
        return "not checked"
    v = r.verdict + (f" x{r.scale:.3g}" if r.scale is not None else "")
    return v + (f" (fits only {', '.join(r.fits_only)})" if r.fits_only else "")


def table(checks: dict[str, RuleCheck], summary: pd.DataFrame, learn: pd.DataFrame,
          tests: pd.DataFrame) -> pd.DataFrame:
    """One row per (data, rule, activation): the checker's verdict and cosines, and the learning
    result at the rule's best learning rate there."""
    best = _best_rows(summary, learn)
    rows = []
    joined = summary.join(learn)
    for (data, rule, act), grp in joined.groupby(["data", "update", "activation"], sort=True):
        rc = checks.get(rule)
        r = rc.by_activation().get(act) if rc else None
        row = {"data": data, "rule": rule, "activation": act, "checker verdict": _verdict_text(r),
               "cos mean": fmt(r.cosine_mean) if r and r.cosine_mean is not None else "-",
               "cos min": fmt(r.cosine_min) if r and r.cosine_min is not None else "-"}
        if (data, rule, act) in best.index:
            b = best.loc[(data, rule, act)]
            row.update({"best lr": f"{b['lr']:g}", "learns? (at best lr)": b["learns"],
                        "test error": fmt(b["test_error_mean"]),
                        f"vs {REFERENCE} (same cell)": (
                            "-" if rule == REFERENCE else
                            _vs_text(_against_reference(tests, data, rule, act, b["lr"])))})
        else:
            row.update({"best lr": "-", "learns? (at best lr)": str(grp.iloc[0].get("learns", NONE)),
                        "test error": "n/a",
                        f"vs {REFERENCE} (same cell)": "-"})
        rows.append(row)
    return pd.DataFrame(rows)


# --- the explanations ---------------------------------------------------------------------

def _learned_where(rule: str, act: str, best: pd.DataFrame, tests: pd.DataFrame) -> str:
    """'. In this sweep, on <data> at <its best lr>: <learning verdict>, test error e; against
    input in the same cell <difference>' over the data sets, or ''."""
    bits = []
    for data in sorted({k[0] for k in best.index}):
        if (data, rule, act) not in best.index:
            continue
        b = best.loc[(data, rule, act)]
        ref = ""
        if (data, REFERENCE, act) in best.index and rule != REFERENCE:
            t = _against_reference(tests, data, rule, act, b["lr"])
            if t is not None:
                ref = f"; against `{REFERENCE}` in the same cell {_vs_text(t)}"
        bits.append(f"on {data} at lr {b['lr']:g}: {b['learns']}, test error "
                    f"{fmt(b['test_error_mean'])}{ref}")
    return (". In this sweep, " + "; ".join(bits)) if bits else ""


def explanations(checks: dict[str, RuleCheck], summary: pd.DataFrame, learn: pd.DataFrame,
                 tests: pd.DataFrame) -> list[str]:
    """Paragraphs, one per rule: the checker's summary of the step, then per activation what
    kind of step it is beside what it did here; and the cos(z, x) identity where it held."""
    from slnn.check.report import LOSS_WORDS, downhill_text, summarize

    best = _best_rows(summary, learn)
    out = []
    for rule, rc in checks.items():
        if rc.results is None:
            out.append(f"{rc.label}: {rc.note}.")
            continue
        text = summarize(rc.results, rc.label)
        per = []
        for r in rc.results if rule != REFERENCE else []:  # the reference: the table says it
            where = _learned_where(rule, r.activation, best, tests)
            if not where:
                continue
            v = r.verdict
            if v.startswith("other_loss_gradient:"):
                what = LOSS_WORDS.get(v.split(":", 1)[1], (v.split(":", 1)[1],))[0]
                kind = (f"with {r.activation} the step is the negative gradient of {what}, not "
                        f"of the squared error (largest relative deviation from the squared "
                        f"error's gradient {r.max_rel_dev:.2g}): gradient descent on another loss")
            elif v in ("gradient", "gradient_scaled"):
                kind = f"with {r.activation} the step is the gradient" + (
                    f" times {r.scale:.3g}" if v == "gradient_scaled" else "")
            elif v == "descent":
                share = downhill_text(r)  # the checker's descent allows a negligible share uphill
                kind = (f"with {r.activation} the step points downhill on all but a negligible "
                        f"share of the batches checked ({share + '; ' if share else ''}"
                        f"cosine with the negative gradient {fmt(r.cosine_min)} at least, "
                        f"{fmt(r.cosine_mean)} on average) without being a gradient")
            elif v == "not_descent":
                kind = (f"with {r.activation} the step is not a descent direction on at least "
                        f"one batch checked (cosine with the negative gradient as low as "
                        f"{fmt(r.cosine_min)}, {fmt(r.cosine_mean)} on average)")
            else:
                kind = f"with {r.activation} the step never has W's shape"
            per.append(kind + where)
        if per:
            text += " Beside training: " + " ".join(p[0].upper() + p[1:] + "." for p in per)
        out.append(text)
        held = {a: s for a, s in rc.single.items() if s[1] <= IDENTITY_TOL}
        if held and len(held) == len(rc.single):
            n = sum(s[0] for s in held.values())
            worst = max(s[1] for s in held.values())
            spread = "; ".join(f"{a}: cos(z, x) from {s[2]:.2f} to {s[4]:.2f} (mean {s[3]:.2f})"
                               for a, s in held.items())
            out.append(
                f"{rc.label}, one sample at a time: on all {n} single-sample batches checked "
                f"where the step fits (n_features + 1 == n_outputs), its cosine with the negative "
                f"gradient equals cos(z, x), the cosine between the layer's outputs and its "
                f"inputs (largest difference {worst:.1e}). So it points along the descent "
                f"direction only as far as z happens to point along x: {spread}. Where cos(z, x) "
                f"can be negative the step can point uphill.")
    return out


def rulecheck_blocks(checks: dict[str, RuleCheck] | None, summary: pd.DataFrame,
                     learn: pd.DataFrame, tests: pd.DataFrame) -> list:
    """The section's blocks (``slnn.report.render``), or none when the sweep has no rule to
    check beyond the guide's two."""
    if not checks:
        return []
    from slnn.check.checker import DEFAULT_SHAPES

    shapes = ", ".join(f"d={d},k={k}" for d, k in DEFAULT_SHAPES)
    return [
        ("h2", "Rules and their checker verdicts"),
        ("p", "What each rule's step is, measured by slnn-check (the step against the negative "
              "gradient of 0.5 ||t - z||^2 by central differences, on random batches of the data "
              f"shapes {shapes}, seed 0), next to what training with it did here: its learning "
              "rate with the lowest mean validation error per activation, whether it lowers the "
              "test error there (Holm-corrected with every other test of this report) and the "
              f"paired difference from `{REFERENCE}` in the same cell (rule - {REFERENCE}). A "
              "verdict is evidence from the batches checked, not a proof."),
        ("table", table(checks, summary, learn, tests)),
        *[("p", t) for t in explanations(checks, summary, learn, tests)],
    ]
