"""The epoch and evaluation functions of one (activation, rule) pair, on the NumPy reference path
or compiled by Numba; ``slnn.core.trainer`` calls only this."""

from __future__ import annotations

import numpy as np

from slnn.core.activations import Activation
from slnn.core.reference import epoch_numpy, evaluate_numpy
from slnn.core.rules import UpdateRule

_compiled: dict = {}


class Backend:
    """The epoch and evaluation functions of one (activation, rule) pair on one path."""

    def __init__(self, act: Activation, rule: UpdateRule, compiled: bool):
        self.act, self.rule, self.compiled = act, rule, compiled
        if compiled:
            key = (act.name, act.f, act.df, rule.name, rule.fast)
            if key not in _compiled:
                from slnn.core.compiled.codegen import build  # numba only when compiling

                _compiled[key] = build(act, rule)
            self._epoch, self._evaluate, self._evaluate_all = _compiled[key]

    def epoch(self, W, x1, t, idx, batch_size, eta):
        if self.compiled:
            return self._epoch(W, x1, t, idx, batch_size, float(eta))
        return epoch_numpy(W, x1, t, idx, batch_size, eta, self.act, self.rule)

    def evaluate(self, W, x1, t):
        """Loss and classification error of ``W`` on one set."""
        if self.compiled:
            return self._evaluate(W, x1, t)
        return evaluate_numpy(W, x1, t, self.act)

    def evaluate_all(self, W, x_a, t_a, x_b, t_b, x_c, t_c):
        """Loss and error on three sets, and ``||W||``: ``(la, lb, lc, ea, eb, ec, norm)``."""
        if self.compiled:
            return self._evaluate_all(W, x_a, t_a, x_b, t_b, x_c, t_c)
        (la, ea), (lb, eb), (lc, ec) = (evaluate_numpy(W, x, t, self.act)
                                        for x, t in ((x_a, t_a), (x_b, t_b), (x_c, t_c)))
        return la, lb, lc, ea, eb, ec, float(np.linalg.norm(W))
