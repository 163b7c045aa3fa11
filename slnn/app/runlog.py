"""A run's log, kept as its ``run.log`` artifact (``RunLog``): slnn's own lines for the run,
every Python warning (once per place and run), log records of WARNING and above and what is
written to ``sys.stderr``. With ``echo`` (a single run) all of it also goes where it would have
gone; without (a sweep's cell) only to the log."""

from __future__ import annotations

import io
import logging
import sys
import warnings


class _Tee(io.TextIOBase):
    def __init__(self, log: "RunLog", also):
        self.log, self.also = log, also

    def write(self, s: str) -> int:
        self.log.buf.write(s)
        if self.also is not None:
            self.also.write(s)
        return len(s)

    def flush(self) -> None:
        if self.also is not None:
            self.also.flush()


def to_terminal(text: str) -> None:
    """A line the user must see even inside a sweep's cell (a wait for the store, say): into the
    run's log, and to the terminal when the log would not echo it there."""
    stream = sys.stderr
    stream.write(text.rstrip("\n") + "\n")
    stream.flush()
    if isinstance(stream, _Tee) and stream.also is None:
        original = stream.log._stderr
        original.write(text.rstrip("\n") + "\n")
        original.flush()


class RunLog:
    """Captures a run's warnings, log records and stderr (see the module's docstring)."""

    def __init__(self, echo: bool = True):
        self.echo = echo
        self.buf = io.StringIO()
        self.n_warnings = 0
        self._undo: list = []

    def line(self, text: str) -> None:
        """One of slnn's own lines, into the log only."""
        self.buf.write(text.rstrip("\n") + "\n")

    def text(self) -> str:
        return self.buf.getvalue()

    def _showwarning(self, message, category, filename, lineno, file=None, line=None):
        text = warnings.formatwarning(message, category, filename, lineno, line)
        self.n_warnings += 1
        self.buf.write(text)
        if self.echo:
            self._stderr.write(text)

    def __enter__(self) -> "RunLog":
        catcher = warnings.catch_warnings()
        catcher.__enter__()
        self._undo.append(lambda: catcher.__exit__(None, None, None))
        # a filter that changes nothing but makes Python forget which warnings it has shown, so
        # each run's log has its own (in a sweep, cells share a process)
        warnings.filterwarnings("default", category=UserWarning, append=True)
        warnings.showwarning = self._showwarning

        counter = self

        class _Handler(logging.StreamHandler):
            def emit(self, record):
                counter.n_warnings += 1
                super().emit(record)

        handler = _Handler(self.buf)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        mute = logging.Filter("slnn.runlog.mute")  # matches no logger: drops every record
        for logger in (logging.getLogger(), logging.getLogger("mlflow")):
            if logger is logging.getLogger() or not logger.propagate:
                logger.addHandler(handler)
                self._undo.append(lambda lg=logger: lg.removeHandler(handler))
                if not self.echo:
                    for h in logger.handlers:
                        if h is not handler:
                            h.addFilter(mute)
                            self._undo.append(lambda h=h: h.removeFilter(mute))
        self._stderr = sys.stderr
        sys.stderr = _Tee(self, self._stderr if self.echo else None)
        self._undo.append(lambda: setattr(sys, "stderr", self._stderr))
        return self

    def __exit__(self, *exc) -> None:
        while self._undo:
            self._undo.pop()()
