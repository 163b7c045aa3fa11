"""Reports: how the update rules compare, from what a sweep left in MLflow.

    slnn-report --parent-run <id> --out reports/       # one sweep (``report_for_parent``)
    slnn-report --from reports/guide_vs_correct        # again from its data files (``report_from``)

Reading the store (``source``, ``frames``) ends by writing the data files (``datafiles``); every
report is then drawn from those files alone (``analyse``, ``make_figures``, ``render``), so a
report is a function of its data and the code. docs/reports.md describes the phases.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from slnn.report.frames import SweepData
from slnn.report.source import ReportError, newest_sweep, read_sweep

__all__ = ["Analysis", "ReportError", "SweepData", "analyse", "default_out", "newest_sweep",
           "read_sweep", "report_for_parent", "report_from"]

_COMPUTE = object()  # analyse's default: compute what was not given


@dataclass
class Analysis:
    """What the report says, before it is drawn or written."""

    summary: pd.DataFrame  # one row per (data, update, activation, lr): stats.summary_table
    tests: pd.DataFrame  # every paired test, Holm-corrected together: compare.tests_table
    learn: pd.DataFrame  # per summary row: does the rule learn there (verdict.learning_verdicts)
    verdict: list[str]
    headline: list[str]
    identity: pd.DataFrame | None = None  # the cos(z, x) identity on logged runs, if any
    # each rule next to its checker verdict (slnn.report.rulecheck), when the sweep trains a rule
    # other than the guide's two
    rule_checks: dict | None = None
    answer: object = None  # the first screen: slnn.report.answer.Answer
    tuning: object = None  # a tuned study's Tuning section: slnn.report.tuning.Tuning


def analyse(sweep: SweepData | pd.DataFrame, fetch=None, *, identity=_COMPUTE,
            rule_checks=_COMPUTE, target_error: float = 0.1) -> Analysis:
    """The summary, the tests, the words, of a sweep (or of its runs frame); with ``fetch``
    (``source.artifact_reader``), also the identity of ``slnn.report.step_cosine`` on a few logged
    runs of the guide's rule. ``identity`` and ``rule_checks``, when given (None included), are
    used as they are instead of being computed (a report's data files hold them)."""
    from slnn.report.compare import tests_table
    from slnn.report.step_cosine import RULE, check_runs
    from slnn.report.stats import summary_table
    from slnn.report.verdict import learning_verdicts, verdict

    runs = sweep.runs if isinstance(sweep, SweepData) else sweep  # a runs frame will do
    from slnn.report.answer import best_flags, build

    summary = summary_table(runs)
    if len(summary):
        summary["best"] = best_flags(summary, runs)  # chosen on half the seeds (selection)
    tests = tests_table(runs, summary)
    history = sweep.history if isinstance(sweep, SweepData) else None
    answer, tests = build(runs, tests, history, target_error)
    learn = learning_verdicts(summary, tests)
    if identity is _COMPUTE:
        identity = check_runs(runs, fetch) if fetch is not None and (
            runs["update"] == RULE).any() else None
    if rule_checks is _COMPUTE:
        from slnn.report.rulecheck import applies, check_rules

        rule_checks = check_rules(runs) if applies(runs) else None
    return Analysis(summary, tests, learn, verdict(runs, summary, tests, learn),
                    answer.sentences, identity, rule_checks, answer)


def default_out(study: str, parent_run_id: str) -> Path:
    """``reports/<study>-<first 8 characters of the parent run id>/`` under the current
    directory: a folder of this sweep's own, never a committed report's ``reports/<study>/``."""
    from slnn.report.figbase import _slug

    return Path("reports") / f"{_slug(study)}-{parent_run_id[:8]}"


def store_results(uri: str, sweep: SweepData) -> tuple[pd.DataFrame | None, dict | None]:
    """What a report needs beyond the runs and histories, computed where the store is: the
    identity on logged runs (their artifacts), and the checker's results per rule."""
    from slnn.report.step_cosine import RULE, check_runs
    from slnn.report.rulecheck import applies, check_rules
    from slnn.report.source import artifact_reader

    runs = sweep.runs
    identity = check_runs(runs, artifact_reader(uri)) if (runs["update"] == RULE).any() else None
    checks = check_rules(runs) if applies(runs) else None
    return identity, checks


def _give_back() -> None:
    """Hand the heap's free memory back to the system (glibc's ``malloc_trim``): what reading the
    store freed would otherwise stay in this process under the rendering's own peak."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def render_from(src: str | Path, out: str | Path | None = None, *,
                target_error: float | None = None, timings: dict | None = None,
                grid: str | Path | None = None, grid_how: str = "crossfit",
                derived: bool = False) -> tuple[Path, list[Path]]:
    """Render the report from the data files in ``src`` into ``out`` (default: ``src``); returns
    the folder and every file of the report. The one way any report is drawn. ``timings``, if
    given, receives the seconds spent loading, analysing and plotting, and rendering. A tuned
    study (``slnn.report.tuning``) is analysed on its confirming runs and gets a Tuning
    section; ``grid`` (a grid report's folder) adds the comparison with the grid's cell per arm
    (``grid_how``: ``tuning.HOW``), and its runs are kept with the data files. ``derived``:
    ``datafiles.load_inputs``'s."""
    from slnn.report import tuning as tn
    from slnn.report.datafiles import copy_inputs, load_inputs
    from slnn.report.figures import make_figures, palette, start_figures
    from slnn.report.render import render

    t0 = time.perf_counter()
    src = Path(src)
    folder = Path(out) if out is not None else src
    inputs = load_inputs(src, derived=derived)
    sweep, tuning = inputs.sweep, None
    tuned = tn.is_tuned(sweep.runs)
    if grid is not None and not tuned:
        raise tn.GridError(f"--grid {grid}: this sweep has no tuning stage (no run tagged "
                           "slnn.stage): --grid compares a tuned study with a grid; drop it")
    grid_runs = tn.load_grid(grid) if grid is not None else None
    copy_inputs(src, folder)
    if tuned:
        sweep, tune = tn.split_stages(sweep)
        if grid_runs is not None:
            from slnn.report.datafiles import shown_folder

            tn.keep_grid(grid_runs, sweep.runs, folder, shown_folder(Path(grid))
                         or Path(grid).name, grid_how)
            inputs.facts = json.loads((folder / "sweep.json").read_text())
        elif tn.GRID_RUNS in inputs.facts.get("files", []):
            from slnn.report.datafiles import read_runs

            grid_runs = read_runs(folder / tn.GRID_RUNS)
        tuning = tn.analyse_tuning(tune, sweep.runs, grid_runs, inputs.facts.get("grid", ""),
                                   inputs.facts.get("grid_how", grid_how))
    target = inputs.facts.get("target_error", 0.1) if target_error is None else target_error
    drawing = start_figures(sweep, folder)  # the runs' own figures, beside the analysis
    analysis = analyse(sweep, identity=inputs.identity, rule_checks=inputs.rule_checks,
                       target_error=target)
    analysis.tuning = tuning
    figs = make_figures(sweep, analysis.summary, folder, analysis.answer, drawing)
    if tuning is not None:
        figs.append(tn.slice_figure(tuning, folder, palette(inputs.sweep.runs)))
    t = time.perf_counter()
    files = [folder / f for f in inputs.facts["files"]] + render(sweep, analysis, figs, folder)
    if timings is not None:
        timings.update(plot=t - t0, render=time.perf_counter() - t)
    return folder.resolve(), files


def report_from(src: str | Path, out: str | Path | None = None, *,
                target_error: float | None = None, grid: str | Path | None = None) -> Path:
    """``slnn-report --from``: the report drawn again from its data files, with no store.
    Raises ``datafiles.MissingData`` (one line naming the file) when ``src`` lacks one."""
    return render_from(src, out, target_error=target_error, grid=grid)[0]


def report_for_parent(uri: str, parent_run_id: str, attach: bool = False, *,
                      out: str | Path | None = None, target_error: float = 0.1,
                      timings: dict | None = None, grid: str | Path | None = None) -> Path:
    """Write the report of the sweep under ``parent_run_id`` and return its folder.

    Reads the store, writes the data files (``slnn.report.datafiles``) into the folder, then
    renders the report from those files as ``report_from`` does. ``out`` defaults to
    ``reports/<study>-<parent id 8>/`` (``default_out``); ``attach`` also logs the report's files
    to the parent run under ``report/``. ``timings``, if given, receives the seconds spent
    reading, plotting and rendering, and attaching. Raises ``ReportError`` (one line) when there
    is nothing to report.
    """
    from slnn.report.datafiles import TIDY, TidyWriter, write_inputs
    from slnn.report.source import parent_run

    t0 = time.perf_counter()
    if out is None:
        study = parent_run(uri, parent_run_id).data.tags.get("slnn.study", "sweep")
        out = default_out(study, parent_run_id)
    folder = Path(out)
    # the histories go to tidy.parquet a chunk of runs at a time as they are read, never all
    # held at once; the file takes its name once complete. A thread writes each chunk while the
    # next is read (pyarrow converts and compresses without the interpreter lock), one behind
    part = folder / (TIDY + ".part")
    writer: list = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slnn-tidy")
    behind: list = []

    def on_chunk(runs: pd.DataFrame, history: pd.DataFrame) -> None:
        if not writer:
            folder.mkdir(parents=True, exist_ok=True)
            writer.append(TidyWriter(part, runs))
        while behind:
            behind.pop().result()
        behind.append(pool.submit(writer[0].write, runs, history))

    try:
        sweep = read_sweep(uri, parent_run_id, on_chunk=on_chunk)
        while behind:
            behind.pop().result()
        pool.shutdown()
        writer[0].close()
        part.replace(folder / TIDY)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        if writer:
            with suppress(Exception):  # what failed is said by the error raised below
                writer[0].close()
            with suppress(OSError):  # a folder that can no longer be changed keeps it
                part.unlink(missing_ok=True)
        raise
    identity, checks = store_results(uri, sweep)
    write_inputs(sweep, folder, target_error=target_error, identity=identity,
                 rule_checks=checks, tidy_written=True)
    del sweep, identity, checks  # the report is drawn from the files, as report_from does
    _give_back()
    t1 = time.perf_counter()
    spent: dict = {}
    # runs.csv's columns made from the histories were just made by this code: not again
    folder, files = render_from(folder, timings=spent, grid=grid, derived=True)
    t2 = time.perf_counter()
    if attach:
        from slnn.report.source import open_client

        client = open_client(uri)
        for f in files:
            client.log_artifact(parent_run_id, str(f), artifact_path="report")
    if timings is not None:
        timings.update(read=t1 - t0, plot=spent["plot"], render=spent["render"],
                       attach=time.perf_counter() - t2)
    return folder
