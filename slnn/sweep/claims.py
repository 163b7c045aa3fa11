"""Claims: the claim on a cell is its run, checked right after it is opened (``claim_cell``), so
two sweeps over the same cells on one store never both train a cell; a sweep's parent run is
reopened only by the process that wrote its next ``slnn.session.<k>`` param (``open_parent``).
Why this is safe, on any store: docs/faults.md ("Claims")."""

from __future__ import annotations

import random
import time

from slnn.sweep.state import SweepState
from slnn.tracking.console import say
from slnn.tracking.liveness import beat, is_alive, owner_tags, stop
from slnn.tracking.runs import mark_killed, why_dead


class CellTaken(Exception):
    """The cell is someone else's: ``done`` (a FINISHED run has it) or held by a live ``holder``."""

    def __init__(self, holder: str, done: bool):
        super().__init__(f"{'done' if done else 'claimed'} by run {holder}")
        self.holder, self.done = holder, done


def _runs_of(client, exp_id: str, chash: str) -> list:
    return list(client.search_runs([exp_id], filter_string=f"tags.`slnn.config_hash` = '{chash}'",
                                   max_results=1000))


def give_up(client, run_id: str) -> None:
    stop(run_id)
    client.delete_run(run_id)


def _same_making(run, own, reuse_other_code: bool) -> bool:
    """Whether a FINISHED ``run`` of the cell was made from the data (and, unless
    ``reuse_other_code``, the code) of ``own`` (this process's claim), by the same search (a
    tuning run is its search's alone; ``resume.plan``): only then is it done."""
    if own is None:
        return True
    mine, theirs = own.data.tags, run.data.tags
    for tag in ("slnn.data_digest", "slnn.rule_digest", "slnn.search"):
        if theirs.get(tag) != mine.get(tag):
            return False
    return reuse_other_code or theirs.get("slnn.code_hash") == mine.get("slnn.code_hash")


def claim_cell(client, exp_id: str, chash: str, run_id: str, *, done_after_ms: int = 0,
               reuse_other_code: bool = False) -> None:
    """Keep the cell for ``run_id`` (just created), or delete it and raise ``CellTaken``; a
    FINISHED run counts only if started at or after ``done_after_ms`` (``sweep.force``)."""
    runs = _runs_of(client, exp_id, chash)
    own = next((r for r in runs if r.info.run_id == run_id), None)
    for r in runs:
        if r.info.run_id == run_id:
            continue
        if (r.info.status == "FINISHED" and r.info.start_time >= done_after_ms
                and _same_making(r, own, reuse_other_code)):
            give_up(client, run_id)
            raise CellTaken(r.info.run_id, done=True)
        if r.info.status == "RUNNING":
            if is_alive(r.data.tags) is False:
                mark_killed(client, r, why_dead(r))  # an expired claim
                continue
            give_up(client, run_id)
            raise CellTaken(r.info.run_id, done=False)


def wait_until_released(client, holder: str, poll: float = 1.0) -> str:
    """Wait while ``holder`` (another process's run) is RUNNING and its owner alive; how it ended
    (a status, or ``DELETED``: a claim given up). A dead owner's run is marked KILLED."""
    while True:
        run = client.get_run(holder)
        if run.info.lifecycle_stage == "deleted":
            time.sleep(random.uniform(0.05, 0.5))  # both stepped back: do not collide again
            return "DELETED"
        if run.info.status != "RUNNING":
            return run.info.status
        if is_alive(run.data.tags) is False:
            mark_killed(client, run, why_dead(run))
            return "KILLED"
        time.sleep(poll)


def run_when_released(cells: list, state: SweepState, run_cell) -> int:
    """Cells ``(grid.Cell, holder)`` that live processes held: wait for each holder's run to
    end, then run the cell (skipped if the holder finished it). How many failed."""
    from slnn.tracking.store import client_for

    client = client_for(state.uri)
    say(f"slnn: {len(cells)} cell(s) of this job are being run by another process; waiting "
        "for them")
    failed = 0
    for cell, holder in cells:
        while True:
            wait_until_released(client, holder)
            try:
                failed += not run_cell(cell.config, cell.hash, state, cell.folder, cell.tags,
                                       cell.trial)
                break
            except CellTaken as e:
                holder = e.holder
    return failed


def _live_parents(client, exp_id: str, sweep_hash: str, mine: str | None = None):
    """(other parents of the grid, newest first; the first live one among them or None). Parents
    left RUNNING by dead processes are marked KILLED on the way."""
    others = [r for r in client.search_runs(
        [exp_id], filter_string=f"tags.`slnn.sweep_hash` = '{sweep_hash}'",
        order_by=["attributes.start_time DESC"], max_results=200) if r.info.run_id != mine]
    live = None
    for r in others:
        if r.info.status != "RUNNING":
            continue
        if is_alive(r.data.tags) is False:
            mark_killed(client, r, why_dead(r))
            r.data.tags.update({"slnn.outcome": "", "slnn.reason": ""})  # now stale on it
        elif live is None:
            live = r
    return others, live


def open_parent(client, exp_id: str, sweep_hash: str, force: bool, tags: dict,
                reopen_tags: dict | None = None) -> tuple[str, str, object]:
    """(the sweep's parent run id, its name, the live parent run of another sweep over the same
    grid or None): the grid's newest parent reopened, its ``slnn.session.<k>`` param claimed
    first (see the module), else a new one with ``tags``; ``reopen_tags`` go on a reopened one."""
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException

    owner = owner_tags()
    others, live = _live_parents(client, exp_id, sweep_hash)
    if live is None and not force and others:
        prev = others[0]
        run_id = prev.info.run_id
        k = sum(1 for key in prev.data.params if key.startswith("slnn.session."))
        try:
            client.log_param(run_id, f"slnn.session.{k}", owner["slnn.owner"])
        except MlflowException:  # another sweep claimed it a moment ago: it is live
            live = prev
        else:
            client.update_run(run_id, status="RUNNING")
            client.log_batch(run_id, tags=[RunTag(k2, v) for k2, v in
                                           {**owner, **(reopen_tags or {})}.items()])
            for stale in ("slnn.outcome", "slnn.reason"):  # left by a reaped interruption
                if stale in prev.data.tags:
                    client.delete_tag(run_id, stale)
            beat(client, run_id)
            return run_id, prev.info.run_name, None
    tags = {**tags, **owner}
    mine = client.create_run(exp_id, run_name=tags["mlflow.runName"], tags=tags).info.run_id
    beat(client, mine)
    if live is None:  # a sweep of the same grid that started at the same moment
        live = _live_parents(client, exp_id, sweep_hash, mine)[1]
    return mine, tags["mlflow.runName"], live
