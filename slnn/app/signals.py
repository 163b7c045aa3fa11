"""SIGTERM handled as Ctrl-C (``install``): what ``timeout``, ``kill`` and schedulers send raises
``Terminated``, a ``KeyboardInterrupt``, so every place that closes a run as KILLED on Ctrl-C does
the same on SIGTERM, and the command ends with one line (exit code 143; 130 for Ctrl-C). Later
SIGTERMs are ignored while the runs close; one that lands in a finalizer is raised again 20 ms
later."""

from __future__ import annotations

import signal
import sys
import threading


reported = False  # a sweep already said it was interrupted: the command adds no line of its own


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""

    def __str__(self) -> str:
        return "terminated (SIGTERM)"


terminating = False  # SIGTERM has arrived: the process is ending


def _raise(signum=None, frame=None) -> None:
    global terminating
    terminating = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the runs be closed
    raise Terminated()


def _thread_died(args) -> None:
    """After a SIGTERM sent to the whole process group (a scheduler's, ``kill -- -PGID``), the
    helpers joblib's worker pool starts to stop its workers (``pgrep``) are terminated too, and
    its manager thread dies printing their error: noise of an ending the command reports in one
    line. Any other thread's error, or one before a SIGTERM, is printed as always."""
    if terminating and args.thread is not None and args.thread.name.startswith(
            "ExecutorManagerThread"):
        return
    _previous_thread_hook(args)


_previous_thread_hook = threading.excepthook


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
        threading.excepthook = _thread_died


def exit_code(e: BaseException) -> int:
    return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


def what(e: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
