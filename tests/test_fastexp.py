"""Tests for slnn.core.compiled.fastexp, the vectorizable exp and the compiled path's sigmoid:
run with `python -m pytest tests/test_fastexp.py -q`.

NumPy's ``np.exp`` (correctly rounded to within an ulp) is the independent reference."""

import math

import numba
import numpy as np
import pytest

from slnn.core import activations
from slnn.core.compiled import codegen, fastexp
from slnn.core.activations import ACTIVATIONS
from slnn.core.rules import UPDATE_RULES

TINY = np.finfo(np.float64).tiny  # the smallest normal double


@numba.njit
def _exp_all(x, out):
    for i in range(x.shape[0]):
        out[i] = fastexp.exp(x[i])


def _fast_exp(x):
    out = np.empty_like(x)
    _exp_all(x, out)
    return out


def _ulps(got, want):
    return np.abs(got - want) / np.spacing(np.abs(want))


def _inputs():
    rng = np.random.default_rng(7)
    lo, hi = -746.5, 710.5
    return np.concatenate([
        rng.uniform(lo, hi, 400_000),  # the whole range, both ends beyond it
        rng.uniform(-1.0, 1.0, 200_000),  # where the training sees most nets
        rng.uniform(-1e-6, 1e-6, 50_000),
        rng.uniform(-745.2, -707.0, 100_000),  # subnormal results, and the last normal ones
        rng.uniform(705.0, 709.79, 100_000),  # up to the largest finite result
        np.arange(-1076, 1025) * math.log(2.0),  # near the range reduction's k ln 2
        np.nextafter(np.arange(-1076, 1025) * math.log(2.0), np.inf),
        [fastexp.EXP_MAX, np.nextafter(fastexp.EXP_MAX, np.inf), -745.13321910194110,
         -745.1332191019412, 0.0, -0.0, 5e-324, -5e-324, 1e-300, 0.5 * math.log(2.0)],
    ])


def test_exp_is_within_2_ulp_of_numpy_where_the_result_is_normal():
    x = _inputs()
    with np.errstate(over="ignore"):
        want = np.exp(x)
    got = _fast_exp(x)
    normal = np.isfinite(want) & (want >= TINY)
    assert normal.sum() > 700_000
    assert _ulps(got[normal], want[normal]).max() <= 2.0


def test_exp_subnormal_zero_and_infinite_results():
    x = _inputs()
    with np.errstate(over="ignore"):
        want = np.exp(x)
    got = _fast_exp(x)
    sub = want < TINY  # subnormal or 0: an absolute error of at most 2 of the smallest steps
    assert sub.sum() > 40_000 and (want == 0.0).any() and (want[sub] > 0.0).any()
    assert np.abs(got[sub] - want[sub]).max() <= 2 * 5e-324
    assert np.array_equal(np.isinf(got), np.isinf(want)) and np.isinf(want).sum() > 100
    assert (got >= 0.0).all()


def test_exp_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e308, -1e308])
    with np.errstate(over="ignore"):
        want = np.exp(x)
    got = _fast_exp(x)
    assert math.isnan(got[0])
    assert got[1] == math.inf and got[2] == 0.0 and got[3] == 1.0 and got[4] == 1.0
    assert got[7] == math.inf and got[8] == 0.0
    assert _ulps(got[5:7], want[5:7]).max() <= 2.0


# compiled as codegen compiles them
_sig, _dsig, _sig_dsig = (numba.njit(error_model="numpy")(fn) for fn in (
    fastexp.sigmoid, fastexp.sigmoid_prime, fastexp.sigmoid_and_prime))


@numba.njit
def _sig_all(x, z, dz, z2, dz2):
    for i in range(x.shape[0]):
        z[i] = _sig(x[i])
        dz[i] = _dsig(x[i])
        z2[i], dz2[i] = _sig_dsig(x[i])


def test_compiled_sigmoid_forms_match_the_registry_activation():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-40, 40, 100_000), rng.uniform(-800, 800, 10_000),
                        [0.0, -0.0, 745.0, -745.0, 800.0, -800.0, np.inf, -np.inf]])
    z, dz, z2, dz2 = (np.empty_like(x) for _ in range(4))
    _sig_all(x, z, dz, z2, dz2)
    with np.errstate(over="ignore"):
        want_z, want_dz = activations.sigmoid(x), activations.sigmoid_prime(x)
    np.testing.assert_allclose(z, want_z, rtol=1e-15, atol=0)
    # s (1 - s) takes s's error (a few ulp of 1) as an absolute one: where s is near 1, 1 - s
    # cancels, in the registry's form as in this one
    np.testing.assert_allclose(dz, want_dz, rtol=1e-14, atol=1e-15)
    # the one-evaluation form is the same arithmetic as the two functions
    assert np.array_equal(z2, z) and np.array_equal(dz2, dz)
    nan = np.full(1, np.nan)
    out = [np.empty(1) for _ in range(4)]
    _sig_all(nan, *out)
    assert all(math.isnan(o[0]) for o in out)


def test_only_the_registry_sigmoid_gets_the_fast_forms():
    f, df, fdf = codegen._compiled_forms(ACTIVATIONS["sigmoid"])
    assert (f, df, fdf) == (fastexp.sigmoid, fastexp.sigmoid_prime, fastexp.sigmoid_and_prime)
    for name in sorted(set(ACTIVATIONS) - {"sigmoid"}):
        act = ACTIVATIONS[name]
        assert codegen._compiled_forms(act) == (act.f, act.df, None)
    # an activation of the same name with its own functions keeps them
    own = activations.Activation("sigmoid", activations.tanh, activations.tanh_prime)
    assert codegen._compiled_forms(own) == (own.f, own.df, None)


@pytest.mark.parametrize("source", ["fastexp", "templates", "input_fast"])
def test_a_change_to_a_source_the_module_does_not_hold_makes_a_new_kernel_module(
        tmp_path, monkeypatch, source):
    # the generated module's name carries a digest of every source it depends on. fastexp (whose
    # exp the sigmoid's f calls), the templates' module (whose outcome constants the loops
    # compare with) and input_fast (imported by every module, here one for the guide's kronecker
    # rule) are not in the module's text: an edit to any must change the name, or Numba's cache
    # would keep the old machine code
    from slnn.core.compiled import templates
    from slnn.core.rules import input_fast

    monkeypatch.setenv("SLNN_CACHE_DIR", str(tmp_path))
    act, rule = ACTIVATIONS["sigmoid"], UPDATE_RULES["kronecker"]
    assert rule.fast is not input_fast
    target = {"fastexp": fastexp, "templates": templates, "input_fast": input_fast}[source]

    def module_files():
        codegen.build(act, rule)  # writes and imports the module; Numba compiles on first call
        return sorted(p.name for p in (tmp_path / "kernels").glob("slnn_kernel_*.py"))

    first = module_files()
    assert len(first) == 1 and module_files() == first
    real = codegen.inspect.getsource

    def edited(obj):
        return real(obj) + ("\n# edited\n" if obj is target else "")

    monkeypatch.setattr(codegen.inspect, "getsource", edited)
    second = module_files()
    assert len(second) == 2 and first[0] in second


def test_exp_keeps_its_own_flags_when_a_fastmath_loop_compiles_it_first():
    # Numba compiles a function that leaves fastmath unset with the flags of the caller that
    # compiles it first, and the kernels' loops have reassoc and contract. In a fresh process a
    # fastmath loop compiles exp first: exp's own code must carry its own flags (contract: fused
    # multiply-adds; never reassoc, which could undo the range reduction), and give the bits exp
    # gives when compiled on its own
    import subprocess
    import sys

    src = (
        "import re, numba, numpy as np\n"
        "from slnn.core.compiled import fastexp\n"
        "@numba.njit(fastmath={'reassoc', 'contract'})\n"
        "def fast(x, out):\n"
        "    for i in range(x.shape[0]):\n"
        "        out[i] = fastexp.exp(x[i])\n"
        "x = np.random.default_rng(5).uniform(-745.0, 709.0, 2000)\n"
        "a = np.empty_like(x)\n"
        "fast(x, a)\n"
        "ir = '\\n'.join(fastexp.exp.inspect_llvm().values())\n"
        "flags = set(re.findall(r'\\bf(?:add|sub|mul)\\s+((?:[a-z]+\\s+)*)double', ir))\n"
        "print(sorted(f.strip() for f in flags))\n"
        "print(a.tobytes() == np.array([fastexp.exp(v) for v in x]).tobytes())\n")
    proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    flags, same = proc.stdout.strip().splitlines()
    assert flags == "['contract']", flags  # every fadd/fsub/fmul: contract, and only that
    assert same == "True"
