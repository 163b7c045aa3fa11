"""Which cells of a grid a sweep runs, and why: resume keyed on the config, the code and the data.

A cell is reused only when a FINISHED run has the same ``slnn.config_hash`` (what it computes),
the same ``slnn.data_digest`` (the data it read), for a user's rule (``update=custom``) the same
``slnn.rule_digest`` (the sha256 of the rule's file), and the same ``slnn.code_hash`` (the code
that made it; ``sweep.reuse_other_code=true`` accepts other code), and a search's tuning run
(tagged ``slnn.search``) only for a cell of the same search. Otherwise it runs, and the
plan says why: the code changed, the rule's file changed, the data changed, or it is new.
``sweep.force=true`` runs every cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REUSED, CODE_CHANGED, RULE_CHANGED, DATA_CHANGED, NEW, FORCED = (
    "reused", "code changed", "rule file changed", "data changed", "new", "forced")


@dataclass
class Plan:
    todo: list = field(default_factory=list)  # the cells to run
    reused: dict = field(default_factory=dict)  # cell hash -> the FinishedRun it reuses
    why: dict = field(default_factory=dict)  # cell hash -> one of the reasons above

    def count(self, reason: str) -> int:
        return sum(1 for w in self.why.values() if w == reason)

    def line(self) -> str:
        parts = [f"{self.count(REUSED)} reused"]
        for reason in (CODE_CHANGED, RULE_CHANGED, DATA_CHANGED):
            if self.count(reason):
                parts.append(f"{self.count(reason)} rerun because the "
                             f"{reason.removesuffix(' changed')} changed")
        parts.append(f"{self.count(NEW)} new")
        if self.count(FORCED):
            parts.append(f"{self.count(FORCED)} rerun (sweep.force=true)")
        return ", ".join(parts)


def plan(cells, finished: dict, code_hash: str, *, force: bool = False,
         reuse_other_code: bool = False) -> Plan:
    """``cells``: ``grid.Cell``s; ``finished``: ``tracking.runs.finished_runs``'s result."""
    p = Plan()
    for cell in cells:
        # a search's tuning run is its own search's alone: another search prunes on other
        # settings (or not at all), and a grid's or a confirmation's cell needs a whole run
        want = (getattr(cell, "tags", None) or {}).get("slnn.search")
        runs = [r for r in finished.get(cell.hash, []) if r.search == want]
        same_input = [r for r in runs if r.data_digest == cell.data_digest]
        same_data = [r for r in same_input if r.rule_digest == getattr(cell, "rule_digest", None)]
        match = [r for r in same_data if r.code_hash == code_hash] or (
            same_data if reuse_other_code else [])
        if force:
            p.why[cell.hash] = FORCED if runs else NEW
        elif match:
            p.why[cell.hash], p.reused[cell.hash] = REUSED, match[0]
            continue
        elif same_data:
            p.why[cell.hash] = CODE_CHANGED
        elif same_input:
            p.why[cell.hash] = RULE_CHANGED
        elif runs:
            p.why[cell.hash] = DATA_CHANGED
        else:
            p.why[cell.hash] = NEW
        p.todo.append(cell)
    return p
