"""The compiled training loops, as templates: plain Python that Numba compiles.

These functions are not called as they are: ``slnn.core.compiled.codegen`` copies their source
into a module generated per (activation, rule) pair, beside the globals they call (``f``, ``df``,
``fdf``, ``rule_fast``, ``grad_fast``, ``SAME_RULE``; docs/development.md, "The compiled path"),
which Numba inlines as constants. They compute what ``slnn.core.reference`` computes, to a
relative 1e-12, and each is bit-reproducible with itself."""

import math

import numpy as np

# The loops below are templates: their source is copied into a small generated module per
# (activation, rule) pair, next to module-level globals ``f``, ``df``, ``fdf``, ``rule_fast``,
# ``grad_fast`` and ``SAME_RULE``. Numba then treats those as compile-time constants (calls are
# inlined and cheap) and can cache the machine code on disk, so a sweep's workers compile each
# pair once per machine instead of several seconds per pair per process. There are two entry
# points, ``_online_kernel`` (the gradient rule, one sample per update: every default run) and
# ``_batch_kernel`` (any rule, any batch size); Numba compiles each on its first call only.
#
# Speed. The loops work on ``WT = W.T`` (k, d+1), so that each output's weights are one
# contiguous row, like a sample's ``x``: the forward pass is k dot products and the rank-1 update
# k axpys, all over contiguous rows. They are compiled with ``fastmath={"reassoc", "contract"}``
# (not nnan/ninf: nan and inf still propagate and compare as IEEE says), which lets LLVM split
# each sum into independent SIMD partial sums and fuse multiply-adds. The results then differ
# from the NumPy reference in the last bits (the tests hold them to rtol 1e-12), but the
# summation order is fixed by the shapes, so each backend is bit-reproducible with itself. The
# activation's own arithmetic is compiled with fastmath=False, said explicitly (LLVM inlines it,
# each instruction keeping its own flags).
# ``f`` and ``fdf`` (f and f' from one evaluation) are called in loops over a row of outputs
# that hold nothing else, no branch and no early exit: where the activation is plain arithmetic
# (the sigmoid, whose compiled form uses ``fastexp.exp``) LLVM computes four outputs at a time;
# where it calls the C library (tanh) the loop stays scalar. All of it is compiled with
# ``error_model="numpy"``: no division check, which would also keep a loop scalar.
# Arrays are indexed as x1[r, i], not through row views, which would cost reference counting.

def _forward(WT, x1, r, net):
    # net_j = x1[r] . WT[j] for each output j: (d+1,) . (d+1,) -> scalar, contiguous rows
    for j in range(WT.shape[0]):
        acc = 0.0
        for i in range(WT.shape[1]):
            acc += x1[r, i] * WT[j, i]
        net[j] = acc


def _forward_two(WT, x1, ra, rb, net2):
    # net2[0] = x1[ra] @ W and net2[1] = x1[rb] @ W, four outputs at a time: each loaded piece
    # of x and of W is used several times and eight sums run side by side
    k, n_in = WT.shape
    j = 0
    while j + 4 <= k:
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        b0 = 0.0
        b1 = 0.0
        b2 = 0.0
        b3 = 0.0
        for i in range(n_in):
            xa = x1[ra, i]
            xb = x1[rb, i]
            w0 = WT[j, i]
            w1 = WT[j + 1, i]
            w2 = WT[j + 2, i]
            w3 = WT[j + 3, i]
            a0 += xa * w0
            a1 += xa * w1
            a2 += xa * w2
            a3 += xa * w3
            b0 += xb * w0
            b1 += xb * w1
            b2 += xb * w2
            b3 += xb * w3
        net2[0, j] = a0
        net2[0, j + 1] = a1
        net2[0, j + 2] = a2
        net2[0, j + 3] = a3
        net2[1, j] = b0
        net2[1, j + 1] = b1
        net2[1, j + 2] = b2
        net2[1, j + 3] = b3
        j += 4
    while j < k:
        a0 = 0.0
        b0 = 0.0
        for i in range(n_in):
            a0 += x1[ra, i] * WT[j, i]
            b0 += x1[rb, i] * WT[j, i]
        net2[0, j] = a0
        net2[1, j] = b0
        j += 1


def _evaluate_loop(WT, x1, t):
    # loss (mean (t - z)^2) and classification error of the weights WT.T on one set
    n = x1.shape[0]
    k = WT.shape[0]
    if n == 0:
        return math.nan, math.nan
    net2 = np.empty((2, k))
    z2 = np.empty((2, k))
    net2f = net2.reshape(2 * k)  # views of the same memory
    z2f = z2.reshape(2 * k)
    sq = 0.0
    wrong = 0
    for p in range((n + 1) // 2):
        # forward, two rows at a time (the last one twice if n is odd)
        r = 2 * p
        _forward_two(WT, x1, r, min(r + 1, n - 1), net2)
        # the outputs of both rows in a loop of their own, with nothing else in it: where f is
        # plain arithmetic (the sigmoid's fastexp) LLVM computes four at a time
        for s in range(2 * k):  # both rows as one row of 2k outputs
            z2f[s] = f(net2f[s])  # noqa: F821 (a global of the generated module)
        for s in range(min(2, n - r)):
            # the target: the first maximum of t's row
            target_j = 0
            best_t = t[r + s, 0]
            for j in range(1, k):
                tj = t[r + s, j]
                if tj > best_t:
                    best_t = tj
                    target_j = j
            # wrong unless z's first maximum, or its first nan (as np.argmax takes), is at the
            # target: count the outputs that would come before it, with no branch per output
            zt = z2[s, target_j]
            ahead = 0
            for j in range(k):
                zj = z2[s, j]
                d = t[r + s, j] - zj
                sq += d * d
                before = j < target_j
                ahead += (zj > zt) | ((zj == zt) & before) | ((zj != zj) & ((zt == zt) | before))
            if ahead > 0:
                wrong += 1
    return sq / (n * k), wrong / n


def _transposed(W):
    # W.T as a new C-contiguous (k, d+1) array: each output's weights contiguous, like x's row
    n_in, k = W.shape
    WT = np.empty((k, n_in))
    for i in range(n_in):
        for j in range(k):
            WT[j, i] = W[i, j]
    return WT


def _store_and_evaluate(W, WT, x_a, t_a, x_b, t_b, x_c, t_c):
    # W = WT.T, then the loss and error of those weights on three sets, and their norm
    n_in, k = W.shape
    for i in range(n_in):
        for j in range(k):
            W[i, j] = WT[j, i]
    la, ea = _evaluate_loop(WT, x_a, t_a)
    lb, eb = _evaluate_loop(WT, x_b, t_b)
    lc, ec = _evaluate_loop(WT, x_c, t_c)
    sq = 0.0
    for j in range(k):
        for i in range(n_in):
            sq += WT[j, i] * WT[j, i]
    return la, lb, lc, ea, eb, ec, math.sqrt(sq)


def _online_kernel(W, x1, t, idx, batch_size, lr, x_a, t_a, x_b, t_b, x_c, t_c):
    # An epoch of the online gradient rule (batch_size is 1), then the evaluation of the new W
    # on sets a, b, c: ((cos_sum, cos_count, finite), (la, lb, lc, ea, eb, ec, norm)). The update
    # W += lr * (x outer delta) is fused: its cosine with the gradient is 1 by construction
    # wherever the step is not zero.
    WT = _transposed(W)
    k, n_in = WT.shape
    n_updates = len(idx)
    net = np.empty(k)
    delta = np.empty(k)
    cos_sum = 0.0
    cos_count = 0
    finite = True
    if n_updates > 0:
        _forward(WT, x1, idx[0], net)
    for u in range(n_updates):
        row = idx[u]
        # error, backward: delta_j = (t_j - z_j) * f'(net_j), in a loop without branches so that
        # LLVM can vectorize it (see _evaluate_loop); |delta| sums to 0 only if every delta is 0
        # (nan: not 0)
        size = 0.0
        for j in range(k):
            zj, dzj = fdf(net[j])  # noqa: F821
            dj = (t[row, j] - zj) * dzj
            delta[j] = dj
            size += abs(dj)
        if size != 0.0:
            cos_sum += 1.0
            cos_count += 1
        # update: WT[j] += lr (x delta_j), one axpy per row of WT (written as the reference
        # writes it; reassociation lets LLVM hoist lr delta_j out of the loop), fused with the
        # next sample's forward pass net_j = x_next . WT[j] on the new weights (this sample's
        # again after the last): one pass over W, not two
        nxt = idx[u + 1] if u + 1 < n_updates else row
        for j in range(k):
            dj = delta[j]
            acc = 0.0
            for i in range(n_in):
                w = WT[j, i] + lr * (x1[row, i] * dj)
                WT[j, i] = w
                acc += x1[nxt, i] * w
            net[j] = acc
        # divergence: a non-finite weight in WT[j] makes net_j inf or nan (x * inf is inf, or
        # nan for x = 0), so a finite net proves the weights finite. A non-finite net (a huge
        # finite W, a nan in x) is settled by W itself. v * 0 is 0 for a finite v and nan for
        # inf or nan, so these sums are 0 exactly when all their terms are finite.
        bad = 0.0
        for j in range(k):
            bad += net[j] * 0.0
        if bad != 0.0:
            bad = 0.0
            for j in range(k):
                for i in range(n_in):
                    bad += WT[j, i] * 0.0
            if bad != 0.0:  # the epoch ends at the update that made a weight non-finite
                finite = False
                break
    return (cos_sum, cos_count, finite), _store_and_evaluate(W, WT, x_a, t_a, x_b, t_b, x_c, t_c)


def _batch_kernel(W, x1, t, idx, batch_size, lr, x_a, t_a, x_b, t_b, x_c, t_c):
    # An epoch of any rule, any batch size, then the evaluation as in _online_kernel. The rule's
    # step (and the gradient, for the cosine) is accumulated over the batch in W's layout, as
    # the rule's fast form writes it, then added to WT.
    WT = _transposed(W)
    k, n_in = WT.shape
    n_updates = len(idx) // batch_size
    net = np.empty(k)
    z = np.empty(k)
    delta = np.empty(k)
    step = np.zeros((n_in, k))
    grad = np.zeros((n_in, k))
    cos_sum = 0.0
    cos_count = 0
    finite = True
    for u in range(n_updates):
        for s in range(batch_size):
            row = idx[u * batch_size + s]
            _forward(WT, x1, row, net)
            for j in range(k):
                zj, dzj = fdf(net[j])  # noqa: F821
                z[j] = zj
                # error, backward: delta_j = (t_j - z_j) * f'(net_j)
                delta[j] = (t[row, j] - zj) * dzj
            x = x1[row]
            rule_fast(step, x, net, z, t[row], delta)  # noqa: F821
            if not SAME_RULE:  # noqa: F821
                grad_fast(grad, x, net, z, t[row], delta)  # noqa: F821
        # update: W += lr * (mean step), and the cosine of that step with the true gradient;
        # the accumulators are zeroed for the next batch as they are read
        ns = 0.0
        ng = 0.0
        dot = 0.0
        bad = 0.0
        for j in range(k):
            for i in range(n_in):
                st = step[i, j] / batch_size
                step[i, j] = 0.0
                gr = st
                if not SAME_RULE:  # noqa: F821
                    gr = grad[i, j] / batch_size
                    grad[i, j] = 0.0
                w = WT[j, i] + lr * st
                WT[j, i] = w
                bad += w * 0.0  # 0 while every weight is finite, nan once one is not
                ns += st * st
                ng += gr * gr
                dot += st * gr
        if ns > 0.0 and ng > 0.0:
            cos_sum += dot / (math.sqrt(ns) * math.sqrt(ng))
            cos_count += 1
        if bad != 0.0:
            finite = False
            break
    return (cos_sum, cos_count, finite), _store_and_evaluate(W, WT, x_a, t_a, x_b, t_b, x_c, t_c)


# How an epoch can end a run, as ``_epochs_KERNEL`` returns it (``slnn.core.trainer`` words it)
GOES_ON, NOT_FINITE, LOSS_BLEW_UP, TARGET_REACHED, NO_PROGRESS = 0, 1, 2, 3, 4


def _epochs_KERNEL(W, x1, t, idx, n_epochs, batch_size, lr, x_a, t_a, x_b, t_b, x_c, t_c,
                   divergence_loss, target_val_loss, patience, best_bad, out):
    # Up to n_epochs epochs, each its share of idx through KERNEL (codegen makes one copy of
    # this function per kernel: _online_epochs, _batch_epochs) and then the evaluation, with the
    # checks slnn.core.trainer.train makes after each epoch, so that Python runs once per chunk
    # of epochs instead of once per epoch. Epoch e's figures go to out[e]: (cosine, la, lb, lc,
    # ea, eb, ec, norm, 1.0 if every weight is finite else 0.0). target_val_loss is nan for none
    # and patience -1 for none; best_bad holds (best validation loss, epochs since it), carried
    # from one chunk to the next. Returns (epochs run, why the last one ended the run or 0).
    per = len(idx) // n_epochs
    n_in, k = W.shape
    for e in range(n_epochs):
        (cos_sum, cos_count, finite), fig = _KERNEL(  # noqa: F821 (the copy's kernel)
            W, x1, t, idx[e * per:(e + 1) * per], batch_size, lr, x_a, t_a, x_b, t_b, x_c, t_c)
        out[e, 0] = cos_sum / cos_count if cos_count > 0 else math.nan
        for c in range(7):
            out[e, 1 + c] = fig[c]
        bad = 0.0
        for i in range(n_in):
            for j in range(k):
                bad += W[i, j] * 0.0  # 0 while every weight is finite, nan once one is not
        out[e, 8] = 1.0 if bad == 0.0 else 0.0
        if not finite:
            return e + 1, NOT_FINITE
        train_loss = fig[0]
        if not (abs(train_loss) < math.inf) or train_loss > divergence_loss:
            return e + 1, LOSS_BLEW_UP
        val_loss = fig[1]
        if val_loss < target_val_loss:  # false for nan: no target
            return e + 1, TARGET_REACHED
        if patience >= 0:
            if val_loss < best_bad[0]:
                best_bad[0] = val_loss
                best_bad[1] = 0.0
            else:
                best_bad[1] += 1.0
                if best_bad[1] >= patience:
                    return e + 1, NO_PROGRESS
    return n_epochs, GOES_ON


_LOOPS = (_forward, _forward_two, _evaluate_loop, _transposed, _store_and_evaluate,
          _online_kernel, _batch_kernel)
# _epochs_KERNEL's copies: (name, kernel it calls)
_EPOCHS = (("_online_epochs", "_online_kernel"), ("_batch_epochs", "_batch_kernel"))
