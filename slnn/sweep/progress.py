"""A sweep's progress as the launching process reads it from the ledger (``progress.jsonl``) the
jobs append to: one line redrawn in place on a terminal, a rarer plain line in a pipe or a log,
an estimate of the whole sweep's duration, each failed cell's line as it fails. Only the launcher
prints, so its lines never interleave; the lines and their rates: docs/sweeps.md."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from slnn.core.outcomes import TRAINED, Outcome
from slnn.sweep.ledger import cell_key, fmt_eta
from slnn.sweep.state import SweepState
from slnn.tracking.console import relative, say

PIPE_SECONDS = 10.0  # a pipe gets a progress line at most this often ...
PIPE_SHARE = 0.05  # ... and only after this share of the cells has ended since the previous one
TTY_SECONDS = 0.5  # a terminal's line is redrawn this often
ESTIMATE_SECONDS = 10.0  # no estimate line for a sweep whose rest takes less than this
MAX_FAILURE_LINES = 20  # then one line saying the rest are in the cells' logs
_NO_RESULT = {Outcome.SKIPPED, Outcome.KILLED}


class LedgerReader:
    """The ledger read incrementally (only what was appended since the previous read; a line a
    worker is still writing is read once it is whole), one entry per cell: its last result."""

    def __init__(self, path: Path, cells: set[str] | None = None):
        self.path, self.cells = Path(path), cells
        self.offset, self.inode = 0, None
        self.last: dict[str, dict] = {}

    def read(self) -> list[dict]:
        """The entries appended since the previous read (whole lines only)."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_ino != self.inode or self.offset > st.st_size:  # a new ledger
                    self.inode, self.offset, self.last = st.st_ino, 0, {}
                f.seek(self.offset)
                new = f.read()
        except FileNotFoundError:
            return []
        end = new.rfind(b"\n") + 1
        self.offset += end
        out = []
        for ln in new[:end].splitlines():
            if not ln.strip():
                continue
            try:
                e = json.loads(ln)
            except ValueError:  # not a line of ours: counted by no one
                continue
            key = cell_key(e)
            if self.cells is not None and key not in self.cells:
                continue
            old = self.last.get(key)
            if old is None or e["outcome"] not in _NO_RESULT or old["outcome"] in _NO_RESULT:
                self.last[key] = e
            out.append(e)
        return out


def counts_text(counts: Counter, reused: int = 0) -> str:
    """``45 finished, 3 failed, 1 diverged``: finished always, the other outcomes when any."""
    parts = [f"{sum(counts[o] for o in TRAINED)} finished"]
    for o in (Outcome.FAILED, Outcome.DIVERGED, Outcome.SHAPE_MISMATCH, Outcome.KILLED,
              Outcome.SKIPPED):
        if counts[o]:
            parts.append(f"{counts[o]} {o}")
    if reused:
        parts.append(f"{reused} reused")
    return ", ".join(parts)


def rate_text(per_second: float) -> str:
    if per_second <= 0:
        return "? cells/s"
    return f"{per_second:.1f} cells/s" if per_second >= 1 else f"{1 / per_second:.1f} s/cell"


class Progress:
    """Draws a sweep's progress from its ledger in a thread of the launching process."""

    def __init__(self, state: SweepState, cells: list[str], workers: int = 1, stream=None,
                 err=None, clock=time.time, since: float | None = None):
        self.state, self.workers, self.clock = state, max(1, workers), clock
        self.stream = sys.stdout if stream is None else stream
        self.err = sys.stderr if err is None else err
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.todo = len(cells)
        self.reader = LedgerReader(Path(state.dir) / "progress.jsonl", set(cells) or None)
        self.last_time, self.last_done = clock(), 0
        # rates count from ``since``: the sweep's start (its preparation was waited for too), or
        # for a search's later batches, from their own launch
        self.began = state.start if since is None else since
        self.estimated = False
        self.failures = 0
        self.drawn = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what is drawn ---------------------------------------------------------------------

    def done(self) -> int:
        return len(self.reader.last)

    def line(self, bar: bool) -> str:
        st = self.state
        done = self.done()
        total, reused = st.total, st.n_skipped
        counts = Counter(e["outcome"] for e in self.reader.last.values())
        elapsed = max(self.clock() - self.began, 1e-9)
        rate = done / elapsed
        left = max(self.todo - done, 0)
        eta = fmt_eta(left / rate) if rate > 0 else "?"
        k = done + reused
        head = f"[{k}/{total}]"
        if bar:
            width = 20
            filled = int(width * k / total) if total else width
            head += f" [{'#' * filled}{'.' * (width - filled)}] {100 * k // max(total, 1):3d}%"
        return f"{head} {counts_text(counts, reused)}; {rate_text(rate)}; about {eta} left"

    def _draw(self) -> None:
        text = self.line(bar=True)
        width = shutil.get_terminal_size((100, 24)).columns
        self.stream.write("\r" + text[: max(width - 1, 10)] + "\033[K")
        self.stream.flush()
        self.drawn = True

    def _clear(self) -> None:
        """Take the redrawn line off the terminal before a whole line is printed."""
        if self.tty and self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False

    def _say(self, text: str, stream) -> None:
        self._clear()
        say(text, stream)

    # --- one look at the ledger ------------------------------------------------------------

    def poll(self, final: bool = False) -> None:
        for e in self.reader.read():
            if e["outcome"] == Outcome.FAILED and e.get("error"):
                self.failures += 1
                if self.failures <= MAX_FAILURE_LINES:
                    where = f"; its log: {e['log']}" if e.get("log") else ""
                    self._say(f"slnn: {e['name']} failed: {e['error']}{where}", self.err)
                elif self.failures == MAX_FAILURE_LINES + 1:
                    self._say("slnn: more cells failed: each one's error is in its log "
                              f"({relative(Path(self.state.dir) / 'cells')}/*/run.log)", self.err)
        done, now = self.done(), self.clock()
        few = max(3, self.workers)
        if not self.estimated and done >= min(few, self.todo) and done < self.todo:
            self.estimated = True
            elapsed = max(now - self.began, 1e-9)
            whole = elapsed / done * self.todo
            if whole - elapsed >= ESTIMATE_SECONDS:
                s = "s" if self.workers != 1 else ""
                self._say(f"slnn: sweep {self.state.label}: about {fmt_eta(whole)} "
                          f"for its {self.todo} cells to run, {fmt_eta(whole - elapsed)} left "
                          f"(estimated from the first {done} cells on {self.workers} worker{s})",
                          self.stream)
        if self.tty:
            if not final or done:
                self._draw()
            return
        step = max(1, math.ceil(PIPE_SHARE * self.todo))
        if (not final and now - self.last_time >= PIPE_SECONDS
                and done - self.last_done >= step and done < self.todo):
            say(self.line(bar=False), self.stream)
            self.last_time, self.last_done = now, done

    def warnings_line(self) -> str | None:
        warned = [e for e in self.reader.last.values() if e.get("warnings") and e.get("log")]
        if not warned:
            return None
        logs = [e["log"] for e in warned[:3]]
        more = f" and {len(warned) - 3} more" if len(warned) > 3 else ""
        n = len(warned)
        return (f"slnn: {n} cell{'s' if n != 1 else ''} logged warnings; see "
                f"{', '.join(logs)}{more}")

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        period = TTY_SECONDS if self.tty else 1.0
        while not self._stop.wait(period):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress must never stop a sweep
                pass

    def start(self) -> "Progress":
        self._thread = threading.Thread(target=self._run, name="slnn-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """A last look at the ledger, the terminal's line ended, the warnings line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.poll(final=True)
            if self.tty and self.drawn:
                self.stream.write("\n")
                self.stream.flush()
                self.drawn = False
            warned = self.warnings_line()
            if warned:
                say(warned, self.err)
        except Exception:  # noqa: BLE001
            pass
