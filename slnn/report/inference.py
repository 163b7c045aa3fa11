"""The report's inference: exact paired tests and their intervals, rate intervals in [0, 1], Holm.

    lo, hi = rate_interval(errors)             # mean error over seeds: score interval in [0, 1]
    lo, hi = clopper_pearson(3, 20)            # exact interval of a rate, inside [0, 1]
    t = paired_test(final, initial)            # exact Wilcoxon p, Hodges-Lehmann + interval
    adjusted = holm(p_values)                  # Holm's step-down adjustment, nan left alone

docs/statistics.md says how each is computed, why, and what the simulations measured."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import stats as st

MIN_INTERVAL = 3  # fewer values than this: no interval
LEVEL = 0.95
ALPHA = 0.05
TEST_NAME = ("Wilcoxon signed-rank test (two-sided, zero differences dropped, ties given "
             "mid-ranks, exact over every sign flip up to 50 differing pairs)")
ERROR_BOUNDS = (0.0, 1.0)  # an error rate
DIFF_BOUNDS = (-1.0, 1.0)  # a difference of two error rates


def mean_intervals(samples, bounds=(-np.inf, np.inf), min_n: int = MIN_INTERVAL) -> np.ndarray:
    """95% Student t intervals of the means of many samples (``scipy.stats.t.interval`` with the
    standard error of each), clipped to ``bounds`` (low, high; scalars, or one per sample): an
    array (len, 2) of (low, high). For quantities that are not rates (epochs run); a mean error
    rate gets ``rate_intervals``, which covers better near 0 and 1. nan for a
    sample with fewer than ``min_n`` finite values, and for one whose values are all equal (a
    spread of zero gives a width of zero, a certainty a few seeds cannot give)."""
    clean = [np.asarray(v, dtype=float) for v in samples]
    clean = [v[np.isfinite(v)] for v in clean]
    out = np.full((len(clean), 2), np.nan)
    lo_b = np.broadcast_to(np.asarray(bounds[0], dtype=float), (len(clean),))
    hi_b = np.broadcast_to(np.asarray(bounds[1], dtype=float), (len(clean),))
    for i, v in enumerate(clean):
        if len(v) < min_n or np.ptp(v) == 0:
            continue
        lo, hi = st.t.interval(LEVEL, len(v) - 1, loc=v.mean(), scale=st.sem(v))
        out[i] = max(lo, lo_b[i]), min(hi, hi_b[i])
    return out


def mean_interval(values, bounds=(-np.inf, np.inf),
                  min_n: int = MIN_INTERVAL) -> tuple[float, float]:
    """``mean_intervals`` of one sample: (low, high)."""
    lo, hi = mean_intervals([values], bounds, min_n)[0]
    return float(lo), float(hi)


def rate_intervals(samples, min_n: int = MIN_INTERVAL) -> np.ndarray:
    """95% intervals of the means of many samples of error rates (each value in [0, 1], one per
    seed): an array (len, 2) of (low, high), always inside [0, 1]; nan for a sample with fewer
    than ``min_n`` finite values or no spread (as ``mean_intervals``).

    A quasi-binomial score (Wilson) interval: the mean m of s values is treated as a proportion
    whose variance is p (1 - p) / n_eff, with the effective size n_eff = m (1 - m) / (sd^2 / s)
    taken from the seeds' own spread (so overdispersion between seeds counts in full), and the
    bounds are the p solving (m - p)^2 = q^2 p (1 - p) / n_eff with q the t quantile on s - 1
    degrees of freedom. It bends towards the middle near 0 and 1, where a t interval's symmetric
    bounds under-cover or get clipped. Simulated coverage (docs/statistics.md): 93.4-95.6% at 10
    and 20 seeds for rates k/n_test with n_test 30-150, means 0.03 (mostly zeros), 0.5, 0.7 and
    Beta-distributed rates, where the t interval gave 90.8-95.0%."""
    out = np.full((len(samples), 2), np.nan)
    for i, v in enumerate(samples):
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        s = len(v)
        if s < min_n or np.ptp(v) == 0:
            continue
        m, var = v.mean(), v.var(ddof=1) / s
        q2 = st.t.ppf(0.5 + LEVEL / 2, s - 1) ** 2
        n = m * (1 - m) / var  # > 0: a spread means 0 < m < 1
        centre = (m + q2 / (2 * n)) / (1 + q2 / n)
        half = np.sqrt(q2) / (1 + q2 / n) * np.sqrt(m * (1 - m) / n + q2 / (4 * n * n))
        out[i] = max(centre - half, 0.0), min(centre + half, 1.0)
    return out


def rate_interval(values, min_n: int = MIN_INTERVAL) -> tuple[float, float]:
    """``rate_intervals`` of one sample: (low, high)."""
    lo, hi = rate_intervals([values], min_n)[0]
    return float(lo), float(hi)


def no_interval(n: int) -> str:
    """Why a mean over ``n`` seeds has no interval."""
    if n < MIN_INTERVAL:
        return f"no interval: fewer than {MIN_INTERVAL} seeds"
    return f"no interval: all {n} seeds gave the same value"


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
    diff: float  # mean of a - b: descriptive only (no interval goes with it)
    hl: float  # Hodges-Lehmann estimate of a - b: the median of the Walsh averages
    hl_lo: float  # its 95% interval: the shifts the signed-rank test does not reject
    hl_hi: float  # (``hodges_lehmann``); it excludes 0 exactly when p < 0.05
    p: float  # nan: no test (see note)
    method: str  # what computed p (``wilcoxon_method``)
    note: str = ""


EXACT_MAX = 50  # non-zero differences up to which p is exact (2^50 sign flips, counted by a DP)


def differences(d) -> np.ndarray:
    """Paired differences rounded to 12 decimals: errors are k / n_test, and 8/38 - 2/38 and
    -(5/38 - 11/38) differ in the last bit, which would make equal differences distinct ranks
    and a zero a non-zero."""
    return np.round(np.asarray(d, dtype=float), 12)


@lru_cache(maxsize=4096)
def _null_counts(r2: tuple[int, ...]) -> np.ndarray:
    """How many of the 2^n sign flips give each sum of the doubled ranks ``r2`` to the positive
    differences: the exact null distribution of the signed-rank statistic given the ranks (ties
    and all), by the subset-sum recursion, in integers (exact up to n = 62)."""
    counts = np.zeros(sum(r2) + 1, dtype=np.int64)
    counts[0] = 1
    for r in r2:
        counts[r:] += counts[:-r].copy()
    return counts


@lru_cache(maxsize=4096)
def _lower_tail(r2: tuple[int, ...]) -> np.ndarray:
    """``tail[s]``: how many sign flips give a doubled-rank sum of at most ``s``."""
    return np.cumsum(_null_counts(r2))


def _ps(e: np.ndarray) -> np.ndarray:
    """Two-sided signed-rank p of each row of ``e`` (differences, already rounded), zeros dropped
    before ranking: exact over every sign flip, ties given mid-ranks, with at most
    ``EXACT_MAX`` non-zero differences (scipy's normal approximation above); 1 for a row of
    zeros. The ranks of all rows are found at once, so that an interval's search is cheap."""
    m, n = e.shape
    order = np.argsort(np.abs(e), axis=1, kind="stable")
    a = np.take_along_axis(np.abs(e), order, axis=1)
    pos = np.take_along_axis(e > 0, order, axis=1)
    cols = np.arange(n)
    new = np.ones_like(a, dtype=bool)  # where a run of equal |e| starts, and where one ends
    new[:, 1:] = (a[:, 1:] != a[:, :-1]) & ~(np.isnan(a[:, 1:]) & np.isnan(a[:, :-1]))
    ends = np.ones_like(new)
    ends[:, :-1] = new[:, 1:]
    first = np.maximum.accumulate(np.where(new, cols, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, cols, n - 1)[:, ::-1], axis=1)[:, ::-1]
    zeros = (a == 0).sum(axis=1)  # they sort first, as one run: the others' ranks start after
    r2 = first + last + 2 - 2 * zeros[:, None]  # twice the mid-ranks among the non-zero
    w2 = (r2 * pos).sum(axis=1)
    out = np.ones(m)
    for k in range(m):
        z = zeros[k]
        if z == n:
            continue
        if n - z > EXACT_MAX:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[k] = st.wilcoxon(e[k][e[k] != 0], zero_method="wilcox",
                                     method="asymptotic").pvalue
            continue
        ranks = tuple(r2[k, z:].tolist())
        total = sum(ranks)
        far = abs(2 * int(w2[k]) - total)  # how far the positive sum is from its null mean
        if far:  # the flips at least as far on either side: twice one side (symmetry)
            out[k] = 2 * int(_lower_tail(ranks)[(total - far) // 2]) / 2.0 ** (n - z)
    return out


def wilcoxon_method(d) -> str:
    """What ``signed_rank`` computes for differences ``d``, zeros dropped first: with at most
    ``EXACT_MAX`` non-zero differences the exact distribution over their sign flips, ties given
    mid-ranks ("exact (signed-rank)", "exact (signed-rank, ties: mid-ranks)"); above that the
    normal approximation with scipy's tie correction ("normal approximation (n=60)")."""
    d = differences(d)
    nz = d[d != 0]
    if len(nz) > EXACT_MAX:
        return f"normal approximation (n={len(nz)})"
    ties = len(np.unique(np.abs(nz))) < len(nz)
    return "exact (signed-rank, ties: mid-ranks)" if ties else "exact (signed-rank)"


def signed_rank(d) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of differences ``d`` (at least one not zero) and
    the method that gave it (``wilcoxon_method``).

    Zeros are dropped before ranking (Wilcoxon's own treatment, scipy's ``zero_method="wilcox"``)
    and the method is chosen from what is left: 20 seeds of which 5 differ, all one way, give
    2 / 2^5 = 0.0625, where a normal approximation counting the zeros said 0.034. Exact p up to
    ``EXACT_MAX`` differences takes microseconds to a millisecond (the DP of ``_null_counts``)."""
    d = differences(d)
    nz = d[d != 0]
    if len(nz) == 0:
        raise ValueError("signed_rank: every difference is zero; there is no test to run")
    return min(_p_or_one(d), 1.0), wilcoxon_method(d)


def _p_or_one(e: np.ndarray) -> float:
    """``signed_rank``'s p of the (already rounded) differences ``e``; 1 when all are zero (no
    evidence against the shift)."""
    return float(_ps(np.asarray(e, dtype=float)[None, :])[0])


def hodges_lehmann(d, bounds=DIFF_BOUNDS, alpha: float = ALPHA) -> tuple[float, float, float]:
    """The Hodges-Lehmann estimate of the shift of differences ``d`` (the median of the Walsh
    averages (d_i + d_j) / 2, i <= j) and its 1 - ``alpha`` interval: the shifts d0 whose
    signed-rank test of d - d0 (``signed_rank``: zeros dropped, mid-ranks, exact) gives
    p >= ``alpha``, reported as (smallest, largest) such shift. Returns (hl, lo, hi).

    The test's p changes only where d0 crosses a Walsh average (a sign flips or two |d - d0|
    swap), so the candidates are the Walsh averages and the open stretches between them; the
    search walks in from each end to the first accepted one. Because the interval is made from
    the very test that gives p, it excludes 0 exactly when p(0) < ``alpha`` (the tests check
    this on random data with ties and zeros). Where the accepted set has holes (ties and dropped
    zeros make p non-monotone in the shift) the interval spans them, except a hole at 0 itself,
    which cuts the interval there (open at 0, on the estimate's side).

    With so few pairs that no p can fall below ``alpha`` (n <= 5: 2 / 2^n >= 0.05), every shift
    is accepted: the interval is ``bounds`` itself ((-1, 1) for a difference of error rates),
    the honest "the data cannot say". The ends are always clipped to ``bounds``. No pairs: nan.
    """
    d = differences(d)
    n = len(d)
    if n == 0:
        return np.nan, np.nan, np.nan
    unit = _common_unit(d)
    if unit is not None and unit != 1.0:  # error rates are k / n_test: shift in whole units
        hl, lo, hi = hodges_lehmann(np.round(d / unit), (bounds[0] / unit, bounds[1] / unit),
                                    alpha)
        return float(hl * unit), _rescale(lo, unit), _rescale(hi, unit)
    i, j = np.triu_indices(n)
    walsh2 = differences(d[i] + d[j])  # twice the Walsh averages
    hl = float(np.median(walsh2) / 2)
    s = np.unique(walsh2)
    # candidates in order: below all, s_0, (s_0, s_1), s_1, ..., s_K, above all; each is a
    # doubled shift at which the test is evaluated, and the interval end it stands for
    mids = (s[:-1] + s[1:]) / 2
    cand = np.empty(2 * len(s) + 1)
    cand[0], cand[-1] = s[0] - 1.0, s[-1] + 1.0
    cand[1:-1:2], cand[2:-1:2] = s, mids

    def accepted(ks: np.ndarray) -> np.ndarray:
        # at a Walsh average (odd k), round so that ties and zeros are exact; between two, no
        # zero or new tie can arise, and rounding a half-way point could make one
        e = 2 * d[None, :] - cand[ks][:, None]
        odd = ks % 2 == 1
        e[odd] = differences(e[odd])
        return _ps(e) >= alpha

    def first_accepted(ks: np.ndarray) -> int:
        """The first of the candidates ``ks`` (in order) that is accepted, else the last one."""
        for i in range(0, len(ks), 32):
            hit = np.flatnonzero(accepted(ks[i:i + 32]))
            if len(hit):
                return int(ks[i + hit[0]])
        return int(ks[-1])

    m = len(cand)
    first = first_accepted(np.arange(m))
    last = first_accepted(np.arange(m - 1, -1, -1))
    if not accepted(np.array([first]))[0]:  # none accepted (cannot be: the HL shift is central)
        return hl, np.nan, np.nan
    # a Walsh average accepted is a closed end; an open stretch (s_k, s_k+1) accepted whose end
    # s_k was rejected is an open end, reported as the next float past s_k (the smallest float in
    # the stretch), so that ``lo > 0`` reads "0 rejected"; the outer stretches reach to infinity
    if first == 0:
        lo = -np.inf
    else:
        lo = s[(first - 1) // 2] / 2
        lo = lo if first % 2 else np.nextafter(lo, np.inf)
    if last == m - 1:
        hi = np.inf
    else:
        hi = s[last // 2] / 2
        hi = hi if last % 2 else np.nextafter(hi, -np.inf)
    if lo <= 0 <= hi and _p_or_one(d) < alpha:
        # zero is a hole: rejected, with accepted shifts on both sides (dropping zeros before
        # ranking is not monotone in the shift; about 1 random case in 3,000). The test at zero is
        # the one reported, so the interval keeps the side of the estimate, open at zero
        if hl > 0 or (hl == 0 and d.mean() >= 0):
            lo = np.nextafter(0.0, 1.0)
        else:
            hi = np.nextafter(0.0, -1.0)
    lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return hl, float(lo), float(hi)


def _rescale(v: float, unit: float) -> float:
    """An interval end found in whole units, in the differences' own: a closed end (a Walsh
    average, a multiple of 1/2) is multiplied; an open one (the next float past one) stays
    open, the next float past the multiplied average."""
    if not np.isfinite(v):
        return float(v)
    w = np.round(v * 2) / 2
    if v == w or abs(v - w) > 1e-9 * max(1.0, abs(w)):  # closed, or a bound
        return float(v * unit)
    return float(np.nextafter(w * unit, np.inf if v > w else -np.inf))


def _common_unit(d: np.ndarray, largest: int = 10_000) -> float | None:
    """1 / N for the smallest N <= ``largest`` that makes every difference a whole number of
    1 / N (error rates are k / n_test, their differences too), else None. Shifting by Walsh
    averages is then exact integer arithmetic, where in floats 12-decimal rounding could miss
    a tie or a zero one step from an interval's end."""
    nz = np.abs(d[d != 0])
    if len(nz) == 0 or not np.all(np.isfinite(nz)):
        return None
    # a whole number of 1 / N within 1e-7 means each |d| is p / q (its closest fraction with
    # q <= largest) with q dividing N, as two such fractions are at least 1 / largest^2 apart:
    # the smallest N is the least common multiple of the q, if it passes
    n = math.lcm(*{Fraction(x).limit_denominator(largest).denominator
                   for x in np.unique(nz).tolist()})
    if n > largest or not np.all(np.abs(nz * n - np.round(nz * n)) < 1e-7):
        return None
    return 1.0 / n


def smallest_p(n_nonzero: int) -> float:
    """The smallest two-sided p the exact test can give with ``n_nonzero`` differing pairs:
    every difference of one sign is 2 of the 2^n sign flips (0.0625 with 5, 0.031 with 6),
    ties or not."""
    return min(1.0, 2.0 / 2.0 ** n_nonzero) if n_nonzero <= EXACT_MAX else 0.0


def paired_tests(pairs, bounds=DIFF_BOUNDS) -> list[Paired]:
    """For each ``(a, b)`` (equal-length arrays, paired by position): the Wilcoxon signed-rank
    test of ``a`` against ``b`` (``signed_rank``), the mean difference ``a - b``, and the
    Hodges-Lehmann estimate with the interval that inverts the same test
    (``hodges_lehmann``, within ``bounds``). All differences zero: no test (p nan), said in
    ``note``; the estimate is then 0 and its interval the shifts the test would not reject."""
    out = []
    for a, b in pairs:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        d = a - b
        n, nz = len(d), int(np.count_nonzero(differences(d)))
        hl, lo, hi = hodges_lehmann(d, bounds)
        base = dict(n=n, n_nonzero=nz, mean_a=float(a.mean()) if n else np.nan,
                    mean_b=float(b.mean()) if n else np.nan,
                    diff=float(d.mean()) if n else np.nan, hl=hl, hl_lo=lo, hl_hi=hi)
        if n == 0:
            out.append(Paired(**base, p=np.nan, method="", note="no pairs: no test"))
        elif nz == 0:
            out.append(Paired(**base, p=np.nan, method="",
                              note=f"all {n} differences are zero: no test"))
        else:
            p, method = signed_rank(d)
            out.append(Paired(**base, p=p, method=method))
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
