"""An ``exp`` that LLVM can vectorize, and the compiled path's sigmoid written with it.

Numba compiles ``np.exp`` on a scalar to a call of the C library, one element at a time; the
``exp`` here is plain arithmetic (range reduction, a Taylor series, 2^k built from its bits), so a
loop over a row of outputs runs four at a time, within 2 ulp of NumPy's. Only the compiled path
uses it; docs/development.md ("The compiled path") has the algorithm, its compile flags and the
measurements."""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE 754 bits are the int64 ``bits`` (a bit cast, no conversion)."""
    if bits == types.int64:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())
        return types.float64(types.int64), codegen
    return None


@intrinsic
def _bits_of_float(typingctx, x):
    """The IEEE 754 bits of the float64 ``x``, as an int64 (a bit cast, no conversion)."""
    if x == types.float64:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(64))
        return types.int64(types.float64), codegen
    return None


LOG2E = 1.4426950408889634  # 1 / ln 2
LN2_HI = 6.93147180369123816490e-01  # ln 2 to 32 bits: k * LN2_HI is exact for |k| < 2^20
LN2_LO = 1.90821492927058770002e-10  # ln 2 - LN2_HI
SHIFT = 6755399441055744.0  # 1.5 * 2^52: y + SHIFT rounds y to an integer in the low bits
SHIFT_BITS = int(np.float64(SHIFT).view(np.int64))
EXP_MAX = 709.782712893384  # the largest x whose exp is finite
EXP_CLAMP_LO, EXP_CLAMP_HI = -746.0, 710.0  # exp rounds to 0 below, is inf above


# Its flags said explicitly: a function that leaves fastmath unset takes its caller's flags when
# a fastmath caller compiles it first (Numba's flag inheritance), and the kernels' loops have
# "reassoc". "contract" alone lets LLVM fuse a multiply and an add into one FMA (one rounding
# instead of two: the polynomial gets no less accurate, and shorter). LLVM still inlines it,
# each instruction keeping its own flags.
@njit(error_model="numpy", fastmath={"contract"})
def exp(x):
    """exp(x) for a float64, within 2 ulp of NumPy's, in arithmetic LLVM can vectorize."""
    c = x if x > EXP_CLAMP_LO else EXP_CLAMP_LO  # also maps nan to the low end: fixed below
    c = c if c < EXP_CLAMP_HI else EXP_CLAMP_HI
    shifted = c * LOG2E + SHIFT
    k = shifted - SHIFT  # round(c / ln 2), as a float
    r = (c - k * LN2_HI) - k * LN2_LO
    # Estrin's scheme: the same sum as Horner's in four dependent steps instead of thirteen, so
    # that the CPU overlaps them (a scalar exp costs what the C library's does)
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q0 = 1.0 + r
    q1 = 0.5 + r * (1.0 / 6.0)
    q2 = 1.0 / 24.0 + r * (1.0 / 120.0)
    q3 = 1.0 / 720.0 + r * (1.0 / 5040.0)
    q4 = 1.0 / 40320.0 + r * (1.0 / 362880.0)
    q5 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0)
    q6 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0)  # 1 / 12! + r / 13!
    u0 = (q0 + r2 * q1) + r4 * (q2 + r2 * q3)
    u1 = (q4 + r2 * q5) + r4 * q6
    p = u0 + r8 * u1
    ki = _bits_of_float(shifted) - SHIFT_BITS  # k as an integer
    k1 = ki >> 1
    e = p * _float_from_bits((k1 + 1023) << 52) * _float_from_bits((ki - k1 + 1023) << 52)
    e = e if x <= EXP_MAX else math.inf
    return e if x == x else x


def sigmoid(x):
    """1 / (1 + exp(-x)), as ``slnn.core.activations.sigmoid``, with the ``exp`` above."""
    return 1.0 / (1.0 + exp(-x))


def sigmoid_prime(x):
    s = 1.0 / (1.0 + exp(-x))
    return s * (1.0 - s)


def sigmoid_and_prime(x):
    """(sigmoid(x), sigmoid'(x)) from one ``exp``: LLVM does not merge the two that ``sigmoid``
    and ``sigmoid_prime`` inlined side by side would compute."""
    s = 1.0 / (1.0 + exp(-x))
    return s, s * (1.0 - s)
