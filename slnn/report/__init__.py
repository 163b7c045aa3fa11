"""Reports: how the update rules compare, from what a sweep left in MLflow.

    slnn-report --experiment slnn                      # the newest sweep of that experiment
    slnn-report --parent-run <id> --out reports/       # one sweep
    python -c "from slnn.report import report_for_parent as r; print(r('sqlite:///mlflow.db', '<id>'))"

A report is made in three phases, each usable on its own from a notebook:
``read_sweep`` (MLflow -> pandas frames, ``source`` and ``frames``), ``analyse`` (summary
table, tests, headline and verdict: ``stats``, ``compare``, ``verdict``, ``identity``) plus
``make_figures`` (PNGs), and ``render`` (report.md, report.html, tidy.parquet, runs.csv,
summary.csv, tests.csv). The sweep callback calls ``report_for_parent(uri, parent, attach=True)`` after
every multirun.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from slnn.report.frames import SweepData
from slnn.report.source import ReportError, newest_sweep, read_sweep

__all__ = ["Analysis", "ReportError", "SweepData", "analyse", "default_out", "newest_sweep",
           "read_sweep",
           "report_for_parent"]


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


def analyse(sweep: SweepData | pd.DataFrame, fetch=None) -> Analysis:
    """The summary, the tests, the words, of a sweep (or of its runs frame); with ``fetch``
    (``source.artifact_reader``), also the identity of ``slnn.report.identity`` on a few logged runs of the guide's rule."""
    from slnn.report.compare import tests_table
    from slnn.report.identity import RULE, check_runs
    from slnn.report.stats import summary_table
    from slnn.report.verdict import headline, learning_verdicts, verdict

    runs = sweep.runs if isinstance(sweep, SweepData) else sweep  # a runs frame will do
    summary = summary_table(runs)
    tests = tests_table(runs, summary)
    learn = learning_verdicts(summary, tests)
    identity = None
    if fetch is not None and (runs["update"] == RULE).any():
        identity = check_runs(runs, fetch)
    from slnn.report.rulecheck import applies, check_rules

    checks = check_rules(runs) if applies(runs) else None
    return Analysis(summary, tests, learn, verdict(runs, summary, tests, learn),
                    headline(runs, summary, tests, learn), identity, checks)


def default_out(study: str) -> Path:
    """``reports/<study>/`` under the current directory."""
    from slnn.report.figures import _slug

    return Path("reports") / _slug(study)


def report_for_parent(uri: str, parent_run_id: str, attach: bool = False, *,
                      out: str | Path | None = None, target_error: float = 0.1,
                      timings: dict | None = None) -> Path:
    """Write the report of the sweep under ``parent_run_id`` and return its folder.

    ``out`` defaults to ``reports/<study>/``; ``attach`` also logs the report's files to the
    parent run under ``report/``. ``timings``, if given, receives the seconds spent reading,
    plotting and rendering. Raises ``ReportError`` (one line) when there is nothing to report.
    """
    from slnn.report.figures import make_figures
    from slnn.report.render import render

    t0 = time.perf_counter()
    sweep = read_sweep(uri, parent_run_id)
    sweep.tidy  # noqa: B018 (built here, so that reading is timed as reading)
    t1 = time.perf_counter()
    # an ad-hoc grid (study "sweep") gets a folder of its own, not one shared by every grid
    name = sweep.study if sweep.study != "sweep" else f"sweep-{parent_run_id[:8]}"
    folder = Path(out) if out is not None else default_out(name)
    folder.mkdir(parents=True, exist_ok=True)
    from slnn.report.source import artifact_reader

    analysis = analyse(sweep, fetch=artifact_reader(uri))
    figs = make_figures(sweep, analysis.summary, folder, target_error)
    t2 = time.perf_counter()
    files = render(sweep, analysis, figs, folder)
    t3 = time.perf_counter()
    if attach:
        from slnn.report.source import open_client

        client = open_client(uri)
        for f in files:
            client.log_artifact(parent_run_id, str(f), artifact_path="report")
    if timings is not None:
        timings.update(read=t1 - t0, plot=t2 - t1, render=t3 - t2,
                       attach=time.perf_counter() - t3)
    return folder.resolve()
