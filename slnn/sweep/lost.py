"""The one line a sweep prints when a launcher job died (``scancel``, a time limit, a node lost):
which cells were lost and how to resume."""

from __future__ import annotations

from slnn.core.outcomes import EXPECTED
from slnn.sweep.ledger import cell_key


def lost_cells(todo_folders: list[str], entries: list[dict]) -> list[str]:
    """The cells (folders) this sweep meant to run that have no expected outcome in the ledger.
    By folder, not run name: two cells may share a name."""
    done = {cell_key(e) for e in entries if e.get("outcome") in EXPECTED}
    return [f for f in todo_folders if f not in done]


def lost_cells_line(study: str, exc: BaseException, todo_folders: list[str], entries: list[dict],
                    summary: str) -> str:
    lost = lost_cells(todo_folders, entries)
    why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    names = ", ".join(lost[:20]) + (f", ... ({len(lost)} in all)" if len(lost) > 20 else "")
    return (f"slnn: sweep {study} lost {len(lost)} cell(s) when a job died ({type(exc).__name__}: "
            f"{why}): {names or 'none'}; {summary}; run the same command again to run only the "
            "missing cells")
