"""SIGTERM is handled as Ctrl-C: what ``timeout``, ``kill`` and job schedulers send closes the
open runs as KILLED and ends the command with one line, like an interrupt from the keyboard.

    install()                         # in a command's (or a sweep worker's) main thread
    try: ...
    except KeyboardInterrupt as e:    # Ctrl-C, or Terminated (SIGTERM)
        sys.exit(exit_code(e))        # 130, or 143 for SIGTERM

``Terminated`` is a ``KeyboardInterrupt``, so every place that already closes a run as KILLED on
Ctrl-C (the recorder, a sweep worker, the sweep's parent) does the same on SIGTERM. After the
first SIGTERM further ones are ignored, so the runs can be closed; SIGKILL still ends it at once
(and the next slnn command reaps what it left RUNNING). A SIGTERM that lands in a finalizer
(a weakref callback, ``__del__``: Python prints such an exception and ignores it) is caught by
``sys.unraisablehook`` and raised again 20 ms later.
"""

from __future__ import annotations

import signal
import sys
import threading


reported = False  # a sweep already said it was interrupted: the command adds no line of its own


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""

    def __str__(self) -> str:
        return "terminated (SIGTERM)"


def _raise(signum=None, frame=None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the runs be closed
    raise Terminated()


def _raise_interrupt(signum=None, frame=None) -> None:
    raise KeyboardInterrupt()


def _lost(unraisable) -> None:
    """A ``Terminated`` (or Ctrl-C's ``KeyboardInterrupt``) raised inside a finalizer (``__del__``,
    a weakref callback) is printed and ignored by Python: raise it again a moment later, in
    whatever runs then."""
    exc = unraisable.exc_value
    if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, _raise if isinstance(exc, Terminated) else _raise_interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        return
    _previous_hook(unraisable)


_previous_hook = sys.unraisablehook


def install() -> None:
    """Turn SIGTERM into ``Terminated`` in this process (only the main thread can)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)
        sys.unraisablehook = _lost


def exit_code(e: BaseException) -> int:
    return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


def what(e: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
