"""The compiled training loops, as templates: plain Python that Numba compiles.

These functions are not called as they are. ``slnn.core.compiled.codegen`` copies their source
into a small module generated per (activation, rule) pair, next to module-level globals ``f``,
``df`` (the activation and its derivative), ``rule_fast`` (the rule's one-sample form),
``grad_fast`` (the gradient's one-sample form, for the cosine) and ``SAME_RULE`` (the rule is the
gradient). Numba treats those globals as compile-time constants, so their calls are inlined.
They compute exactly what ``slnn.core.reference`` computes; the tests hold them to it.
"""

import math

import numpy as np


def _evaluate_loop(W, x1, t):
    n, n_in = x1.shape
    k = W.shape[1]
    if n == 0:
        return math.nan, math.nan
    net = np.empty(k)
    WT = np.ascontiguousarray(W.T)  # (k, d+1): each output's weights contiguous, like x's row
    sq = 0.0
    wrong = 0
    for r in range(n):
        # forward: net_j = x . W[:, j], two contiguous rows: a reduction LLVM can vectorize
        for j in range(k):
            acc = 0.0
            for i in range(n_in):
                acc += x1[r, i] * WT[j, i]
            net[j] = acc
        best_z = 0.0
        best_j = 0
        target_j = 0
        for j in range(k):
            zj = f(net[j])  # noqa: F821 (a global of the generated module)
            d = t[r, j] - zj
            sq += d * d
            # the first maximum, or the first nan, as np.argmax takes
            if j == 0 or zj > best_z or (zj != zj and best_z == best_z):
                best_z = zj
                best_j = j
            if t[r, j] > t[r, target_j]:
                target_j = j
        if best_j != target_j:
            wrong += 1
    return sq / (n * k), wrong / n


def _evaluate_all(W, x_a, t_a, x_b, t_b, x_c, t_c):
    la, ea = _evaluate_loop(W, x_a, t_a)
    lb, eb = _evaluate_loop(W, x_b, t_b)
    lc, ec = _evaluate_loop(W, x_c, t_c)
    sq = 0.0
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            sq += W[i, j] * W[i, j]
    return la, lb, lc, ea, eb, ec, math.sqrt(sq)


def _epoch_loop(W, x1, t, idx, batch_size, eta):
    n_in, k = W.shape
    n_updates = len(idx) // batch_size
    net = np.empty(k)
    z = np.empty(k)
    delta = np.empty(k)
    step = np.zeros(W.shape)
    grad = np.zeros(W.shape)
    cos_sum = 0.0
    cos_count = 0
    for u in range(n_updates):
        if not (SAME_RULE and batch_size == 1):  # noqa: F821
            step[:, :] = 0.0
            grad[:, :] = 0.0
        any_delta = False
        for s in range(batch_size):
            row = idx[u * batch_size + s]
            x = x1[row]
            # forward: net = x @ W, walking W row by row (contiguous), (d+1,) @ (d+1, k) -> (k,)
            net[:] = 0.0
            for i in range(n_in):
                xi = x[i]
                for j in range(k):
                    net[j] += xi * W[i, j]
            for j in range(k):
                z[j] = f(net[j])  # noqa: F821
                # error, backward: delta_j = (t_j - z_j) * f'(net_j)
                delta[j] = (t[row, j] - z[j]) * df(net[j])  # noqa: F821
                any_delta = any_delta or delta[j] != 0.0
            if SAME_RULE and batch_size == 1:  # noqa: F821
                # online gradient rule, fused: W += eta * (x outer delta); its cosine with the
                # gradient is 1 by construction wherever the step is not zero
                total = 0.0
                for i in range(n_in):
                    xi = x[i]
                    for j in range(k):
                        W[i, j] += eta * (xi * delta[j])
                        total += W[i, j]
                if any_delta:
                    cos_sum += 1.0
                    cos_count += 1
                if not math.isfinite(total):  # a non-finite weight makes the sum non-finite
                    return cos_sum, cos_count, False
                continue
            rule_fast(step, x, net, z, t[row], delta)  # noqa: F821
            if not SAME_RULE:  # noqa: F821
                grad_fast(grad, x, net, z, t[row], delta)  # noqa: F821
        if SAME_RULE and batch_size == 1:  # noqa: F821
            continue
        # update: W += eta * (mean step), and the cosine of that step with the true gradient
        ns = 0.0
        ng = 0.0
        dot = 0.0
        total = 0.0
        for i in range(n_in):
            for j in range(k):
                st = step[i, j] / batch_size
                gr = st if SAME_RULE else grad[i, j] / batch_size  # noqa: F821
                W[i, j] += eta * st
                total += W[i, j]
                ns += st * st
                ng += gr * gr
                dot += st * gr
        if ns > 0.0 and ng > 0.0:
            cos_sum += dot / (math.sqrt(ns) * math.sqrt(ng))
            cos_count += 1
        if not math.isfinite(total):
            return cos_sum, cos_count, False
    return cos_sum, cos_count, True
