"""Check a user's weight-update rule against the gradient of the loss, numerically.

The rule signature, the data checked and the verdicts are documented in ``slnn.check.checker``;
``slnn.check.loader`` loads a rule from ``FILE.py:FUNCTION``; ``slnn.check.gallery`` holds the
gradient and common mistakes with the same signature; ``slnn.check.custom`` loads and validates
a user's rule for training (``update=custom update.fn=FILE.py:FUNCTION``); ``slnn.check.cli`` is
``slnn-check`` (with ``--compare``, a small study against the gradient).
NumPy only: no Hydra, no MLflow.
"""

from slnn.check.checker import ActivationResult, check_rule
from slnn.check.loader import RuleLoadError, digest, load_rule

__all__ = ["ActivationResult", "RuleLoadError", "check_rule", "digest", "load_rule"]
