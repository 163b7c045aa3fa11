"""How a run ends: the one definition of the outcome names, and the sets the rest of slnn uses.

    from slnn.core.outcomes import Outcome, TRAINED
    Outcome.DIVERGED == "diverged"        # a str enum: it compares equal to the tag's text

The trainer produces the first six; the recorder adds ``failed`` and ``killed`` (an error or an
interruption), ``running`` while a run is open, and a sweep counts cells it left out as
``skipped``. No other module spells an outcome as a string.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    CONVERGED = "converged"  # the validation loss fell below train.target_val_loss
    MAX_EPOCHS = "max_epochs"  # ran every epoch
    EARLY_STOPPED = "early_stopped"  # no new best validation loss for train.patience epochs
    DIVERGED = "diverged"  # the weights or the training loss blew up
    SHAPE_MISMATCH = "shape_mismatch"  # the rule's step cannot be added to W: never trained
    PRUNED = "pruned"  # a search's trial stopped early by its pruner (slnn.sweep.search)
    FAILED = "failed"  # an unexpected error
    KILLED = "killed"  # interrupted (Ctrl-C, SIGTERM, a dead process reaped later)
    RUNNING = "running"  # still open
    SKIPPED = "skipped"  # a sweep cell left out because a matching run had already finished
    UNKNOWN = "unknown"  # a closed run whose outcome was never recorded


# ended with finite trained weights and figures: these runs have a model and an error to report
TRAINED = frozenset({Outcome.CONVERGED, Outcome.MAX_EPOCHS, Outcome.EARLY_STOPPED})
# training ran (so epochs and steps mean something), whether or not the weights stayed finite
RAN = TRAINED | {Outcome.DIVERGED}
# results a study expects: a sweep whose cells all end in one of these exits 0
EXPECTED = RAN | {Outcome.SHAPE_MISMATCH, Outcome.SKIPPED, Outcome.PRUNED}
# the run did not produce a result
FAILED = frozenset({Outcome.FAILED, Outcome.KILLED, Outcome.UNKNOWN})
# the order in which reports list outcomes
ORDER = (Outcome.CONVERGED, Outcome.EARLY_STOPPED, Outcome.MAX_EPOCHS, Outcome.DIVERGED,
         Outcome.SHAPE_MISMATCH, Outcome.PRUNED, Outcome.FAILED, Outcome.KILLED, Outcome.UNKNOWN, Outcome.RUNNING)
