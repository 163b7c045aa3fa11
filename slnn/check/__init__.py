"""Check a user's weight-update rule against the gradient of the loss, numerically (NumPy
only): ``checker`` holds the check and its verdicts, ``gallery`` the gradient and common mistakes.
The command line is ``slnn.app.check_cli`` (``slnn-check``)."""

from slnn.check.checker import ActivationResult, check_rule
from slnn.core.rulefile import RuleLoadError, digest, load_rule

__all__ = ["ActivationResult", "RuleLoadError", "check_rule", "digest", "load_rule"]
