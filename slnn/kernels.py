"""Training epochs: the plain NumPy reference and its compiled twin.

Both run the same online/mini-batch loop over a given stream of sample indices and return the
sum and count of the per-update cosines between the applied step and the true negative gradient.
``epoch_numpy`` is the reference; ``Backend(..., compiled=True)`` runs the same loop compiled by
Numba (``_epoch_loop``, generated per pair by ``_build_compiled``), with the activation and rule
jit-compiled from their NumPy source in ``slnn.activations`` / ``slnn.rules``. Tests hold the
compiled path to the reference.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import os
import sys
import tempfile
from pathlib import Path

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


# The two loops below are templates: their source is copied into a small generated module per
# (activation, rule) pair, next to module-level globals ``f``, ``df``, ``rule_fast``,
# ``grad_fast`` and ``SAME_RULE``. Numba then treats those as compile-time constants (calls are
# inlined and cheap) and can cache the machine code on disk, so a sweep's workers compile each
# pair once per machine instead of ~5 s per pair per process.

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
            rule_fast(step, x, z, delta)  # noqa: F821
            if not SAME_RULE:  # noqa: F821
                grad_fast(grad, x, z, delta)  # noqa: F821
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


_MODULE = """# generated by slnn.kernels for {act!r} x {rule!r}: regenerated whenever a source changes
import math

import numba as nb
import numpy as np

from {f_mod} import {f_name} as _f, {df_name} as _df
from {r_mod} import {r_name} as _rule_fast
from slnn.rules import input_fast as _grad_fast

f = nb.njit(cache=True)(_f)
df = nb.njit(cache=True)(_df)
rule_fast = nb.njit(cache=True)(_rule_fast)
grad_fast = nb.njit(cache=True)(_grad_fast)
SAME_RULE = {same}

{loops}
# reassociation lets LLVM vectorize the forward sums (no nnan/ninf: nan and inf still count)
_evaluate_loop = nb.njit(cache=True, nogil=True, fastmath={{"reassoc", "contract"}})(_evaluate_loop)
epoch = nb.njit(cache=True, nogil=True)(_epoch_loop)
evaluate_all = nb.njit(cache=True, nogil=True)(_evaluate_all)
"""


def cache_dir() -> Path:
    """Where generated kernels and Numba's cache live: ``SLNN_CACHE_DIR`` or ~/.cache/slnn."""
    root = os.environ.get("SLNN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "slnn")
    return Path(root) / "kernels"


def _build_compiled(act: Activation, rule: UpdateRule):
    import numba  # imported lazily so the NumPy path compiles nothing

    from slnn.rules import input_fast

    for fn in (act.f, act.df, rule.fast):
        if "<" in fn.__qualname__:  # a lambda or a nested function cannot be imported
            raise ValueError(f"{fn.__qualname__} must be a module-level function to be compiled")
    loops = "\n\n".join(inspect.getsource(fn) for fn in (_evaluate_loop, _evaluate_all, _epoch_loop))
    src = _MODULE.format(
        act=act.name, rule=rule.name, f_mod=act.f.__module__, f_name=act.f.__name__,
        df_name=act.df.__name__, r_mod=rule.fast.__module__, r_name=rule.fast.__name__,
        same=rule.fast is input_fast, loops=loops)
    if act.df.__module__ != act.f.__module__:
        src = src.replace(f"{act.df.__name__} as _df\n", f"{act.f.__name__} as _f_unused\n"
                          f"from {act.df.__module__} import {act.df.__name__} as _df\n")
    parts = [src, numba.__version__] + [inspect.getsource(fn) for fn in (act.f, act.df, rule.fast)]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    name = f"slnn_kernel_{act.name}_{rule.name}_{digest}"
    folder = cache_dir()
    path = folder / f"{name}.py"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(src)
            os.replace(tmp, path)  # atomic: parallel workers may write the same module
    except OSError:  # a read-only home: compile in a private folder, without a shared cache
        folder = Path(tempfile.mkdtemp(prefix="slnn-kernels-"))
        path = folder / f"{name}.py"
        path.write_text(src)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.epoch, module._evaluate_loop, module.evaluate_all


class Backend:
    """The epoch and evaluation functions of one (activation, rule) pair on one path."""

    def __init__(self, act: Activation, rule: UpdateRule, compiled: bool):
        self.act, self.rule, self.compiled = act, rule, compiled
        if compiled:
            key = (act.name, act.f, act.df, rule.name, rule.fast)
            if key not in _compiled:
                _compiled[key] = _build_compiled(act, rule)
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
