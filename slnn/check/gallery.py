"""The rules ``slnn-check --builtin NAME`` checks: the gradient and the plausible mistakes.

``GALLERY`` is every rule of the registry (``slnn.core.rules.UPDATE_RULES``, where each is defined
once and is also trainable as ``update=<name>``), so a rule registered there can be checked here
too; the short names below (``kronecker``, ``no_bias``, ...) are their ``step`` functions.
"""

from __future__ import annotations

from slnn.core.rules import UPDATE_RULES
from slnn.core.rules import UpdateRule as GalleryRule  # name, step, step_shape (and more)
from slnn.core.rules import ascent_step as ascent
from slnn.core.rules import input_shape, kronecker_shape, no_bias_shape, outer_transposed_shape  # noqa: F401
from slnn.core.rules import input_step as input  # noqa: A001 - the name users type: update=input
from slnn.core.rules import kronecker_step as kronecker
from slnn.core.rules import no_bias_step as no_bias
from slnn.core.rules import no_derivative_step as no_derivative
from slnn.core.rules import outer_transposed_step as outer_transposed
from slnn.core.rules import sigmoid_shortcut_step as sigmoid_shortcut
from slnn.core.rules import sum_not_mean_step as sum_not_mean

# every registered rule, in the registry's order: a rule added there is checkable here too
GALLERY: dict[str, GalleryRule] = dict(UPDATE_RULES)

__all__ = ["GALLERY", "GalleryRule", "ascent", "get_gallery_rule", "input", "kronecker", "no_bias",
           "no_derivative", "outer_transposed", "sigmoid_shortcut", "sum_not_mean"]


def get_gallery_rule(name: str) -> GalleryRule:
    """Look up a gallery rule by name; an unknown name lists the valid ones."""
    try:
        return GALLERY[name]
    except KeyError:
        raise ValueError(f"unknown gallery rule {name!r}: choose one of {sorted(GALLERY)}") from None
