"""The report's inference: intervals that respect their bounds, paired tests, Holm's correction.

    from slnn.report.inference import bootstrap_mean, clopper_pearson, paired_test, holm
    lo, hi = bootstrap_mean(errors)            # percentile bootstrap of the mean, inside [min, max]
    lo, hi = clopper_pearson(3, 20)            # exact interval of a rate, inside [0, 1]
    t = paired_test(final, initial)            # Wilcoxon signed-rank, mean difference, interval
    adjusted = holm(p_values)                  # Holm's step-down adjustment, nan left alone

Everything is scipy.stats except Holm's adjustment, which scipy does not have (it is five lines,
and the tests hold it to statsmodels' ``multipletests(method="holm")``). Bootstraps use a fixed
seed, so a report made twice from the same runs says the same thing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

MIN_INTERVAL = 3  # fewer values than this: no interval (a bootstrap of 2 values says little)
RESAMPLES = 9999
SEED = 0
ROWS = 25  # samples bootstrapped in one call: (rows, resamples, n) floats, ~40 MB at n = 20
ALPHA = 0.05
TEST_NAME = "Wilcoxon signed-rank test (scipy.stats.wilcoxon, two-sided, zero differences dropped)"


def bootstrap_means(samples, min_n: int = MIN_INTERVAL) -> np.ndarray:
    """95% percentile-bootstrap intervals of the means of many samples: an array (len, 2) of
    (low, high), nan for a sample with fewer than ``min_n`` finite values.

    Samples of equal size go through one vectorized ``scipy.stats.bootstrap`` call (each row
    resampled with the same indices, which leaves each row's interval what a call of its own
    with the same seed gives). A percentile interval lies within the sample's own range, so an
    interval of error rates stays in [0, 1] and one of epochs in [1, epochs]."""
    clean = [np.asarray(v, dtype=float) for v in samples]
    clean = [v[np.isfinite(v)] for v in clean]
    out = np.full((len(clean), 2), np.nan)
    by_n: dict[int, list[int]] = {}
    for i, v in enumerate(clean):
        if len(v) >= min_n:
            by_n.setdefault(len(v), []).append(i)
    groups = [(n, idx[i:i + ROWS]) for n, idx in by_n.items() for i in range(0, len(idx), ROWS)]
    for n, idx in groups:
        data = np.vstack([clean[i] for i in idx])  # (cells, n)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # a constant row: scipy warns, its interval is a point
            ci = st.bootstrap((data,), np.mean, axis=-1, n_resamples=RESAMPLES,
                              method="percentile", rng=np.random.default_rng(SEED))
            ci = ci.confidence_interval
        # a mean of resampled values cannot leave [min, max]: clip the last ulp of rounding
        out[idx, 0] = np.maximum(np.atleast_1d(ci.low), data.min(axis=1))
        out[idx, 1] = np.minimum(np.atleast_1d(ci.high), data.max(axis=1))
    return out


def bootstrap_mean(values, min_n: int = MIN_INTERVAL) -> tuple[float, float]:
    """``bootstrap_means`` of one sample: (low, high)."""
    lo, hi = bootstrap_means([values], min_n)[0]
    return float(lo), float(hi)


def clopper_pearson(k, n):
    """Exact (Clopper-Pearson) 95% interval of a rate of ``k`` in ``n``: the beta quantiles
    that ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")`` gives, for arrays at
    once; nan where ``n`` is 0. Scalars in, a (low, high) tuple of floats out."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(all="ignore"):
        lo = np.where(k > 0, st.beta.ppf(0.025, k, n - k + 1), 0.0)
        hi = np.where(k < n, st.beta.ppf(0.975, k + 1, n - k), 1.0)
    lo, hi = np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


@dataclass
class Paired:
    """One paired comparison of ``a`` with ``b`` over seeds."""

    n: int  # pairs
    n_nonzero: int  # pairs whose difference is not zero (what the signed-rank test ranks)
    mean_a: float
    mean_b: float
    diff: float  # mean of a - b
    diff_lo: float  # its 95% percentile-bootstrap interval (nan with < MIN_INTERVAL pairs)
    diff_hi: float
    p: float  # nan: no test (see note)
    method: str  # how scipy computed p: exact, exact permutation, normal approximation
    note: str = ""


def wilcoxon_method(d: np.ndarray) -> str:
    """Which null distribution ``scipy.stats.wilcoxon(method="auto")`` uses for differences
    ``d`` (zeros dropped): exact without ties up to 50 values; with ties, every sign flip up to
    13; else the normal approximation (scipy 1.17's rule, see its Notes)."""
    nz = d[d != 0]
    ties = len(np.unique(np.abs(nz))) < len(nz) or len(nz) < len(d)
    if not ties and len(nz) <= 50:
        return "exact"
    if ties and len(nz) <= 13:
        return "exact permutation"
    return "normal approximation"


def paired_tests(pairs) -> list[Paired]:
    """For each ``(a, b)`` (equal-length arrays, paired by position): the Wilcoxon signed-rank
    test of ``a`` against ``b``, the mean difference ``a - b`` and its bootstrap interval. All
    differences zero: no test (p nan), said in ``note``."""
    pairs = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in pairs]
    cis = bootstrap_means([a - b for a, b in pairs])
    out = []
    for (a, b), (lo, hi) in zip(pairs, cis):
        d = a - b
        n, nz = len(d), int(np.count_nonzero(d))
        base = dict(n=n, n_nonzero=nz, mean_a=float(a.mean()) if n else np.nan,
                    mean_b=float(b.mean()) if n else np.nan,
                    diff=float(d.mean()) if n else np.nan, diff_lo=float(lo), diff_hi=float(hi))
        if n == 0:
            out.append(Paired(**base, p=np.nan, method="", note="no pairs: no test"))
        elif nz == 0:
            out.append(Paired(**base, p=np.nan, method="",
                              note=f"all {n} differences are zero: no test"))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = float(st.wilcoxon(a, b, zero_method="wilcox", method="auto").pvalue)
            out.append(Paired(**base, p=p, method=wilcoxon_method(d)))
    return out


def paired_test(a, b) -> Paired:
    """``paired_tests`` of one pair."""
    return paired_tests([(a, b)])[0]


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values of ``p`` (nan entries are not tests: they stay nan
    and do not count in the family). Sorted ascending, the i-th of m gets
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out
