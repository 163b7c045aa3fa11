"""A sweep with ``hydra.sweeper.search``: stage 1 tunes each arm with its own Optuna study,
stage 2 runs each arm's best value again on the confirmation seeds. Every trial and every
confirmation is a cell of the one sweep (same parent run, resume, claims and ledger).
"""

from __future__ import annotations

import hashlib
import math
import sys

from slnn.core.outcomes import Outcome
from slnn.core.trials import choose, tie_loss, tied, trial_score
from slnn.sweep.search import (SearchSpec, journal, open_study, parse_search, storage_path,
                               study_name)
from slnn.tracking.console import say

STAGE_TAG, ARM_TAG, TRIAL_TAG = "slnn.stage", "slnn.arm", "slnn.trial"
SEARCH_TAG = "slnn.search"  # a tuning run's Optuna study: reused by that search alone


def _value(v) -> str:
    """An override's value as Hydra reads it back exactly (a float's shortest repr)."""
    return repr(float(v)) if isinstance(v, float) else str(v)


class Search:
    """Drives a search through an ``Orchestrator`` (``run``) and a ``launch(todo)`` callable
    that runs the cells ``run.extend`` returned."""

    def __init__(self, run, node, grid_keys: list[str]):
        from omegaconf import OmegaConf

        self.run = run
        # plain containers: the sweep's state file (JSON) keeps them for the jobs
        self.node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) \
            else dict(node)
        self.spec: SearchSpec = parse_search(self.node, grid_keys)
        self.axes = set(grid_keys)
        self.arms: list[list[str]] = []

    # --- the arms and the sweep's identity -------------------------------------------------

    def first_cells(self, arms: list[list[str]]) -> tuple[list[list[str]], str]:
        """Each arm's cell at the space's first point on the first tuning seed (composed and
        validated up front, so a bad arm fails before anything runs) and the search's identity:
        what makes a rerun the same search (its arms, its settings; the code and data are
        added by the orchestrator)."""
        self.arms = arms
        first = [f"{k}={_value(_low(d))}" for k, d in self.spec.space.items()]
        cells = [[*arm, *first, f"seed={self.spec.tune_seeds[0]}"] for arm in arms]
        key = hashlib.sha256(("search|" + self.spec.key()).encode()).hexdigest()[:16]
        return cells, key

    def label(self, arm: list[str]) -> str:
        """The arm's name: its choice of each grid axis (``update=input model.activation=tanh``)."""
        return " ".join(o for o in arm if o.split("=", 1)[0].lstrip("+~") in self.axes) or "all"

    # --- stage 1 ---------------------------------------------------------------------------

    def tune(self, launch) -> dict[str, dict]:
        """Every arm's trials, a batch per arm at a time, until each has had ``trials``; the
        best params per arm label (an arm with no completed trial is left out, and said)."""
        spec, st = self.spec, self.run.state
        folder = storage_path(st.uri, st.folder)
        storage = journal(folder)
        st.search = {"journal": str(folder), "node": self.node, "grid_keys": sorted(self.axes)}
        studies = {self.label(a): (a, open_study(storage, study_name(st.sweep_hash, self.label(a)),
                                                 spec)) for a in self.arms}
        while True:
            batch = []  # (arm, label, study name, trial number, params)
            for label, (arm, study) in studies.items():
                # the budget is trial numbers 0 .. trials-1, whoever asked them (a concurrent
                # search of the same study shares them); one asked beyond it is not run
                trials = [t for t in study.get_trials(deepcopy=False) if t.number < spec.trials]
                ended = sum(t.state.is_finished() for t in trials)
                want = min(spec.batch, spec.trials - ended)
                take = [t for t in trials if not t.state.is_finished()][:want]  # asked, never told
                while len(take) < want and len(study.get_trials(deepcopy=False)) < spec.trials:
                    t = study.ask(spec.space)
                    if t.number >= spec.trials:  # another search took the last number first
                        _tell(study, t.number, [None])
                        break
                    take.append(t)
                for t in take:
                    batch.append((arm, label, study.study_name, t.number, dict(t.params)))
            if not batch:
                break
            # a trial is its value on every tuning seed: one cell each, reported to the pruner as
            # steps of their own (seed i's epoch e is step i * (epochs + 1) + e)
            cells, extra = [], []
            for arm, label, name, n, params in batch:
                for i, seed in enumerate(spec.tune_seeds):
                    cells.append([*arm, *(f"{k}={_value(v)}" for k, v in params.items()),
                                  f"seed={seed}"])
                    extra.append({"tags": {STAGE_TAG: "tune", ARM_TAG: label, TRIAL_TAG: str(n),
                                           SEARCH_TAG: name},
                                  "trial": (name, n, i)})
            launch(self.run.extend(cells, extra, f"tuning, {len(batch)} trial(s) on "
                                                 f"{len(spec.tune_seeds)} seed(s)"))
            results = self.run.results(self.run.last_cells)
            k = len(spec.tune_seeds)
            for j, (arm, label, name, n, _) in enumerate(batch):
                mine = self.run.last_cells[j * k:(j + 1) * k]
                _tell(studies[label][1], n, [results.get(c.hash) for c in mine])
        every = [[*arm, *(f"{k}={_value(v)}" for k, v in t.params.items()), f"seed={seed}"]
                 for arm, study in studies.values() for t in study.get_trials(deepcopy=False)
                 for seed in spec.tune_seeds]
        self.run.remember(every)  # trials an earlier session ran count in the parent's cells
        return self.best({label: (arm, [t for t in study.get_trials(deepcopy=False)
                                        if t.state.name == "COMPLETE" and t.value is not None])
                          for label, (arm, study) in studies.items()})

    def best(self, done: dict[str, tuple[list, list]]) -> dict[str, dict]:
        """Per arm label, from ``{label: (arm, its completed trials)}``, the trial to confirm
        (``choose``: a tie in mean validation error goes to the lower mean validation loss, as
        the grid's report breaks ties between cells; an error counts a few dozen validation
        samples, so ties are common) as ``{arm, params, value, trial}``. The losses are read from
        the store only for tied trials; a trial whose runs are not there loses a tie."""
        ties: dict[tuple[str, int], list] = {}  # (label, number) -> its cells, seed by seed
        cells = []
        for label, (arm, trials) in done.items():
            if not trials:
                say(f"slnn: search arm {label}: no trial completed; it is not confirmed",
                    sys.stderr)
                continue
            at_best = tied(trials)
            for t in at_best if len(at_best) > 1 else []:
                ties[(label, t.number)] = [
                    [*arm, *(f"{k}={_value(v)}" for k, v in t.params.items()), f"seed={seed}"]
                    for seed in self.spec.tune_seeds]
                cells += ties[(label, t.number)]
        found, hashes = {}, []
        if cells:
            composed = self.run.compose(cells)
            found, hashes = self.run.results(composed), [c.hash for c in composed]
        losses, i = {}, 0
        for key, runs in ties.items():  # (outcome, final validation loss) of each seed's run
            mine = [found.get(h) for h in hashes[i:i + len(runs)]]
            i += len(runs)
            losses[key] = tie_loss([(r[0], r[2]) if r else (None, None) for r in mine])
        out = {}
        for label, (arm, trials) in done.items():
            if trials:
                top = choose(trials, lambda t: losses.get((label, t.number), math.inf))
                out[label] = {"arm": arm, "params": dict(top.params), "value": top.value,
                              "trial": top.number}
        return out

    # --- stage 2 ---------------------------------------------------------------------------

    def confirm(self, best: dict[str, dict], launch) -> None:
        cells, extra = [], []
        for label, b in best.items():
            for seed in self.spec.confirm_seeds:
                cells.append([*b["arm"], *(f"{k}={_value(v)}" for k, v in b["params"].items()),
                              f"seed={seed}"])
                extra.append({"tags": {STAGE_TAG: "confirm", ARM_TAG: label,
                                       TRIAL_TAG: str(b["trial"])}})
        launch(self.run.extend(cells, extra, f"confirming {len(best)} arm(s) on "
                                             f"{len(self.spec.confirm_seeds)} fresh seed(s)"))


def _low(dist):
    """A point of a distribution, for composing an arm's cell before any trial."""
    if hasattr(dist, "choices"):
        return dist.choices[0]
    return dist.low


def _tell(study, number: int, results: list) -> None:
    """Tell trial ``number`` what its runs came to, one per tuning seed: ``(outcome,
    val_error, val_loss)`` or None (no run finished: failed or killed). Its value is
    ``trial_score``; a trial with a pruned run is PRUNED, one with a run missing FAILED. A trial
    another search already told is left as it is."""
    import optuna

    state, value = optuna.trial.TrialState.FAIL, None
    if results and all(r is not None for r in results):
        if any(r[0] == Outcome.PRUNED for r in results):
            state = optuna.trial.TrialState.PRUNED
        else:
            state = optuna.trial.TrialState.COMPLETE
            value = trial_score([r[:2] for r in results])
    try:
        study.tell(number, value, state=state)
    except (RuntimeError, ValueError):  # already finished (a concurrent search of the same study)
        pass
