"""Write the report folder's documents: the analysis' tables (summary.csv, tests.csv), report.md
that links the PNGs, and a self-contained report.html with the figures embedded (the data files
they are drawn from are ``slnn.report.datafiles``'s).

Both documents are made from one list of blocks (``document``), so they say the same thing, and
both are a function of the data files and the code but for the ``GENERATED`` line."""

from __future__ import annotations

import base64
import html
import re
import time
from pathlib import Path

import pandas as pd

from slnn.report.figbase import Fig
from slnn.report.frames import SweepData as Sweep
from slnn.report.regenerate import (display_uri, rebuild_command, regenerate_command,
                                     rerender_command)
from slnn.report.sections import Block, analysis_sections, appendix_sections
from slnn.report.stats import outcome_order

DATA_FILES = ("summary.csv", "tests.csv")  # the analysis' own; its inputs: datafiles.py
GENERATED = "- **generated**: "  # the one line of report.md that differs between two renders
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;
font-size:0.8em}th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f3f3f3}code{background:#f3f3f3;padding:0 3px}.note{color:#8a4b00}
.caption{color:#555;font-size:0.9em}.wide{overflow-x:auto;max-width:100%}
.headline{font-size:1.05em;background:#f6f8fa;padding:0.6em 1em;border-left:4px solid #4a7}"""
CODE_KEYS = ("sweep parent run", "tracking URI", "regenerate", "or, with its store",
             "re-render from its data")


def _counts_line(sweep: Sweep) -> str:
    c = sweep.runs["outcome"].value_counts()
    parts = ", ".join(f"{int(c[o])} {o}" for o in outcome_order(c.index))
    cells = f" of {sweep.n_cells} cells" if sweep.n_cells else ""
    return f"{len(sweep.runs)} runs{cells} ({parts}); {sweep.n_children} child runs recorded in all"


def _header(sweep: Sweep, tuning=None) -> list[tuple[str, str]]:
    runs = _counts_line(sweep)
    if tuning is not None:  # ``sweep`` holds the confirming runs (slnn.report.tuning)
        import dataclasses

        n_runs = int(pd.to_numeric(tuning.trials["seed"]).sum()) if len(tuning.trials) else 0
        runs = (f"{n_runs} tuning runs ({len(tuning.trials)} trials, see Tuning), then "
                "confirming: " + _counts_line(dataclasses.replace(sweep, n_cells=None)))
    grid = tuning.grid_name if tuning is not None and tuning.grid_name else ""
    return [("sweep parent run", sweep.parent_run_id),
            ("experiment", f"{sweep.experiment_name} (id {sweep.experiment_id})"),
            ("tracking URI", display_uri(sweep.uri)), ("parent run status", sweep.parent_status),
            ("runs", runs),
            ("regenerate", regenerate_command(sweep, grid)),
            ("or, with its store", rebuild_command(sweep) + (f" --grid {grid}" if grid else "")),
            ("re-render from its data", rerender_command(sweep)),
            ("generated", time.strftime("%Y-%m-%d %H:%M:%S"))]


DATA_NOTE = ("`tidy.parquet`: one row per (run, epoch, metric), columns run_id, data, update, "
             "activation, lr, seed, outcome, epoch, step, metric, value. `runs.csv`: one row per "
             "run (final figures from its last finite epoch, `initial_test_error` at epoch 0, "
             "`val_error` at the final epoch, `chance_error`). `summary.csv`: the summary tables "
             "with numeric columns. `tests.csv`: every test of the report with its raw and "
             "Holm-adjusted p-value. `sweep.json`: the sweep's facts in the header above; "
             "`identity.csv` and `rulecheck.json`, where there are such sections: what they "
             "computed from the store's artifacts and the rules' code, exact figures. The report "
             "is drawn from `sweep.json`, `runs.csv`, `tidy.parquet` and these two alone: "
             "`slnn-report --from <this folder>` draws it again without the store. In a notebook: "
             "`pd.read_parquet('tidy.parquet').query(\"metric == 'val_error'\")`.")


def _anchor(title: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


def document(sweep: Sweep, analysis, figs: list[Fig]) -> tuple[list[str], list[Block]]:
    """(headline sentences, blocks): the answer (its figure and table) first, then the contents
    (``toc``), then every section of the report in order, the per-cell detail last."""
    from slnn.report.answer import caption, display
    from slnn.report.sections import every_run_blocks, time_to_target_blocks

    lead = {"answer", "time_to_target", "performance_profile"}
    blocks: list[Block] = []
    ans = getattr(analysis, "answer", None)
    tuning = getattr(analysis, "tuning", None)
    if ans is not None:
        blocks += [("fig_plain", f) for f in figs if f.key == "answer"]
        blocks += [("table", display(ans)), ("caption", caption(ans) + (
            " " + tuning.caption_words() if tuning is not None else ""))]
    blocks.append(("toc", None))
    if sweep.notes:
        blocks += [("h2", "What is missing"), ("notes", sweep.notes)]
    if tuning is not None:  # a tuned study: slnn.report.tuning
        from slnn.report.tuning import tuning_blocks

        blocks += tuning_blocks(tuning, figs)
        lead = lead | {"tuning_slice"}
    if ans is not None:
        blocks += time_to_target_blocks(ans, [f for f in figs if f.key == "time_to_target"])
        blocks += every_run_blocks(ans, sweep.runs,
                                   [f for f in figs if f.key == "performance_profile"])
    blocks += analysis_sections(sweep, analysis)
    blocks.append(("h2", "Figures"))
    for i, f in enumerate([f for f in figs if f.key not in lead], 1):
        blocks.append(("h3", f"{i}. {f.title}"))
        blocks.append(("fig", f))
    blocks += appendix_sections(analysis)
    blocks += [("h2", "Sweep"), ("ul", [(k, v) for k, v in _header(sweep, tuning)])]
    blocks += [("h2", "Data"), ("p", DATA_NOTE)]
    return analysis.headline, blocks


def markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "*(no rows)*"
    cells = [[str(v).replace("|", "\\|") for v in row] for row in df.itertuples(index=False)]
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "\n".join("| " + " | ".join(r) + " |" for r in cells)


def _inline(text: str) -> str:
    """Escape, then `code` spans and **bold**."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _toc(blocks: list[Block]) -> list[str]:
    return [t for kind, t in blocks if kind == "h2"]


def write_markdown(sweep: Sweep, headline: list[str], blocks: list[Block], out: Path) -> Path:
    lines = [f"# slnn report: {sweep.study}", "", "**" + " ".join(headline) + "**", ""]
    for kind, body in blocks:
        if kind == "toc":
            lines += ["**Contents**: " + " · ".join(f"[{t}](#{_anchor(t)})"
                                                   for t in _toc(blocks)), ""]
        elif kind == "caption":
            lines += [f"*{body}*", ""]
        elif kind == "fig_plain":
            if body.path is not None:
                lines += [f"![{body.title}]({body.path.name})", "", body.caption, ""]
            else:
                lines += [f"*Not drawn: {body.note}*", ""]
        elif kind == "h2":
            lines += [f"## {body}", ""]
        elif kind == "h3":
            lines += [f"### {body}", ""]
        elif kind == "p":
            lines += [body, ""]
        elif kind in ("ul", "notes"):
            lines += [f"- **{x[0]}**: `{x[1]}`" if isinstance(x, tuple) and x[0] in CODE_KEYS
                      else f"- **{x[0]}**: {x[1]}" if isinstance(x, tuple) else f"- {x}"
                      for x in body] + [""]
        elif kind == "table":
            lines += [markdown_table(body), ""]
        elif kind == "fig":
            f = body
            if f.path is None:
                lines += [f"*Not drawn: {f.note}*", ""]
            else:
                note = f" {f.note}." if f.note else ""
                lines += [f"![{f.title}]({f.path.name})", "", f.caption + note, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def write_html(sweep: Sweep, headline: list[str], blocks: list[Block], out: Path) -> Path:
    e = _inline
    title = html.escape(sweep.study)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>slnn report: {title}"
             f"</title><style>{CSS}</style></head><body>", f"<h1>slnn report: {title}</h1>",
             f"<p class='headline'>{e(' '.join(headline))}</p>"]
    for kind, body in blocks:
        if kind == "toc":
            parts.append("<p><b>Contents</b>: " + " · ".join(
                f"<a href='#{_anchor(t)}'>{html.escape(t)}</a>" for t in _toc(blocks)) + "</p>")
        elif kind == "caption":
            parts.append(f"<p class='caption'>{e(body)}</p>")
        elif kind == "fig_plain" and body.path is None:
            parts.append(f"<p class='note'>Not drawn: {e(body.note)}</p>")
        elif kind == "fig_plain" and body.path is None:
            parts.append(f"<p class='note'>Not drawn: {e(body.note)}</p>")
        elif kind == "fig_plain":
            if body.path is not None:
                b64 = base64.b64encode(body.path.read_bytes()).decode("ascii")
                parts.append(f"<img src=\"data:image/png;base64,{b64}\" "
                             f"alt=\"{html.escape(body.title)}\">")
        elif kind == "h2":
            parts.append(f"<h2 id='{_anchor(body)}'>{e(body)}</h2>")
        elif kind == "h3":
            parts.append(f"<h3>{e(body)}</h3>")
        elif kind == "p":
            parts.append(f"<p>{e(body)}</p>")
        elif kind in ("ul", "notes"):
            cls = " class='note'" if kind == "notes" else ""
            items = [f"<li><b>{x[0]}</b>: <code>{html.escape(x[1])}</code></li>"
                     if isinstance(x, tuple) and x[0] in CODE_KEYS
                     else f"<li><b>{x[0]}</b>: {html.escape(x[1])}</li>" if isinstance(x, tuple)
                     else f"<li{cls}>{e(x)}</li>" for x in body]
            parts.append("<ul>" + "".join(items) + "</ul>")
        elif kind == "table":
            # cells as the Markdown has them: escaped, with `code` and **bold** as in the text
            cells = body.map(lambda v: "n/a" if v is None or (isinstance(v, float) and v != v)
                             else _inline(str(v)))
            parts.append("<div class='wide'>" + (cells.to_html(index=False, border=0,
                                                                 escape=False)
                                                 if not body.empty else "<p>(no rows)</p>")
                         + "</div>")
        elif kind == "fig":
            f = body
            if f.path is None:
                parts.append(f"<p class='note'>Not drawn: {e(f.note)}</p>")
                continue
            b64 = base64.b64encode(f.path.read_bytes()).decode("ascii")
            parts.append(f"<img src=\"data:image/png;base64,{b64}\" alt=\"{html.escape(f.title)}\">")
            parts.append(f"<p class='caption'>{e(f.caption + (f' {f.note}.' if f.note else ''))}</p>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def write_data(sweep: Sweep, analysis, out: Path) -> list[Path]:
    """The analysis' tables, for a notebook (the data they come from is written by
    ``datafiles.write_inputs``, before any analysis)."""
    analysis.summary.join(analysis.learn).to_csv(out / "summary.csv", index=False)
    analysis.tests.to_csv(out / "tests.csv", index=False)
    files = [out / f for f in DATA_FILES]
    tuning = getattr(analysis, "tuning", None)
    if tuning is not None:  # a tuned study's tables (slnn.report.tuning)
        tuning.table.to_csv(out / "tuning.csv", index=False)
        files.append(out / "tuning.csv")
        if tuning.comparison is not None:
            tuning.comparison.to_csv(out / "grid_comparison.csv", index=False)
            files.append(out / "grid_comparison.csv")
    return files


def render(sweep: Sweep, analysis, figs: list[Fig], out: Path) -> list[Path]:
    """Write the tables, report.md and report.html into ``out``; returns them and the figures."""
    files = write_data(sweep, analysis, out)
    headline, blocks = document(sweep, analysis, figs)
    files.append(write_markdown(sweep, headline, blocks, out))
    files.append(write_html(sweep, headline, blocks, out))
    return files + [f.path for f in figs if f.path is not None]


# kept for callers of the old name: the summary as people read it
def display_table(summary: pd.DataFrame, learn: pd.DataFrame | None = None) -> pd.DataFrame:
    from slnn.report.sections import summary_display

    return summary_display(summary, learn)
