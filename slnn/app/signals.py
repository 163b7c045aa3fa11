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
(where Python would print the exception and ignore it) is raised again 20 ms later.
"""

from __future__ import annotations

import signal
import threading


reported = False  # a sweep already said it was interrupted: the command adds no line of its own


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""

    def __str__(self) -> str:
        return "terminated (SIGTERM)"


def _unsafe(frame) -> bool:
    """Is the signal interrupting a finalizer (``__del__``, a weakref callback), where Python
    prints an exception and then ignores it?"""
    while frame is not None:
        name = frame.f_code.co_filename
        if frame.f_code.co_name == "__del__" or name.endswith(("weakref.py", "_weakrefset.py")):
            return True
        frame = frame.f_back
    return False


def _on_sigterm(signum, frame) -> None:
    if _unsafe(frame):  # raised here it would be lost: raise it a moment later instead
        signal.signal(signal.SIGALRM, _on_sigterm)
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the runs be closed
    raise Terminated()


def install() -> None:
    """Turn SIGTERM into ``Terminated`` in this process (only the main thread can)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def exit_code(e: BaseException) -> int:
    return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


def what(e: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
