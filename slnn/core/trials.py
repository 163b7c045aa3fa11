"""How a search scores and chooses its trials, in one place for the search (``slnn.sweep.tune``)
and the report that recounts it (``slnn.report.tuning``)."""

from __future__ import annotations

import math

from slnn.core.outcomes import Outcome


def trial_score(results) -> float:
    """A trial's value: the mean over its tuning seeds (in seed order) of each run's final
    validation error, a diverged run (whose final figures are its last finite epoch's) or one
    without a finite error scoring 1, the worst error. ``slnn.report.tuning`` scores the same."""
    return sum(1.0 if outcome == Outcome.DIVERGED or v is None or not math.isfinite(v)
               else float(v) for outcome, v in results) / len(results)


def tie_loss(results) -> float:
    """What breaks a tie between trials of one value: the mean over the tuning seeds (in seed
    order) of each run's final validation loss, infinite when a seed diverged or has none."""
    if any(outcome == Outcome.DIVERGED or v is None or not math.isfinite(v)
           for outcome, v in results):
        return math.inf
    return sum(float(v) for _, v in results) / len(results)


def tied(trials: list) -> list:
    """The ``trials`` (with ``value``) whose value is the lowest, within 1e-12 relative: the
    same sum of seeds' errors in another order differs in its last bit."""
    low = min(t.value for t in trials)
    return [t for t in trials if math.isclose(t.value, low, rel_tol=1e-12)]


def choose(trials: list, loss) -> object:
    """The best of an arm's completed ``trials`` (Optuna's, with ``value`` and ``number``): the
    lowest value; among those ``tied`` at it the lowest ``loss(trial)``; then the lowest
    number."""
    best = tied(trials)
    return best[0] if len(best) == 1 else min(best, key=lambda t: (loss(t), t.number))
