"""The adaptive search's settings and its Optuna studies (slnn.sweep.search), without a sweep."""

from __future__ import annotations

import multiprocessing

import pytest

from slnn.core.errors import ConfigError
from slnn.sweep.search import journal, open_study, parse_search, study_name, trial_in

SPACE = {"optim.lr": "tag(log, interval(1e-4, 10))"}


def spec(**kw):
    return parse_search({"space": SPACE, "trials": 6, "batch": 2, "tune_seeds": "range(100,102)",
                         "confirm_seeds": "range(5)", **kw}, ["data", "update"])


def test_the_space_reads_hydra_optuna_sweeper_syntax():
    s = parse_search({"space": {"optim.lr": "tag(log, interval(1e-4, 10))",
                                "train.batch_size": "choice(1, 4)",
                                "train.epochs": "int(interval(10, 50))"}}, [])
    lr, bs, ep = (s.space[k] for k in ("optim.lr", "train.batch_size", "train.epochs"))
    assert (lr.low, lr.high, lr.log) == (1e-4, 10.0, True)
    assert list(bs.choices) == [1, 4]
    assert (ep.low, ep.high, ep.log) == (10, 50, False) and type(ep).__name__ == "IntDistribution"
    assert s.tune_seeds == (100, 101, 102) and s.confirm_seeds == tuple(range(20))


@pytest.mark.parametrize("node, needle", [
    ({"space": {}}, "search.space is empty"),
    ({"space": {"optim.lr": "interval(1, 0.1)"}}, "low < high"),
    ({"space": {"optim.lr": "tag(log, interval(0, 1))"}}, "low > 0 on a log scale"),
    ({"space": {"optim.lr": "0.1"}}, "is not a range to search"),
    ({"space": {"optim.lr": "interval(("}}, "does not parse"),
    ({"space": {"update": "choice(a, b)"}}, "update is both a grid axis"),
    ({"space": SPACE, "tune_seeds": "range(3)", "confirm_seeds": "range(2, 10)"},
     "seed 2 is both a tuning and a confirmation seed"),
    ({"space": SPACE, "tune_seeds": [1, 1]}, "repeats a seed"),
    ({"space": SPACE, "tune_seeds": "-1"}, "is not a list of seeds"),
    ({"space": SPACE, "trials": 0}, "trials=0 must be a whole number >= 1"),
    ({"space": SPACE, "sampler": "cma"}, "choose one of ['tpe', 'random']"),
    ({"space": SPACE, "pruner": "hyperband"}, "choose one of ['median', 'halving', 'none']"),
    ({"space": SPACE, "monitor": "train_loss"}, "choose one of ['val_error', 'val_loss']"),
    ({"space": SPACE, "budget": 3}, "search.budget is not a search setting"),
])
def test_a_bad_search_is_one_line_that_names_it(node, needle):
    with pytest.raises(ConfigError) as e:
        parse_search(node, ["update", "data"])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_seed_may_not_be_a_grid_axis_of_a_search():
    with pytest.raises(ConfigError, match="remove seed from hydra.sweeper.params"):
        parse_search({"space": SPACE}, ["update", "seed"])


def test_a_study_resumes_from_its_journal_with_its_trials(tmp_path):
    s = spec()
    name = study_name("abc", "data=iris update=input")
    first = open_study(journal(tmp_path), name, s)
    asked = [first.ask(s.space) for _ in range(3)]
    first.tell(asked[0].number, 0.25)
    again = open_study(journal(tmp_path), name, s)  # a new process would do the same
    states = {t.number: t.state.name for t in again.get_trials(deepcopy=False)}
    assert states == {0: "COMPLETE", 1: "RUNNING", 2: "RUNNING"}
    assert again.trials[1].params == asked[1].params
    assert again.ask(s.space).number == 3  # no number is handed out twice
    assert study_name("abc", "a") != study_name("abc", "b") != study_name("abd", "a")


def _report(folder, name, number, values):
    s = spec(pruner="median")
    trial = trial_in(journal(folder), name, number, s)
    out = []
    for step, v in enumerate(values, start=1):
        trial.report(v, step * s.check_every)
        out.append(bool(trial.should_prune()))
    return out


def test_a_job_reports_to_its_trial_from_another_process_and_is_pruned_when_worse(tmp_path):
    """The median pruner, told by trials that ended, prunes a trial whose reports are worse
    than their median, reported from another process (as a sweep's job does)."""
    s = spec(pruner="median")
    name = study_name("abc", "arm")
    study = open_study(journal(tmp_path), name, s)
    for final in (0.1, 0.2):  # two trials end, after reporting their curves
        t = study.ask(s.space)
        for step in (10, 20, 30):
            t.report(final + 1.0 / step, step)
        study.tell(t, final)
    good, bad = study.ask(s.space), study.ask(s.space)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        said_good = pool.apply(_report, (tmp_path, name, good.number, [0.1, 0.1, 0.1]))
        said_bad = pool.apply(_report, (tmp_path, name, bad.number, [5.0, 5.0, 5.0]))
    assert said_good == [False, False, False]
    assert said_bad == [True, True, True]
    assert study.trials[bad.number].intermediate_values == {10: 5.0, 20: 5.0, 30: 5.0}


def test_a_resumed_study_does_not_draw_its_first_points_again(tmp_path):
    """A sampler seeded as the first session's would repeat its random start-up points: a
    resumed study's next trials are new points."""
    s = spec(trials=10)
    name = study_name("abc", "arm")
    first = open_study(journal(tmp_path), name, s)
    points = []
    for _ in range(3):
        t = first.ask(s.space)
        points.append(t.params["optim.lr"])
        first.tell(t, 0.5)
    again = open_study(journal(tmp_path), name, s)
    later = [again.ask(s.space).params["optim.lr"] for _ in range(3)]
    assert not set(later) & set(points)


@pytest.mark.parametrize("monitor", [None, "val_error", "val_loss"])
def test_a_run_reports_the_monitored_figure_of_every_check_to_its_trial(tmp_path, monitor):
    """A job's ``on_epoch`` tells its trial the run's validation error (the trial's own score)
    by default, or its validation loss, at every check_every-th epoch of its seed's steps; a
    non-finite figure (a diverged run) is the worst there is: 1 for an error."""
    import math

    from slnn.sweep.state import SweepState
    from slnn.sweep.worker import _pruning

    node = {"space": SPACE, "trials": 6, "batch": 2, "tune_seeds": "range(100,102)",
            "confirm_seeds": "range(5)", **({"monitor": monitor} if monitor else {})}
    s = parse_search(node, ["data"])
    name = study_name("abc", "arm")
    trial = open_study(journal(tmp_path), name, s).ask(s.space)
    state = SweepState(dir=str(tmp_path), search={"node": node, "grid_keys": ["data"],
                                                  "journal": str(tmp_path)})
    epochs, seed_index = 40, 1
    hook = _pruning(state, (name, trial.number, seed_index), epochs)
    assert hook["check_every"] == s.check_every == 10
    rows = [{"epoch": e, "val_error": 0.5 - e / 100, "val_loss": 2.0 - e / 50} for e in range(21)]
    rows.append({"epoch": 30, "val_error": math.nan, "val_loss": math.inf})
    # the last epoch is no check: a run that trained to the end is never cut there
    rows.append({"epoch": 40, "val_error": 0.9, "val_loss": 9.0})
    for row in rows:
        assert hook["on_epoch"](row) is False  # the first trial of a study is never pruned
    key = monitor or "val_error"
    worst = 1.0 if key == "val_error" else 1e300
    want = {seed_index * (epochs + 1) + r["epoch"]: (r[key] if math.isfinite(r[key]) else worst)
            for r in rows if r["epoch"] and r["epoch"] % 10 == 0 and r["epoch"] < epochs}
    got = open_study(journal(tmp_path), name, s).trials[trial.number].intermediate_values
    assert got == want and len(want) == 3


# --- how a trial is scored and chosen (slnn.core.trials), in the search and in its report ---

def test_a_diverged_run_scores_1_whatever_its_last_finite_epoch_said():
    from slnn.core.trials import tie_loss, trial_score

    # a diverged run's final figures are its last finite epoch's: 0.2 here, scored 1
    assert trial_score([("max_epochs", 0.1), ("diverged", 0.2)]) == (0.1 + 1.0) / 2
    assert trial_score([("max_epochs", float("nan")), ("converged", None)]) == 1.0
    assert tie_loss([("max_epochs", 0.3), ("diverged", 0.2)]) == float("inf")
    assert tie_loss([("max_epochs", 0.3), ("converged", 0.5)]) == 0.4


def _trials(values):
    import optuna

    study = optuna.create_study()
    for n, v in enumerate(values):
        study.add_trial(optuna.trial.create_trial(
            params={"optim.lr": 10.0 ** -n},
            distributions={"optim.lr": optuna.distributions.FloatDistribution(1e-9, 10, log=True)},
            value=v))
    return study.trials


class _Run:
    """What ``Search.best`` asks of the orchestrator: cells composed from overrides (hashed by
    their text here) and the newest result of each, as ``Orchestrator.results`` gives them."""

    def __init__(self, results):
        self.found = results  # {overrides text: (outcome, val_error, val_loss)}
        self.composed = []

    def compose(self, cells):
        from types import SimpleNamespace

        self.composed += cells
        return [SimpleNamespace(hash=" ".join(c)) for c in cells]

    def results(self, cells):
        return {c.hash: self.found[c.hash] for c in cells if c.hash in self.found}


def _search(run):
    from slnn.sweep.tune import Search

    return Search(run, {"space": SPACE, "trials": 4, "batch": 2, "tune_seeds": "range(100,102)",
                        "confirm_seeds": "range(3)"}, ["update"])


def _cell(arm, lr, seed):
    from slnn.sweep.tune import _value

    return " ".join([*arm, f"optim.lr={_value(lr)}", f"seed={seed}"])


def test_a_tie_in_validation_error_goes_to_the_lower_validation_loss():
    arm = ["update=input"]
    # trials 1 and 2 tie with trial 3 at 0.2 (one sum differs in its last bit); trial 0 is worse
    values = [0.5, 0.2, (0.1 + 0.3) / 2, 0.2]
    losses = {1: (0.9, 0.7), 2: (0.4, 0.2), 3: (0.2, 0.3)}  # trial 3's mean loss is the lowest
    found = {_cell(arm, 10.0 ** -n, s): ("max_epochs", 0.2, loss)
             for n, pair in losses.items() for s, loss in zip((100, 101), pair)}
    run = _Run(found)
    best = _search(run).best({"update=input": (arm, _trials(values))})
    assert best["update=input"]["trial"] == 3
    assert best["update=input"]["params"] == {"optim.lr": 1e-3}
    # only the tied trials' runs were read, every tuning seed of each
    assert sorted(" ".join(c) for c in run.composed) == sorted(found)
    # a seed that diverged makes its trial lose the tie; a trial whose runs are gone too
    found[_cell(arm, 1e-3, 101)] = ("diverged", 0.2, 0.01)
    del found[_cell(arm, 1e-2, 100)]
    assert _search(_Run(found)).best({"update=input": (arm, _trials(values))})[
        "update=input"]["trial"] == 1
    # no tie: the lowest value, no store read
    run = _Run({})
    assert _search(run).best({"update=input": (arm, _trials([0.3, 0.1, 0.2]))})[
        "update=input"]["trial"] == 1 and run.composed == []


def test_the_report_chooses_an_unconfirmed_arms_trial_as_the_search_does():
    """An arm whose confirmation never ran (a search stopped after tuning): its row shows the
    trial the search would confirm; with seeds summed in another order (newest run first) the
    tie is still a tie, and goes to the lower validation loss."""
    import pandas as pd

    from slnn.report.tuning import tuning_table

    rows = []
    for trial, errs, loss in ((0, (5, 8, 9), 0.9), (1, (9, 8, 5), 0.1), (2, (9, 9, 9), 0.0)):
        for i, (seed, k) in enumerate(zip((100, 101, 102), errs)):
            rows.append({"arm": "update=input", "data": "iris", "update": "input",
                         "activation": "tanh", "trial": trial, "lr": 0.1 * (trial + 1),
                         "seed": seed, "outcome": "max_epochs", "status": "FINISHED",
                         "val_error": k / 30, "val_loss": loss, "epochs_run": 10,
                         "start_time": 1000 - 10 * trial - i, "test_error": 0.1})
    table = tuning_table(pd.DataFrame(rows), pd.DataFrame(columns=["arm"]))
    assert int(table.iloc[0]["trial"]) == 1 and table.iloc[0]["lr"] == 0.2


def test_a_tuning_run_is_reused_only_by_a_cell_of_its_own_search():
    """A search prunes on its own settings: another search's tuning run (pruned, or left to
    run where this one would prune) is not this search's, and a grid's or a confirmation's cell
    needs a whole run, which a tuning run may not be."""
    from slnn.sweep.grid import Cell
    from slnn.sweep.resume import NEW, REUSED, plan
    from slnn.tracking.runs import FinishedRun

    def cell(h, search=None):
        return Cell([], None, h, "data1", {}, tags={"slnn.search": search} if search else {})

    def run(h, search=None):
        return FinishedRun(f"r-{h}-{search}", h, "code", "data1", None, 1, None, search)

    finished = {"a": [run("a", "study-A")], "b": [run("b")], "c": [run("c", "study-B")]}
    p = plan([cell("a", "study-A"), cell("a", "study-B"), cell("b", "study-A"), cell("c"),
              cell("b")], finished, "code")
    assert [p.why[h] for h in ("a", "b", "c")] == [NEW, REUSED, NEW]
    assert [plan([c], finished, "code").why[c.hash] for c in (
        cell("a", "study-A"), cell("a", "study-B"), cell("a"), cell("b", "study-A"), cell("b"),
        cell("c"), cell("c", "study-B"))] == [REUSED, NEW, NEW, NEW, REUSED, NEW, REUSED]
