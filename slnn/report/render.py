"""Write the report folder: the data (tidy.parquet, runs.csv, summary.csv), report.md that links
the PNGs, and a self-contained report.html with the figures embedded as base64."""

from __future__ import annotations

import base64
import html
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from slnn.report.figures import Fig
from slnn.core.outcomes import FAILED, Outcome
from slnn.report.frames import SweepData as Sweep
from slnn.report.stats import outcome_order
from slnn.tracking.console import portable

DATA_FILES = ("tidy.parquet", "runs.csv", "summary.csv")
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;
font-size:0.85em}th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 3px}.note{color:#8a4b00}
.caption{color:#555;font-size:0.9em}"""


def _ci(lo: float, hi: float, n: int, digits: int) -> str:
    if n == 0:
        return "n/a (no value)"
    if n == 1 or not np.isfinite(lo):
        return "n/a (1 seed)"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _num(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else "n/a"


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as people read it: intervals as text, outcome counts in one column."""
    if summary.empty:
        return pd.DataFrame()
    counts = [c for c in summary.columns if c.startswith("n_") and c not in ("n_runs", "n_seeds")]
    rows = []
    for _, r in summary.iterrows():
        untrained = (Outcome.SHAPE_MISMATCH, *FAILED)
        n_ep = int(r["n_runs"] - sum(r.get(f"n_{o}", 0) for o in untrained))
        rows.append({
            "data": r["data"], "update": r["update"], "activation": r["activation"],
            "lr": f"{r['lr']:g}", "runs": int(r["n_runs"]), "seeds": int(r["n_seeds"]),
            "test error": _num(r["test_error_mean"], 3),
            "test error 95% CI": _ci(r["test_error_lo"], r["test_error_hi"], int(r["n_seeds"]), 3),
            "epochs run": _num(r["epochs_mean"], 1),
            "epochs 95% CI": _ci(r["epochs_lo"], r["epochs_hi"], n_ep, 1),
            "outcomes": ", ".join(f"{int(r[c])} {c[2:]}" for c in counts if r[c] > 0),
        })
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "*(no rows)*"
    cells = [[str(v).replace("|", "\\|") for v in row] for row in df.itertuples(index=False)]
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "\n".join("| " + " | ".join(r) + " |" for r in cells)


def _counts_line(sweep: Sweep) -> str:
    c = sweep.runs["outcome"].value_counts()
    parts = ", ".join(f"{int(c[o])} {o}" for o in outcome_order(c.index))
    cells = f" of {sweep.n_cells} cells" if sweep.n_cells else ""
    return f"{len(sweep.runs)} runs{cells} ({parts}); {sweep.n_children} child runs recorded in all"


def _rebuild(sweep: Sweep) -> str:
    return portable(f"slnn-report --parent-run {sweep.parent_run_id} --tracking-uri {sweep.uri}")


def _regen(sweep: Sweep) -> str:
    """The sweep's own command (it writes its report when it ends), which works in a clone."""
    if sweep.command:
        return portable(sweep.command)
    return f"slnn-train -m +experiment={sweep.study}" if sweep.study != "sweep" else _rebuild(sweep)


CODE_KEYS = ("sweep parent run", "tracking URI", "regenerate", "or, with its store")


def _header(sweep: Sweep) -> list[tuple[str, str]]:
    """No path of the machine that made the report (committed reports are read elsewhere): paths
    below the folder it was made in are relative to it (for committed reports: the repository)."""
    return [("sweep parent run", sweep.parent_run_id),
            ("experiment", f"{sweep.experiment_name} (id {sweep.experiment_id})"),
            ("tracking URI", portable(sweep.uri)), ("parent run status", sweep.parent_status),
            ("runs", _counts_line(sweep)), ("generated", time.strftime("%Y-%m-%d %H:%M:%S")),
            ("regenerate", _regen(sweep)), ("or, with its store", _rebuild(sweep))]


STATS_NOTE = ("Intervals are 95% t-intervals over seeds, mean +- t(0.975, n - 1) * sd / sqrt(n), "
              "computed by slnn with pandas and scipy (figure bands too; not seaborn's "
              "bootstrap). With one seed there is no interval; with few seeds an interval of an "
              "error rate can reach past [0, 1]. The test error is the last epoch's; the epochs "
              "are counted over the runs that trained (not shape_mismatch, failed or killed).")
DATA_NOTE = ("`tidy.parquet`: one row per (run, epoch, metric), columns run_id, data, update, "
             "activation, lr, seed, outcome, epoch, step, metric, value. `runs.csv`: one row per "
             "run. `summary.csv`: the table above with numeric columns. In a notebook: "
             "`pd.read_parquet('tidy.parquet').query(\"metric == 'val_error'\")`.")


def write_markdown(sweep: Sweep, table: pd.DataFrame, verdict: list[str], figs: list[Fig],
                   out: Path) -> Path:
    lines = [f"# slnn report: {sweep.study}", ""]
    lines += [f"- **{k}**: `{v}`" if k in CODE_KEYS else f"- **{k}**: {v}" for k, v in _header(sweep)]
    lines += ["", "## Verdict", ""] + [f"- {v}" for v in verdict or ["no run has ended yet."]]
    if sweep.notes:
        lines += ["", "## What is missing", ""] + [f"- {n}" for n in sweep.notes]
    lines += ["", "## Figures", ""]
    for i, f in enumerate(figs, 1):
        lines += [f"### {i}. {f.title}", ""]
        if f.path is None:
            lines += [f"*Not drawn: {f.note}*", ""]
            continue
        note = f" {f.note}." if f.note else ""
        lines += [f"![{f.title}]({f.path.name})", "", f.caption + note, ""]
    lines += ["## Summary table", "", markdown_table(table), "", STATS_NOTE, "",
              "## Data", "", DATA_NOTE, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _inline(text: str) -> str:
    """Escape, then `code` spans (the verdict's rule names)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def write_html(sweep: Sweep, table: pd.DataFrame, verdict: list[str], figs: list[Fig],
               out: Path) -> Path:
    e = _inline
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>slnn report: "
             f"{html.escape(sweep.study)}</title><style>{CSS}</style></head><body>",
             f"<h1>slnn report: {html.escape(sweep.study)}</h1><ul>"]
    parts += [f"<li><b>{k}</b>: <code>{html.escape(v)}</code></li>" if k in CODE_KEYS
              else f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in _header(sweep)]
    parts.append("</ul><h2>Verdict</h2><ul>")
    parts += [f"<li>{e(v)}</li>" for v in verdict or ["no run has ended yet."]]
    parts.append("</ul>")
    if sweep.notes:
        parts.append("<h2>What is missing</h2><ul>")
        parts += [f"<li class='note'>{e(n)}</li>" for n in sweep.notes]
        parts.append("</ul>")
    parts.append("<h2>Figures</h2>")
    for i, f in enumerate(figs, 1):
        parts.append(f"<h3>{i}. {e(f.title)}</h3>")
        if f.path is None:
            parts.append(f"<p class='note'>Not drawn: {e(f.note)}</p>")
            continue
        b64 = base64.b64encode(f.path.read_bytes()).decode("ascii")
        parts.append(f"<img src=\"data:image/png;base64,{b64}\" alt=\"{html.escape(f.title)}\">")
        parts.append(f"<p class='caption'>{e(f.caption + (f' {f.note}.' if f.note else ''))}</p>")
    parts.append("<h2>Summary table</h2>")
    parts.append(table.to_html(index=False, border=0, na_rep="n/a") if not table.empty
                 else "<p>(no rows)</p>")
    parts.append(f"<p class='caption'>{e(STATS_NOTE)}</p><h2>Data</h2><p>{e(DATA_NOTE)}</p>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def write_data(sweep: Sweep, summary: pd.DataFrame, out: Path) -> list[Path]:
    """The numbers behind the report, for a notebook."""
    sweep.tidy.to_parquet(out / "tidy.parquet", index=False)
    sweep.runs.drop(columns=["artifact_uri"]).to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    return [out / f for f in DATA_FILES]


def render(sweep: Sweep, summary: pd.DataFrame, verdict: list[str], figs: list[Fig],
           out: Path) -> list[Path]:
    """Write data, report.md and report.html into ``out``; returns every file of the report."""
    table = display_table(summary)
    files = write_data(sweep, summary, out)
    files.append(write_markdown(sweep, table, verdict, figs, out))
    files.append(write_html(sweep, table, verdict, figs, out))
    return files + [f.path for f in figs if f.path is not None]
