"""Whose a sweep folder is: one grid per ``hydra.sweep.dir``. The first sweep to use a folder
claims it in ``slnn_grid.json`` (written aside, then hard-linked into place: one winner, on a
local disk and on NFS); the same grid resumes there, another grid is refused with one line before
anything is written. Why, and when a folder is free again: docs/reliability.md."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

CLAIM = "slnn_grid.json"
STATE = "slnn_sweep.json"


def grid_id(cell_hashes, uri: str, experiment: str) -> str:
    """What a sweep folder is claimed for: the set of its cells' config hashes, in its store
    (masked: a password changes nothing) and experiment."""
    from slnn.tracking.faults import mask

    blob = "\n".join([mask(uri), str(experiment), *sorted(set(cell_hashes))])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _create(path: Path, data: dict) -> bool:
    """Write ``data`` to ``path`` only if no file is there: True if this call made it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _abandoned(folder: Path, claim: dict) -> bool:
    """The claim is all its sweep left: no cell was dealt (no state file) and its process is
    gone."""
    from slnn.tracking.liveness import is_alive

    return not (folder / STATE).exists() and is_alive({"slnn.owner": claim.get("owner", "")}) \
        is False


def _who(claim: dict) -> str:
    """The sweep a claim is, in a few words: its name or start, its size, its command."""
    parts = []
    if claim.get("label"):
        parts.append(f"sweep {claim['label']}")
    elif claim.get("started"):
        parts.append("a sweep started " + time.strftime("%Y-%m-%d %H:%M:%S",
                                                        time.localtime(claim["started"])))
    if claim.get("cells"):
        parts.append(f"{claim['cells']} cells")
    if claim.get("parent_run_id"):
        parts.append(f"parent run {claim['parent_run_id']}")
    command = str(claim.get("command") or "")
    if command:
        parts.append(command if len(command) <= 160 else command[:157] + "...")
    return ", ".join(parts) or "another sweep"


def claim(folder: Path, grid: str, command: str, n_cells: int) -> None:
    """Make ``folder`` this grid's, or exit 2 with one line when another grid's sweep holds it
    (nothing in the folder is changed then)."""
    from slnn.sweep.grid import fail
    from slnn.tracking.console import relative
    from slnn.tracking.liveness import process_owner

    mine = {"grid": grid, "command": command, "cells": n_cells, "started": time.time(),
            "owner": process_owner()}
    path = folder / CLAIM
    for _ in range(3):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if _create(path, mine):
                return
        except OSError as e:
            fail(f"cannot write the sweep folder {relative(folder)} ({e.strerror or e}): "
                 "give the sweep a folder it can write (hydra.sweep.dir=...)")
        held = _read(path)  # whole, or damaged: it is linked into place only once written
        if held is not None and held.get("grid") == grid:
            return  # the same grid: it resumes here
        if held is not None and not _abandoned(folder, held):
            fail(f"the sweep folder {relative(folder)} holds another grid's sweep ({_who(held)}): "
                 "give this one a folder of its own (hydra.sweep.dir=<new folder>; cells the "
                 "store already holds are reused, not run again) or remove that folder")
        path.unlink(missing_ok=True)  # damaged, or abandoned before its first cell: free
    fail(f"the sweep folder {relative(folder)} is being claimed by another sweep at the same "
         "time: give this one a folder of its own (hydra.sweep.dir=<new folder>)")


def name(folder: Path, grid: str, label: str, parent_run_id: str) -> None:
    """Add the sweep's name and parent run to its claim (what a refused sweep's line shows)."""
    path = folder / CLAIM
    held = _read(path)
    if held is None or held.get("grid") != grid:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({**held, "label": label, "parent_run_id": parent_run_id}))
        os.replace(tmp, path)
    except OSError:  # only the refusal line's detail: the claim itself stands
        tmp.unlink(missing_ok=True)
