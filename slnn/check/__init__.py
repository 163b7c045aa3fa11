"""Check a user's weight-update rule against the gradient of the loss, numerically.

The rule signature, the data checked and the verdicts are documented in ``slnn.check.checker``;
``slnn.check.gallery`` holds the gradient and common mistakes with the same signature.
NumPy only: no Hydra, no MLflow.
"""

from slnn.check.checker import ActivationResult, check_rule

__all__ = ["ActivationResult", "check_rule"]
