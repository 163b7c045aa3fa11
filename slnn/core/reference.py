"""The plain NumPy reference: one epoch of updates and the evaluation of a set.

Every faster path (``slnn.core.compiled``) is held to these functions by the tests.
"""

from __future__ import annotations

import math

import numpy as np

from slnn.core.activations import Activation
from slnn.core.rules import UpdateRule, input_step


def epoch_numpy(W, x1, t, idx, batch_size, lr, act: Activation, rule: UpdateRule):
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
        step = rule.step(x, net, z, tb, delta)  # rule's direction, W's shape (checked before training)
        grad = input_step(x, net, z, tb, delta)  # the true negative gradient, (d+1, k)
        # update
        W += lr * step
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


def epochs_numpy(W, x1, t, idx, n_epochs, batch_size, lr, sets, act: Activation,
                 rule: UpdateRule, divergence_loss, target_val_loss, patience, best_bad, out):
    """Up to ``n_epochs`` epochs, each its equal share of ``idx``, each followed by the
    evaluation of ``W`` on ``sets`` (three ``(x1, t)`` pairs) and the checks that can end a run;
    what ``slnn.core.compiled.templates._epochs_KERNEL`` computes, on the reference path.

    Epoch ``e``'s figures go to ``out[e]``: (cosine, la, lb, lc, ea, eb, ec, norm, 1.0 if every
    weight is finite else 0.0). ``target_val_loss`` is nan for none, ``patience`` -1 for none;
    ``best_bad`` holds (best validation loss, epochs since it) from one call to the next.
    Returns (epochs run, why the last one ended the run: a ``templates`` code, 0 if none).
    """
    from slnn.core.compiled.templates import (GOES_ON, LOSS_BLEW_UP, NO_PROGRESS, NOT_FINITE,
                                              TARGET_REACHED)

    per = len(idx) // n_epochs
    for e in range(n_epochs):
        cos_sum, cos_count, finite = epoch_numpy(W, x1, t, idx[e * per:(e + 1) * per],
                                                 batch_size, lr, act, rule)
        (la, ea), (lb, eb), (lc, ec) = (evaluate_numpy(W, x, tt, act) for x, tt in sets)
        out[e] = (cos_sum / cos_count if cos_count else math.nan, la, lb, lc, ea, eb, ec,
                  float(np.linalg.norm(W)), float(np.isfinite(W).all()))
        if not finite:
            return e + 1, NOT_FINITE
        if not math.isfinite(la) or la > divergence_loss:
            return e + 1, LOSS_BLEW_UP
        if lb < target_val_loss:  # false for nan: no target
            return e + 1, TARGET_REACHED
        if patience >= 0:
            if lb < best_bad[0]:
                best_bad[0], best_bad[1] = lb, 0.0
            else:
                best_bad[1] += 1.0
                if best_bad[1] >= patience:
                    return e + 1, NO_PROGRESS
    return n_epochs, GOES_ON
