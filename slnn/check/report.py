"""Text for ``slnn-check``: the per-activation table, the data-shape table and a plain-language
summary generated from the verdicts alone (it never says more than they do)."""

from __future__ import annotations

import math

from slnn.check.checker import CONFIDENCE, DESCENT_SHARE, GRAD_TOL, SHAPE_MISMATCH, ActivationResult

LOSS_WORDS = {  # (the loss, what following its gradient means)
    "sum_squared": ("the squared error summed over the batch instead of averaged",
                    "that is n times the averaged gradient for a batch of n, so the direction is "
                    "the gradient's but the step grows with the batch size (dividing by the batch "
                    "size gives the gradient)"),
    "cross_entropy": ("binary cross-entropy -sum t log z + (1 - t) log(1 - z)",
                      "a different loss, so it is gradient descent on that loss rather than on "
                      "the squared error"),
    "softmax_cross_entropy": ("the cross-entropy of softmax(net)",
                              "a different loss, so it is gradient descent on that loss rather "
                              "than on the squared error"),
}
TOL = f"{GRAD_TOL:.0e}".replace("e-0", "e-")      # 1e-8


def _tol(group) -> str:
    """The tolerance the verdicts of ``group`` used (1e-8 for float64 steps)."""
    tol = max(getattr(r, "tolerance", None) or GRAD_TOL for r in group)
    return TOL if tol <= GRAD_TOL else f"{tol:.1e}".replace("e-0", "e-")


def _precision_sentence(results) -> str:
    """For steps less precise than float64: what "equals" meant."""
    low = sorted({d for r in results for d in getattr(r, "dtypes", None) or []} - {"float64"})
    if not low:
        return ""
    return (f"The step is {' and '.join(low)}, so \"equals\" means within {_tol(results)} "
            f"relative, the tolerance of that precision, not {TOL}.")


def downhill_text(r) -> str:
    """'3999 of 4000 (95% CI 99.86% to 99.99%)', or '' for a result without those fields."""
    ci = getattr(r, "downhill_ci", None)
    if not ci:
        return ""
    return f"{r.downhill} of {r.n_compared} ({CONFIDENCE:.0%} CI {_pct(ci[0])} to {_pct(ci[1])})"


def _pct(v: float) -> str:
    """A share in percent, never rounded up to 100% unless it is 1."""
    if v >= 1:
        return "100%"
    digits = 2
    while f"{100 * v:.{digits}f}" == f"{100:.{digits}f}" and digits < 8:
        digits += 1
    return f"{100 * v:.{digits}f}%"


def _num(v, fmt: str) -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, fmt)


def _names(results: list[ActivationResult]) -> str:
    names = [r.activation for r in results]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def format_table(results: list[ActivationResult]) -> str:
    """One row per activation; ``*`` marks a verdict that holds only where the step fits ``W``."""
    rows = [("activation", "verdict", "cos mean", "cos min", "max rel dev", "downhill",
             f"[{CONFIDENCE:.0%} CI]", "shape")]
    for r in results:
        verdict = r.verdict + (f" x{r.scale:.3g}" if r.scale is not None else "")
        ci = getattr(r, "downhill_ci", None)
        rows.append((r.activation, verdict + ("*" if r.fits_only else ""),
                     _num(r.cosine_mean, ".4f"), _num(r.cosine_min, ".4f"),
                     _num(r.max_rel_dev, ".1e"),
                     f"{r.downhill}/{r.n_compared}" if ci else "-",
                     f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "-", r.shape))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2, 3, 4, 5}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    fits = {tuple(r.fits_only) for r in results if r.fits_only}
    for f in sorted(fits):
        lines.append(f"* holds only on {', '.join(f)}, the data shapes where the step has W's shape")
    return "\n".join(lines)


def format_shapes(results: list[ActivationResult]) -> str:
    """One row per data shape: ``W``'s shape, the step's shape(s) and how it fits."""
    rows = [("data shape", "W", "step", "fits")]
    for i, first in enumerate(results[0].shapes):
        per_act = [r.shapes[i] for r in results]
        steps = sorted({s for sc in per_act for s in sc.step_shapes})
        fits = sorted({sc.fit for sc in per_act})
        rows.append((first.label, str(first.w_shape), " / ".join(str(s) for s in steps),
                     " / ".join(fits)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _sentence(verdict: str, group: list[ActivationResult]) -> str:
    who = f"With {_names(group)}"
    cos_min = min(r.cosine_min for r in group if r.cosine_min is not None) \
        if verdict != SHAPE_MISMATCH else None
    if verdict == "gradient":
        return (f"{who} the step equals the negative gradient of the squared error "
                f"0.5 ||t - z||^2 averaged over the batch (to within {_tol(group)} relative on "
                f"every "
                f"batch checked): it is gradient descent.")
    if verdict.startswith("other_loss_gradient:"):
        loss = verdict.split(":", 1)[1]
        what, meaning = LOSS_WORDS.get(loss, (loss, "a different loss"))
        return (f"{who} the step is not the squared-error gradient; it equals, to within "
                f"{_tol(group)} "
                f"on every batch checked, the negative gradient of {what}: {meaning}.")
    if verdict == "gradient_scaled":
        if len({f"{r.scale:.3g}" for r in group}) == 1:
            factors = f"{group[0].scale:.3g} times"
        else:
            factors = "a constant times (" + ", ".join(
                f"{r.scale:.3g} with {r.activation}" for r in group) + ")"
        return (f"{who} the step equals {factors} the negative gradient on every batch checked "
                f"(to within {_tol(group)}): the gradient with the learning rate scaled by that "
                f"factor.")
    shares = "; ".join(f"{downhill_text(r)} with {r.activation}" for r in group
                       if downhill_text(r))
    rule = f"descent needs that interval to reach {DESCENT_SHARE:.1%}"
    if verdict == "descent":
        where = (f"on all but a negligible share of the batches checked: on {shares} ({rule})"
                 if shares else "on the batches checked")
        return (f"{who} the step is not the gradient of any loss checked, but it pointed downhill "
                f"{where}; smallest cosine with the negative gradient {cos_min:.2f}.")
    if verdict == "not_descent":
        cos_max_mean = max(r.cosine_mean for r in group)
        if cos_max_mean < -1 + 1e-6:
            return (f"{who} the step points straight uphill on every batch checked (cosine -1 "
                    f"with the negative gradient): it climbs the loss.")
        effect = ("a small step there raises the squared error" if cos_min < 0 else
                  "there it does not lower the squared error to first order")
        share = f" It pointed downhill on {shares} ({rule})." if shares else ""
        return (f"{who} the step is not a descent direction: on at least one batch checked its "
                f"cosine with the negative gradient was {cos_min:.2f}, so {effect}.{share}")
    # shape_mismatch
    silent = [r for r in group if r.shape == "broadcast"]
    tail = (" (where it broadcasts, NumPy would add it to W without complaint, changing the "
            "weights wrongly)" if silent else "")
    return (f"{who} the step never has W's shape (n_features + 1, n_outputs) on the data shapes "
            f"checked, so it cannot be used as an update{tail}.")


def _fits_sentence(results: list[ActivationResult]) -> str:
    fitting = [r for r in results if r.fits_only]
    if not fitting:
        return ""
    r = fitting[0]
    square = {s.label for s in r.shapes if s.n_features + 1 == s.n_outputs}
    where = ", ".join(r.fits_only)
    why = " (exactly where n_features + 1 == n_outputs)" if set(r.fits_only) == square else ""
    silent = [s.label for s in r.shapes if s.fit == "broadcast"]
    silent_text = (f"; on {', '.join(silent)} NumPy would broadcast it onto W silently"
                   if silent else "")
    same = all(x.fits_only == r.fits_only for x in fitting)
    scope = "" if same and len(fitting) == len(results) else f" (with {_names(fitting)})"
    return (f"The step has W's shape only on {where}{why}{scope}, so the verdicts above hold only "
            f"there; elsewhere it cannot be added to W{silent_text}.")


def summarize(results: list[ActivationResult], label: str, *, seed: int = 0) -> str:
    """One paragraph, from the verdicts alone."""
    groups: dict[str, list[ActivationResult]] = {}
    for r in results:
        groups.setdefault(r.verdict, []).append(r)
    sentences = [_sentence(v, g) for v, g in groups.items()]
    fits = _fits_sentence(results)
    if fits:
        sentences.append(fits)
    precision = _precision_sentence(results)
    if precision:
        sentences.append(precision)
    n_batches = max(getattr(results[0], "n_compared", 0),
                    sum(len(s.batches) for s in results[0].shapes if s.fit == "right"))
    if n_batches == 0:
        n_batches = sum(len(s.batches) for s in results[0].shapes)
    sentences.append(f"These are findings on {n_batches} random batches per activation "
                     f"(seed {seed}), not a proof.")
    return f"{label}: " + " ".join(sentences)
