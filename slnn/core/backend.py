"""The epoch and evaluation functions of one (activation, rule) pair, on the NumPy reference path
or compiled by Numba; ``slnn.core.trainer`` calls only this."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from slnn.core.activations import Activation
from slnn.core.reference import epoch_numpy, epochs_numpy, evaluate_numpy
from slnn.core.rules import UpdateRule

_compiled: dict = {}
_NO_UPDATES = np.empty(0, dtype=np.int64)


class Stops(NamedTuple):
    """The checks that can end a run after an epoch (nan / -1: none)."""

    divergence_loss: float
    target_val_loss: float
    patience: int


class Backend:
    """The epoch and evaluation functions of one (activation, rule) pair on one path.

    On the compiled path every method calls one compiled function of the generated module
    (``codegen.Kernels``): the online one when the rule is the gradient rule and ``batch_size``
    is 1, else the batch one. ``epochs`` runs a chunk of epochs, checks included, in one call
    (``train`` uses only it, its epoch 0 too, so that a run compiles one entry point);
    ``epoch``, ``epoch_evaluate``, ``evaluate`` and ``evaluate_all`` run one epoch or none
    (the tests and the benchmarks hold them to the reference one at a time).
    """

    def __init__(self, act: Activation, rule: UpdateRule, compiled: bool):
        from slnn.core.rules import input_fast

        self.act, self.rule, self.compiled = act, rule, compiled
        if compiled:
            key = (act.name, act.f, act.df, rule.name, rule.fast)
            if key not in _compiled:
                from slnn.core.compiled.codegen import build  # numba only when compiling

                _compiled[key] = build(act, rule)
            kernels = _compiled[key]
            self._batch, self._batch_epochs = kernels.batch, kernels.batch_epochs
            gradient = rule.fast is input_fast  # the online kernels are the input rule's alone
            self._online = kernels.online if gradient else None
            self._online_epochs = kernels.online_epochs if gradient else None
            self._evaluator = self._online or self._batch

    def _kernel(self, batch_size):
        return self._online if batch_size == 1 and self._online is not None else self._batch

    def epochs(self, W, sets, idx, n_epochs, batch_size, lr, stops: Stops, best_bad, out):
        """Up to ``n_epochs`` epochs of ``epoch_evaluate`` on ``sets`` (``((x, t)`` of the
        training, validation and test splits``)``), each on its equal share of ``idx``, with the
        ``stops`` checked after each (``reference.epochs_numpy`` says what is computed): one
        compiled call on the compiled path. ``(epochs run, why it ended)``."""
        if self.compiled:
            online = batch_size == 1 and self._online_epochs is not None
            run = self._online_epochs if online else self._batch_epochs
            (x_a, t_a), (x_b, t_b), (x_c, t_c) = sets
            return run(W, x_a, t_a, idx, n_epochs, batch_size, float(lr), x_a, t_a, x_b, t_b,
                       x_c, t_c, float(stops.divergence_loss), float(stops.target_val_loss),
                       int(stops.patience), best_bad, out)
        return epochs_numpy(W, sets[0][0], sets[0][1], idx, n_epochs, batch_size, lr, sets,
                            self.act, self.rule, *stops, best_bad, out)

    def epoch(self, W, x1, t, idx, batch_size, lr):
        """One epoch of updates, ``W`` in place: ``(cos_sum, cos_count, finite)``."""
        if self.compiled:
            x0, t0 = x1[:0], t[:0]  # nothing to evaluate
            return self._kernel(batch_size)(W, x1, t, idx, batch_size, float(lr),
                                            x0, t0, x0, t0, x0, t0)[0]
        return epoch_numpy(W, x1, t, idx, batch_size, lr, self.act, self.rule)

    def epoch_evaluate(self, W, x_a, t_a, idx, batch_size, lr, x_b, t_b, x_c, t_c):
        """``epoch`` on set a, then ``evaluate_all`` on sets a, b, c, in one call on the
        compiled path: ``((cos_sum, cos_count, finite), (la, lb, lc, ea, eb, ec, norm))``."""
        if self.compiled:
            return self._kernel(batch_size)(W, x_a, t_a, idx, batch_size, float(lr),
                                            x_a, t_a, x_b, t_b, x_c, t_c)
        out = epoch_numpy(W, x_a, t_a, idx, batch_size, lr, self.act, self.rule)
        return out, self.evaluate_all(W, x_a, t_a, x_b, t_b, x_c, t_c)

    def evaluate(self, W, x1, t):
        """Loss and classification error of ``W`` on one set."""
        if self.compiled:
            x0, t0 = x1[:0], t[:0]
            figures = self._evaluator(W, x1, t, _NO_UPDATES, 1, 0.0, x1, t, x0, t0, x0, t0)[1]
            return figures[0], figures[3]
        return evaluate_numpy(W, x1, t, self.act)

    def evaluate_all(self, W, x_a, t_a, x_b, t_b, x_c, t_c):
        """Loss and error on three sets, and ``||W||``: ``(la, lb, lc, ea, eb, ec, norm)``."""
        if self.compiled:
            return self._evaluator(W, x_a, t_a, _NO_UPDATES, 1, 0.0, x_a, t_a, x_b, t_b, x_c,
                                   t_c)[1]
        (la, ea), (lb, eb), (lc, ec) = (evaluate_numpy(W, x, t, self.act)
                                        for x, t in ((x_a, t_a), (x_b, t_b), (x_c, t_c)))
        return la, lb, lc, ea, eb, ec, float(np.linalg.norm(W))
