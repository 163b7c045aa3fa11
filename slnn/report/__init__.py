"""Reports: how the update rules compare, from what a sweep left in MLflow.

    slnn-report --experiment slnn                      # the newest sweep of that experiment
    slnn-report --parent-run <id> --out reports/       # one sweep
    python -c "from slnn.report import report_for_parent as r; print(r('sqlite:///mlflow.db', '<id>'))"

A report is made in three phases, each usable on its own from a notebook:
``read_sweep`` (MLflow -> pandas frames, ``source`` and ``frames``), ``analyse`` (summary table and verdict) plus
``make_figures`` (PNGs), and ``render`` (report.md, report.html, tidy.parquet, runs.csv,
summary.csv). The sweep callback calls ``report_for_parent(uri, parent, attach=True)`` after
every multirun.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from slnn.report.frames import SweepData
from slnn.report.source import ReportError, newest_sweep, read_sweep

__all__ = ["ReportError", "SweepData", "analyse", "default_out", "newest_sweep", "read_sweep",
           "report_for_parent"]


def analyse(sweep: SweepData) -> tuple[pd.DataFrame, list[str]]:
    """The summary table and the verdict written from it."""
    from slnn.report.stats import summary_table
    from slnn.report.verdict import verdict

    summary = summary_table(sweep.runs)
    return summary, verdict(sweep.runs, summary)


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
    summary, lines = analyse(sweep)
    figs = make_figures(sweep, summary, folder, target_error)
    t2 = time.perf_counter()
    files = render(sweep, summary, lines, figs, folder)
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
