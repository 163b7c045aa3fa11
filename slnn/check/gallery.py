"""A gallery of update rules: the gradient and the mistakes people plausibly make instead.

Every rule has the user signature of ``slnn.check`` (see ``slnn.check.checker``)::

    def step(x, net, z, t, delta):   # x (n, d+1) with the bias column last; net, z, t, delta (n, k)
        ...                          # -> a step the trainer adds as W += eta * step

and a shape function ``<name>_shape(n_in, n_out)`` giving the step's shape for ``W`` of shape
``(n_in, n_out)`` (``n_in = d + 1``), so a trainer can reject a misfit before training starts.
In their docstrings (``slnn.core.rules``), ``n`` is the batch size, ``d`` the number of features,
``k`` the number of outputs and ``delta = (t - z) * f'(net)``. ``GALLERY`` maps each name to a
``GalleryRule`` (the registry's ``UpdateRule``).

The gallery only states what each rule computes; ``slnn-check --builtin NAME`` measures it.
Each rule is defined once, in ``slnn.core.rules``, where it is also a trainable rule
(``update=<name>``): the gallery is those rules under their short names.
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

NAMES = ("input", "kronecker", "no_derivative", "ascent", "outer_transposed", "sum_not_mean",
         "sigmoid_shortcut", "no_bias")
GALLERY: dict[str, GalleryRule] = {name: UPDATE_RULES[name] for name in NAMES}

__all__ = ["GALLERY", "GalleryRule", "ascent", "get_gallery_rule", "input", "kronecker", "no_bias",
           "no_derivative", "outer_transposed", "sigmoid_shortcut", "sum_not_mean"]


def get_gallery_rule(name: str) -> GalleryRule:
    """Look up a gallery rule by name; an unknown name lists the valid ones."""
    try:
        return GALLERY[name]
    except KeyError:
        raise ValueError(f"unknown gallery rule {name!r}: choose one of {sorted(GALLERY)}") from None
