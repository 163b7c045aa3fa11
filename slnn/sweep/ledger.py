"""The sweep's ledger (``progress.jsonl`` in the sweep folder): one line per finished cell,
appended atomically by whichever worker ran it, and the progress and summary lines made from it.

Each worker reads the ledger incrementally (only what was appended since its previous cell), so
a cell's progress line costs the same in a 10,000-cell sweep as in a 10-cell one."""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from slnn.core.outcomes import EXPECTED, TRAINED, Outcome
from slnn.tracking.console import say

_NO_RESULT = {Outcome.SKIPPED, Outcome.KILLED}  # what a cell's other line may say instead


def cell_key(entry: dict) -> str:
    """Which cell a ledger line is about: its folder (unique in the sweep), or, in lines written
    before lines named their folder, its run name."""
    return entry.get("cell") or entry["name"]


class Ledger:
    """``progress.jsonl``: one JSON line per finished cell."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def add(self, **entry: Any) -> None:
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write on an O_APPEND file: lines never interleave
        finally:
            os.close(fd)

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]

    def per_cell(self, cells: set[str] | None = None) -> list[dict]:
        """One entry per cell (its ``cell`` key: its folder; older lines: its name), so that a
        cell written twice, e.g. finished by a job left over from a killed session and then
        found done by this one, is counted once: its last result, else its last line. Given
        ``cells`` (this session's folders), lines of any other cell are left out."""
        last: dict[str, dict] = {}
        for e in self.entries():
            key = cell_key(e)
            if cells is not None and key not in cells:
                continue
            if key not in last or e["outcome"] not in _NO_RESULT or last[key]["outcome"] in _NO_RESULT:
                last[key] = e
        return list(last.values())


def fmt_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# per process, sweep and ledger: (inode, bytes read, cells seen), so that each cell reads only
# what was appended since this process's previous cell: constant cost per cell, where reading the
# whole file per cell made a sweep's cost grow with the square of its size
_READ: dict[tuple, tuple[int, int, set]] = {}


def _place(path: Path, me: dict, sweep: object = None) -> tuple[int, int]:
    """(how many cells have a line up to ``me``'s, how many cells have one so far) in the ledger at
    ``path`` of the sweep ``sweep`` (its start time: the same folder's next sweep starts a new
    ledger). Cells, not lines: a cell written twice counts once."""
    key = (str(path), sweep)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        ino, offset, seen = _READ.get(key, (st.st_ino, 0, set()))
        if ino != st.st_ino or offset > st.st_size:  # a new ledger in the same place
            offset, seen = 0, set()
        f.seek(offset)
        new = f.read()
    end = new.rfind(b"\n") + 1  # a line another worker is still writing is read next time
    place = None
    for ln in new[:end].splitlines():
        if not ln.strip():
            continue
        entry = json.loads(ln)
        seen.add(cell_key(entry))
        if place is None and entry == me:
            place = len(seen)
    _READ[key] = (st.st_ino, offset + end, seen)
    return (place if place is not None else len(seen)), len(seen)


def report_progress(state: dict, name: str, outcome: str, seconds: float,
                    train_seconds: float = 0.0, *, val_error: float | None = None,
                    warnings: int = 0, log: str | None = None, cell: str = "") -> None:
    """Record one finished cell (``cell``: its folder, unique in the sweep) in the ledger and print
    ``[done/total] name: outcome (val_error 0.123, 1.23 s); about H:MM:SS left``, with where the
    cell's log is when it holds warnings or an error."""
    ledger = Ledger(Path(state["dir"]) / "progress.jsonl")
    val = float(val_error) if val_error is not None and math.isfinite(val_error) else None
    me = {"name": name, **({"cell": cell} if cell else {}), "outcome": str(outcome),
          "seconds": round(seconds, 6),
          "train_seconds": round(train_seconds, 6), "val_error": val, "warnings": warnings,
          "pid": os.getpid(), "time": time.time()}
    ledger.add(**me)
    # our own line's place, not the count: two workers finishing together print different numbers
    done, n_entries = _place(ledger.path, me, state.get("start"))
    total = state["total"]
    done += state["n_skipped"]
    left = max(total - done, 0)
    elapsed = time.time() - state["start"]
    eta = fmt_eta(elapsed / n_entries * left) if n_entries else "?"
    parts = ([f"val_error {val:.3f}"] if val is not None else []) + [f"{seconds:.2f} s"]
    if log and (warnings or outcome not in EXPECTED):
        said = f"{warnings} warning{'s' if warnings != 1 else ''}" if warnings else "log"
        parts.append(f"{said}: {log}")
    say(f"[{done}/{total}] {name}: {outcome} ({', '.join(parts)}); about {eta} left")


def summarize(entries: list[dict], total: int) -> tuple[Counter, str]:
    c = Counter(e["outcome"] for e in entries)
    finished = sum(v for k, v in c.items() if k in TRAINED)
    parts = [f"{finished} finished"] + [
        f"{c[o]} {o}" for o in (Outcome.FAILED, Outcome.DIVERGED, Outcome.SHAPE_MISMATCH, Outcome.SKIPPED)]
    if c[Outcome.KILLED]:
        parts.append(f"{c[Outcome.KILLED]} {Outcome.KILLED}")
    missing = total - len(entries)
    if missing > 0:
        parts.append(f"{missing} not run")
    return c, ", ".join(parts) + f" (of {total} cells)"
