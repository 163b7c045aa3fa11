"""The sweep's ledger (``progress.jsonl`` in the sweep folder): one line per finished cell,
appended atomically by whichever worker ran it, and the summary line made from it. The
launching process reads it to draw the sweep's progress (``slnn.sweep.progress``)."""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from slnn.core.outcomes import TRAINED, Outcome
from slnn.sweep.state import SweepState

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


def cell_line(name: str, outcome: str, seconds: float, val_error: float | None = None,
              warnings: int = 0, error: str | None = None) -> str:
    """A cell's own line, ``name: outcome (val_error 0.123, 1.23 s)``: what its log ends with
    (the launcher prints the sweep's progress, ``slnn.sweep.progress``, never a line per cell)."""
    parts = ([f"val_error {val_error:.3f}"] if val_error is not None else []) + [f"{seconds:.2f} s"]
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    tail = f": {error}" if error else ""
    return f"slnn: {name}: {outcome} ({', '.join(parts)}){tail}"


def report_progress(state: SweepState, name: str, outcome: str, seconds: float,
                    train_seconds: float = 0.0, *, val_error: float | None = None,
                    warnings: int = 0, log: str | None = None, cell: str = "",
                    error: str | None = None) -> str:
    """Record one finished cell (``cell``: its folder, unique in the sweep) in the ledger, with
    where its log is and, if it failed, its error's first line (the launcher prints that one);
    append the cell's own line (``cell_line``) to its log in its folder; return that line."""
    ledger = Ledger(Path(state.dir) / "progress.jsonl")
    val = float(val_error) if val_error is not None and math.isfinite(val_error) else None
    me = {"name": name, **({"cell": cell} if cell else {}), "outcome": str(outcome),
          "seconds": round(seconds, 6),
          "train_seconds": round(train_seconds, 6), "val_error": val, "warnings": warnings,
          "pid": os.getpid(), "time": time.time(),
          **({"log": log} if log else {}), **({"error": error[:500]} if error else {})}
    ledger.add(**me)
    line = cell_line(name, str(outcome), seconds, val, warnings, error)
    if cell:
        folder = Path(state.dir) / "cells" / cell
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "run.log", "a") as f:
            f.write(line + "\n")
    return line


def summarize(entries: list[dict], total: int) -> tuple[Counter, str]:
    c = Counter(e["outcome"] for e in entries)
    finished = sum(v for k, v in c.items() if k in TRAINED)
    parts = [f"{finished} finished"] + [
        f"{c[o]} {o}" for o in (Outcome.FAILED, Outcome.DIVERGED, Outcome.SHAPE_MISMATCH, Outcome.SKIPPED)]
    for o in (Outcome.PRUNED, Outcome.KILLED):
        if c[o]:
            parts.append(f"{c[o]} {o}")
    missing = total - len(entries)
    if missing > 0:
        parts.append(f"{missing} not run")
    return c, ", ".join(parts) + f" (of {total} cells)"
