"""Training epochs: the plain NumPy reference and its compiled twin.

Both run the same online/mini-batch loop over a given stream of sample indices and return the
sum and count of the per-update cosines between the applied step and the true negative gradient.
``epoch_numpy`` is the reference; ``epoch_compiled`` is the same loop compiled by Numba, with the
activation and rule jit-compiled from their NumPy source in ``slnn.activations`` / ``slnn.rules``.
Tests hold the compiled path to the reference.
"""

from __future__ import annotations

import math

import numpy as np

from slnn.activations import Activation
from slnn.rules import UpdateRule, input_step


def epoch_numpy(W, x1, t, idx, batch_size, eta, act: Activation, rule: UpdateRule):
    """One epoch of updates on the NumPy reference path. ``W`` is updated in place.

    Parameters
    ----------
    W : ndarray of shape (n_features + 1, n_outputs)
    x1 : ndarray of shape (n_samples, n_features + 1), inputs with the bias column last
    t : ndarray of shape (n_samples, n_outputs), one-hot targets
    idx : int ndarray of shape (n_updates * batch_size,), the samples each update uses, in order

    Returns
    -------
    (cos_sum, cos_count, finite): cosines summed over updates where both steps are non-zero,
    and False if the weights stopped being finite (the epoch is cut short there).
    """
    cos_sum, cos_count = 0.0, 0
    for start in range(0, len(idx), batch_size):
        b = idx[start : start + batch_size]
        x, tb = x1[b], t[b]  # (n, d+1), (n, k)
        # forward
        net = x @ W  # (n, d+1) @ (d+1, k) -> (n, k)
        z = act.f(net)  # (n, k)
        # error
        err = tb - z  # (n, k)
        # backward
        delta = err * act.df(net)  # (n, k) * (n, k) -> (n, k)
        step = rule.step(x, z, delta)  # rule's direction, W's shape (checked before training)
        grad = input_step(x, z, delta)  # the true negative gradient, (d+1, k)
        # update
        W += eta * step
        ns, ng = np.linalg.norm(step), np.linalg.norm(grad)
        if ns > 0.0 and ng > 0.0:
            cos_sum += float(np.sum(step * grad) / (ns * ng))
            cos_count += 1
        if not np.isfinite(W).all():
            return cos_sum, cos_count, False
    return cos_sum, cos_count, True


def evaluate_numpy(W, x1, t, act: Activation):
    """Loss (the guide's regression error) and classification error rate of ``W`` on a set.

    The loss is the mean of ``(t - z)^2`` over samples and outputs; the error is the fraction of
    samples whose largest output is not the target class. An empty set gives ``(nan, nan)``.
    """
    if x1.shape[0] == 0:
        return math.nan, math.nan
    z = act.f(x1 @ W)  # (n, d+1) @ (d+1, k) -> (n, k)
    loss = float(np.mean((t - z) ** 2))
    error = float(np.mean(np.argmax(z, axis=1) != np.argmax(t, axis=1)))
    return loss, error


_compiled: dict = {}


def _evaluate_loop(W, x1, t, f):
    n, n_in = x1.shape
    k = W.shape[1]
    if n == 0:
        return math.nan, math.nan
    sq = 0.0
    wrong = 0
    for r in range(n):
        best_z = -math.inf
        best_j = 0
        target_j = 0
        for j in range(k):
            acc = 0.0
            for i in range(n_in):
                acc += x1[r, i] * W[i, j]
            zj = f(acc)
            d = t[r, j] - zj
            sq += d * d
            # argmax takes the first maximum, as np.argmax does
            if zj > best_z or (j == 0):
                best_z = zj
                best_j = j
            if t[r, j] > t[r, target_j]:
                target_j = j
        if best_j != target_j:
            wrong += 1
    return sq / (n * k), wrong / n


def _epoch_loop(W, x1, t, idx, batch_size, eta, f, df, rule_fast, grad_fast, same_rule):
    n_in, k = W.shape
    n_updates = len(idx) // batch_size
    z = np.empty(k)
    delta = np.empty(k)
    step = np.zeros(W.shape)
    grad = np.zeros(W.shape)
    cos_sum = 0.0
    cos_count = 0
    for u in range(n_updates):
        step[:, :] = 0.0
        grad[:, :] = 0.0
        for s in range(batch_size):
            row = idx[u * batch_size + s]
            x = x1[row]
            for j in range(k):
                # forward: net_j = x @ W[:, j], (d+1,) . (d+1,) -> scalar
                acc = 0.0
                for i in range(n_in):
                    acc += x[i] * W[i, j]
                z[j] = f(acc)
                # error, backward: delta_j = (t_j - z_j) * f'(net_j)
                delta[j] = (t[row, j] - z[j]) * df(acc)
            rule_fast(step, x, z, delta)
            if not same_rule:
                grad_fast(grad, x, z, delta)
        # update: W += eta * (mean step), and the cosine of that step with the true gradient
        ns = 0.0
        ng = 0.0
        dot = 0.0
        finite = True
        for i in range(n_in):
            for j in range(k):
                st = step[i, j] / batch_size
                gr = st if same_rule else grad[i, j] / batch_size
                W[i, j] += eta * st
                ns += st * st
                ng += gr * gr
                dot += st * gr
                if not math.isfinite(W[i, j]):
                    finite = False
        if ns > 0.0 and ng > 0.0:
            cos_sum += dot / (math.sqrt(ns) * math.sqrt(ng))
            cos_count += 1
        if not finite:
            return cos_sum, cos_count, False
    return cos_sum, cos_count, True


def _build_compiled(act: Activation, rule: UpdateRule):
    import numba as nb  # imported lazily so the NumPy path compiles nothing

    from slnn.rules import input_fast

    loop, evaluate = nb.njit(nogil=True)(_epoch_loop), nb.njit(nogil=True)(_evaluate_loop)
    f, df = nb.njit(act.f), nb.njit(act.df)
    rule_fast, grad_fast = nb.njit(rule.fast), nb.njit(input_fast)
    same = rule.fast is input_fast

    # closures over the jitted functions make them compile-time constants: calls are cheap
    # (a dispatcher passed as an argument costs ~150 us of type inference per call)
    @nb.njit(nogil=True)
    def epoch(W, x1, t, idx, batch_size, eta):
        return loop(W, x1, t, idx, batch_size, eta, f, df, rule_fast, grad_fast, same)

    @nb.njit(nogil=True)
    def ev(W, x1, t):
        return evaluate(W, x1, t, f)

    return epoch, ev


class Backend:
    """The epoch and evaluation functions of one (activation, rule) pair on one path."""

    def __init__(self, act: Activation, rule: UpdateRule, compiled: bool):
        self.act, self.rule, self.compiled = act, rule, compiled
        if compiled:
            key = (act.name, act.f, act.df, rule.name, rule.fast)
            if key not in _compiled:
                _compiled[key] = _build_compiled(act, rule)
            self._epoch, self._evaluate = _compiled[key]

    def epoch(self, W, x1, t, idx, batch_size, eta):
        if self.compiled:
            return self._epoch(W, x1, t, idx, batch_size, float(eta))
        return epoch_numpy(W, x1, t, idx, batch_size, eta, self.act, self.rule)

    def evaluate(self, W, x1, t):
        if self.compiled:
            return self._evaluate(W, x1, t)
        return evaluate_numpy(W, x1, t, self.act)
