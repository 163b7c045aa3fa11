"""Load a user's update rule from ``path/to/file.py:function_name``.

The file's bytes are read once and run as a fresh module, its folder kept off ``sys.path``;
``load_rule(spec, expect=sha)``, or a file ``pin``ned in this process, runs it only if those bytes
have that SHA-256. ``digest`` is what runs record. Every problem, in loading or in calling the
rule (``CheckedRule``), is one ``RuleLoadError`` line naming the file, the function and the
problem; docs/extending.md ("Training it") says how a file is loaded and what is refused."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import re
import sys
import traceback
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SIGNATURE = "(x, net, z, t, delta)"


class RuleLoadError(ValueError):
    """A user rule could not be loaded or called; the message is one line."""


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def digest(path) -> str:
    """sha256 (hex) of the file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def parse_spec(spec: str) -> tuple[str, str]:
    """``"path/to/file.py:function"`` -> ``(path, function)``; the last ``:`` separates them."""
    path, sep, name = str(spec).rpartition(":")
    if not sep or not path or not name:
        raise RuleLoadError(f"{spec}: expected FILE.py:FUNCTION, e.g. my_rule.py:my_step")
    if not name.isidentifier():
        raise RuleLoadError(f"{spec}: {name!r} is not a function name (expected FILE.py:FUNCTION)")
    return path, name


def _user_line(tb, path: str) -> str:
    """' (line N)' for the innermost frame of ``tb`` in the user's file, else ''."""
    lines = [f.lineno for f in traceback.extract_tb(tb) if f.filename == path]
    return f" (line {lines[-1]})" if lines else ""


@contextlib.contextmanager
def _no_process_exit():
    """User code may not end the process: ``os._exit(n)`` inside it raises ``SystemExit`` (as
    ``sys.exit`` does), which the caller reports as the rule's failure, so the run is recorded
    FAILED with the reason instead of the process vanishing with exit code n."""
    import os

    real = os._exit

    def refuse(code=0):
        raise SystemExit(f"os._exit({code}) called")

    os._exit = refuse
    try:
        yield
    finally:
        os._exit = real


def _describe(exc: BaseException, path: str) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) + \
        _user_line(exc.__traceback__, path)


@dataclass
class CheckedRule:
    """A rule with the user signature, wrapped so that every call either returns a float
    ``ndarray`` of finite numbers or raises a one-line ``RuleLoadError`` that names the rule.

    ``label`` names the rule in messages (``FILE:FUNCTION`` for a loaded file); ``path`` and
    ``digest`` are set for a rule loaded from a file.
    """

    func: Callable
    label: str
    path: str | None = None
    digest: str | None = None
    name: str = field(default="")
    # False: non-finite values pass (training: weights that blew up give a non-finite step, and
    # the run ends as diverged, as with a built-in rule)
    finite: bool = True
    _warned: set = field(default_factory=set, repr=False)

    def __call__(self, x, net, z, t, delta) -> np.ndarray:
        try:
            with contextlib.redirect_stdout(sys.stderr), _no_process_exit(), \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = self.func(x, net, z, t, delta)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code
            raise RuleLoadError(
                f"{self.label}: the function raised {_describe(exc, self.path or '')}"
            ) from exc
        first = caught[0] if caught else None
        cause = ""
        if first is not None:
            line = f" at line {first.lineno}" if first.filename == self.path else ""
            cause = f"after {first.category.__name__}{line}: {_one_line(first.message)}"
        step = validate_step(out, self.label, x_shape=np.shape(x), cause=cause,
                             finite=self.finite)
        for w in caught:   # a usable step: pass its warnings on, each once per rule
            key = (w.category, str(w.message), w.filename, w.lineno)
            if key not in self._warned:
                self._warned.add(key)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return step


def validate_step(out, label: str, x_shape=None, cause: str = "", finite: bool = True) -> np.ndarray:
    """``out`` as a float ndarray, or a one-line ``RuleLoadError`` naming ``label``; ``cause``
    (e.g. a warning the call raised) is added to the message about non-finite values (checked
    only with ``finite``)."""
    where = ", ".join(p for p in (f"for x of shape {tuple(x_shape)}" if x_shape is not None
                                  else "", cause) if p)
    if out is None:
        raise RuleLoadError(f"{label}: the function returned None, not an array of numbers "
                            f"(a missing return?)")
    try:
        arr = np.asarray(out)
    except Exception as exc:  # noqa: BLE001 - e.g. ragged nested lists
        raise RuleLoadError(f"{label}: the function returned a {type(out).__name__} that is not "
                            f"an array of numbers ({_one_line(exc)})") from None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        kind = type(out).__name__ if not isinstance(out, np.ndarray) else f"array of {arr.dtype}"
        raise RuleLoadError(f"{label}: the function returned a {kind}, not an array of real "
                            f"numbers")
    arr = arr.astype(float)
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise RuleLoadError(f"{label}: the function returned non-finite values ({bad} of "
                            f"{arr.size} entries nan or inf{', ' + where if where else ''})")
    return arr


# resolved path -> the sha256 a file must have to be executed in this process (``pin``)
_PINNED: dict[str, str] = {}


def pin(path, sha: str) -> None:
    """From now on in this process, execute ``path`` only if its bytes' sha256 is ``sha``."""
    _PINNED[str(Path(path).resolve())] = sha


@contextlib.contextmanager
def pinned(digests: dict):
    """``pin`` each ``{path: sha256}`` within the block (a sweep's job), as before after it."""
    saved = dict(_PINNED)
    for path, sha in (digests or {}).items():
        pin(path, sha)
    try:
        yield
    finally:
        _PINNED.clear()
        _PINNED.update(saved)


def load_rule(spec: str, expect: str | None = None) -> CheckedRule:
    """Import ``FILE.py:FUNCTION`` from the file itself and wrap the function (``CheckedRule``).
    With ``expect`` (or a ``pin`` on the file), only if the sha256 of the bytes read is that
    one: else a ``RuleLoadError`` before any of the file runs."""
    path_text, name = parse_spec(spec)
    label = f"{path_text}:{name}"
    path = Path(path_text)
    if not path.exists():
        raise RuleLoadError(f"{label}: no such file {path_text!r}")
    if not path.is_file():
        raise RuleLoadError(f"{label}: {path_text!r} is not a file")
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise RuleLoadError(f"{label}: cannot read the file ({_one_line(exc)})") from None
    resolved = str(path.resolve())
    sha = hashlib.sha256(source).hexdigest()
    expect = expect or _PINNED.get(resolved)
    if expect is not None and sha != expect:
        raise RuleLoadError(f"{label}: the file is not the one recorded (sha256 {sha[:12]} now, "
                            f"{expect[:12]} recorded): not run; run the command again to check "
                            f"and record the file as it is now")
    try:
        code = compile(source, resolved, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise RuleLoadError(f"{label}: syntax error in the file at line {exc.lineno}: "
                            f"{_one_line(exc.msg)}") from None
    except ValueError as exc:  # e.g. null bytes
        raise RuleLoadError(f"{label}: the file is not Python source ({_one_line(exc)})") from None

    module_name = f"slnn_user_rule_{sha[:16]}"
    module = types.ModuleType(module_name)
    module.__file__ = resolved
    sys.modules[module_name] = module        # for dataclasses and pickling inside the file
    try:
        with contextlib.redirect_stdout(sys.stderr), _no_process_exit():
            exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code is reported
        sys.modules.pop(module_name, None)
        raise RuleLoadError(f"{label}: importing the file raised {_describe(exc, resolved)}") \
            from None

    if not hasattr(module, name):
        defined = sorted(k for k, v in vars(module).items()
                         if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == module_name)
        hint = f" (it defines: {', '.join(defined)})" if defined else " (it defines no functions)"
        raise RuleLoadError(f"{label}: the file has no function {name!r}{hint}")
    func = getattr(module, name)
    if not callable(func):
        raise RuleLoadError(f"{label}: {name!r} is a {type(func).__name__}, not a function")
    try:
        inspect.signature(func).bind(*range(5))
    except TypeError:
        raise RuleLoadError(f"{label}: {name}{inspect.signature(func)} cannot be called with the "
                            f"five arrays {SIGNATURE}") from None
    except ValueError:  # no signature available (some builtins): let the first call decide
        pass
    return CheckedRule(func, label, path=resolved, digest=sha, name=name)
