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


def choose(trials: list, loss) -> object:
    """The best of an arm's completed ``trials`` (Optuna's, with ``value`` and ``number``): the
    lowest value; among values equal to it (within 1e-12, relative) the lowest ``loss(trial)``;
    then the lowest number."""
    low = min(t.value for t in trials)
    tied = [t for t in trials if math.isclose(t.value, low, rel_tol=1e-12)]
    if len(tied) == 1:
        return tied[0]
    return min(tied, key=lambda t: (loss(t), t.number))
