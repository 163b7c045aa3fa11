"""The one line a sweep prints when a launcher job died (``scancel``, a time limit, a node lost):
which cells were lost and how to resume."""

from __future__ import annotations

from slnn.core.outcomes import EXPECTED


def lost_cells(todo_names: list[str], entries: list[dict]) -> list[str]:
    """The cells this sweep meant to run that have no expected outcome in the ledger."""
    done = {e.get("name") for e in entries if e.get("outcome") in EXPECTED}
    return [n for n in todo_names if n not in done]


def lost_cells_line(study: str, exc: BaseException, todo_names: list[str], entries: list[dict],
                    summary: str) -> str:
    lost = lost_cells(todo_names, entries)
    why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    names = ", ".join(lost[:20]) + (f", ... ({len(lost)} in all)" if len(lost) > 20 else "")
    return (f"slnn: sweep {study} lost {len(lost)} cell(s) when a job died ({type(exc).__name__}: "
            f"{why}): {names or 'none'}; {summary}; run the same command again to run only the "
            "missing cells")
