"""The report's figures, drawn with seaborn onto the Agg backend and saved as PNG: the answer's
and the curves' (``slnn.report.answer_figures``), and here the heatmaps, the outcomes and the
guide's own plot.

Each figure function returns ``Fig`` records: a drawn figure has a ``path``; one that could not be
drawn has ``path=None`` and a ``note`` saying why, so the report never shows an empty image as a
result.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from slnn.core.outcomes import Outcome  # noqa: E402
from slnn.report.answer_figures import (answer_figure, best_lr_cosines,  # noqa: E402
                                        best_lr_curves, km_figure, profile_figure)
from slnn.report.facets import band  # noqa: E402
from slnn.report.figbase import BAND, Fig, _save, _slug, _suptitle  # noqa: E402
from slnn.report.frames import SweepData as Sweep  # noqa: E402
from slnn.report.stats import bands, outcome_order  # noqa: E402
from slnn.report.verdict import mismatch_reason  # noqa: E402

OUTCOME_COLOURS = {Outcome.CONVERGED: "#2ca02c", Outcome.EARLY_STOPPED: "#17becf",
                   Outcome.MAX_EPOCHS: "#1f77b4", Outcome.DIVERGED: "#d62728",
                   Outcome.SHAPE_MISMATCH: "#7f7f7f", Outcome.PRUNED: "#8c564b",
                   Outcome.FAILED: "#000000",
                   Outcome.KILLED: "#9467bd", Outcome.UNKNOWN: "#bcbd22", Outcome.RUNNING: "#ff7f0e"}
# file names a report writes (epochs_to_target.png: older reports'); the report folder is
# cleared of these before a new report, so that a figure not drawn again does not linger
PATTERNS = ("curves_*.png", "grad_cosine_*.png", "test_error_heatmap*.png", "outcomes.png",
            "epochs_to_target.png", "guide_plot.png", "answer.png", "time_to_target.png",
            "performance_profile.png", "tuning_slice.png")


def palette(runs: pd.DataFrame) -> dict:
    """One colour per update rule, the same in every figure."""
    rules = sorted(runs["update"].unique())
    return dict(zip(rules, sns.color_palette("colorblind", max(len(rules), 1))))


def _missing_rules(sweep: Sweep, data: str, present) -> str:
    """'kronecker: no curves (75 shape_mismatch: (3, 3) step vs (5, 3) W)' for each rule of
    ``data`` that has nothing to draw."""
    d = sweep.done[sweep.done["data"] == data]
    out = []
    for rule in sorted(set(d["update"]) - set(present)):
        r = d[d["update"] == rule]
        parts = []
        for o, n in r["outcome"].value_counts().items():
            shapes = r.loc[r["outcome"] == o, "reason"]
            parts.append(f"{n} {o}: {mismatch_reason(shapes)}" if o == Outcome.SHAPE_MISMATCH
                         else f"{n} {o}")
        out.append(f"{rule}: no curves ({', '.join(parts)})")
    return "; ".join(out)


def heatmap(sweep: Sweep, summary: pd.DataFrame, out: Path) -> list[Fig]:
    """2. Mean final test error over (activation, lr), one panel per (data, update rule)."""
    key, title = "test_error_heatmap", "mean final test error over learning rate x activation"
    cap = ("mean final test error over the seeds that trained without diverging, in each "
           "(activation, learning rate) cell; one figure per data set, one panel per update "
           "rule; grey n/a: no run of that cell has a test error "
           "(e.g. shape_mismatch). The numbers and their intervals are in the summary table.")
    s = summary.dropna(subset=["test_error_mean"]) if "test_error_mean" in summary else summary[:0]
    if s.empty:
        return [Fig(key, title, cap, note="no run has a final test error, so there is no heatmap "
                    "(see the outcomes figure for what happened instead).")]
    datas, rules = sorted(summary["data"].unique()), sorted(summary["update"].unique())
    cmap = sns.color_palette("rocket_r", as_cmap=True)
    figs = []
    for data in datas:
        d = summary[summary["data"] == data]
        acts, lrs = sorted(d["activation"].unique()), sorted(d["lr"].unique())
        here = [r for r in rules if (d["update"] == r).any()]
        ncol = min(3, len(here))
        nrow = int(np.ceil(len(here) / ncol))
        fig, axes = plt.subplots(nrow, ncol, squeeze=False, layout="constrained",
                                 figsize=(10.0, 0.6 + (0.42 * len(acts) + 0.9) * nrow))
        for ax in axes.flat[len(here):]:
            ax.set_visible(False)
        for j, (ax, rule) in enumerate(zip(axes.flat, here)):
            piv = (d[d["update"] == rule].pivot(index="activation", columns="lr",
                                                 values="test_error_mean")
                   .reindex(index=acts, columns=lrs))
            # sns.heatmap's look, drawn with pcolormesh: sns.heatmap draws the whole figure once
            # per panel to decide whether to rotate its tick labels
            mesh = ax.pcolormesh(np.ma.masked_invalid(piv.values), cmap=cmap, vmin=0, vmax=1,
                                 edgecolors="white", linewidth=0.5)
            ax.set_xlim(0, len(lrs))
            ax.set_ylim(len(acts), 0)
            ax.set_xticks(np.arange(len(lrs)) + 0.5, [f"{x:g}" for x in lrs], fontsize=9,
                          rotation=45 if len(lrs) > 5 else 0)
            ax.set_yticks(np.arange(len(acts)) + 0.5, acts if j % ncol == 0 else [], fontsize=9)
            ax.tick_params(length=0)
            for side in ax.spines.values():
                side.set_visible(False)
            ax.set_facecolor("#dddddd")
            for (r, c), v in np.ndenumerate(piv.values):
                if np.isnan(v):
                    text, colour = "n/a", "0.3"
                else:
                    text, colour = f"{v:.2f}", "white" if v > 0.45 else "black"
                ax.text(c + 0.5, r + 0.5, text, ha="center", va="center", fontsize=9,
                        color=colour)
            ax.set_title(rule, fontsize=10, loc="left")
            ax.set_xlabel("learning rate", fontsize=9)
        fig.colorbar(mesh, ax=axes, label="mean final test error", shrink=0.8, aspect=30)
        _suptitle(fig, f"{data}: {title}")
        k = key if len(datas) == 1 else f"{key}_{_slug(data)}"
        figs.append(Fig(k, f"{data}: {title}", cap, _save(fig, out / f"{k}.png", tight=False)))
    return figs


def outcomes(sweep: Sweep, pal: dict, out: Path) -> list[Fig]:
    """4. How each rule's runs ended, per data set."""
    key, title = "outcomes", "how the runs ended, per update rule"
    cap = ("number of runs per outcome (converged, early-stopped, max-epochs, diverged, "
           "shape-mismatch; failed/killed/running if any), per update rule and data set.")
    runs = sweep.runs
    if runs.empty:
        return [Fig(key, title, cap, note="the sweep has no runs.")]
    counts = runs.groupby(["data", "update", "outcome"]).size().rename("runs").reset_index()
    order = outcome_order(counts["outcome"])
    datas = sorted(counts["data"].unique())
    g = sns.catplot(counts, kind="bar", x="update", y="runs", hue="outcome", col="data",
                    hue_order=order, col_order=datas, order=list(pal),
                    palette={o: OUTCOME_COLOURS.get(o, "#888888") for o in order},
                    col_wrap=min(len(datas), 3), height=2.8,
                    aspect=1.05 if len(datas) > 1 else 2.6, sharey=False)
    for ax in g.axes.flat:
        ax.grid(axis="y", alpha=0.3)
        for cont in ax.containers:
            ax.bar_label(cont, fontsize=9, padding=1)
        ax.tick_params(axis="x", rotation=30 if len(pal) > 3 else 0, labelsize=9)
        ax.tick_params(axis="y", labelsize=9)
    g.set_titles("{col_name}")
    g.set_axis_labels("update rule", "runs")
    _suptitle(g.figure, title, y=1.0, va="bottom")
    return [Fig(key, title, cap, _save(g.figure, out / f"{key}.png"))]


def guide_plot(sweep: Sweep, pal: dict, out: Path) -> list[Fig]:
    """6. The guide's own plot: regression and classification error on each split vs steps."""
    key, title = "guide_plot", f"the guide's plot: error vs learning time, per update rule ({BAND})"
    cap = ("regression error (mean (t - z)^2, solid) and classification error (dashed) on the "
           "training, validation and test sets vs training steps, as the guide plots them; rows: "
           f"data set, columns: update rule; {BAND}; a run that converged keeps its last value.")
    metrics = [f"{s}_{k}" for k in ("loss", "error") for s in ("train", "val", "test")]
    b = bands(sweep, metrics, hold_last=True)
    if b.dropna(subset=["mean"]).empty:
        return [Fig(key, title, cap, note="no run has a history: nothing to plot.")]
    datas, rules = sorted(sweep.done["data"].unique()), list(pal)
    fig, axes = plt.subplots(len(datas), len(rules), squeeze=False, sharey=True,
                             figsize=(4.2 * len(rules) + 1.5, 3.0 * len(datas)))
    others = []
    for i, data in enumerate(datas):
        for j, rule in enumerate(rules):
            ax = axes[i, j]
            sub = b[(b["data"] == data) & (b["update"] == rule)]
            ax.set_title(f"{data}: {rule}", fontsize=10)
            if sub.dropna(subset=["mean"]).empty:
                why = _missing_rules(sweep, data, set(sweep.done["update"]) - {rule}) or "no runs"
                ax.text(0.5, 0.5, textwrap.fill(why, 40), ha="center", va="center",
                        transform=ax.transAxes, fontsize=9, color="0.3")
                ax.set_xticks([])
                continue
            cells = sub.groupby(["activation", "lr"])["n"].max().sort_values(ascending=False)
            act, lr = cells.index[0]
            if len(cells) > 1:
                others.append(f"{data}/{rule}: {len(cells) - 1} other cell(s)")
            sub = sub[(sub["activation"] == act) & (sub["lr"] == lr)]
            for m in metrics:
                split, kind = m.split("_")
                colour = {"train": "C0", "val": "C1", "test": "C2"}[split]
                band(sub[sub["metric"] == m], x="step", color=colour, ax=ax,
                      ls="-" if kind == "loss" else "--",
                      label=f"{split} {'regression' if kind == 'loss' else 'classification'}")
            ax.set_xlabel("steps")
            ax.text(0.98, 0.98, f"{act}, lr {lr:g}, n = {int(cells.iloc[0])}", ha="right",
                    va="top", transform=ax.transAxes, fontsize=8)
    for ax in axes.flat:
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("error")
    handles, labels = [], []
    for ax in axes.flat:
        h, lab = ax.get_legend_handles_labels()
        if h:
            handles, labels = h, lab
            break
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    _suptitle(fig, title, y=1.0, va="bottom")
    fig.tight_layout()
    note = ("only the cell with most seeds is drawn: " + ", ".join(others)) if others else ""
    return [Fig(key, title, cap, _save(fig, out / f"{key}.png"), note=note)]


_DRAWERS = {"profile": lambda sweep, pal, out: profile_figure(sweep.runs, pal, out),
            "curves": best_lr_curves,
            "cosines": lambda sweep, pal, out: best_lr_cosines(sweep, out),
            "outcomes": outcomes,
            "guide": lambda sweep, pal, out: (guide_plot(sweep, pal, out)
                                              if sweep.study == "guide_reproduction" else [])}
# drawn beside the analysis (``Drawing``); the others after it, while these finish: the two
# processes then take about as long (4,200 runs: 3.1 s and 3.0 s)
BESIDE = ("curves", "cosines", "guide")


def _sweep_figures(sweep: Sweep, out: Path, slots=tuple(_DRAWERS)) -> dict[str, list[Fig]]:
    """The figures drawn from the runs alone (no analysis), by slot."""
    pal = palette(sweep.runs)
    with _style():
        drawn = {slot: _DRAWERS[slot](sweep, pal, out) for slot in slots}
    plt.close("all")
    return drawn


def _style():
    """The report's look: seaborn's ticks without a grid (each figure asks for its own), text
    at 0.8 of its notebook size."""
    from contextlib import ExitStack

    stack = ExitStack()
    stack.enter_context(sns.axes_style("ticks", {"axes.grid": False}))
    stack.enter_context(sns.plotting_context("notebook", font_scale=0.8))
    return stack


class Drawing:
    """``_sweep_figures`` of ``BESIDE`` under way: in a forked process while this one analyses
    the runs (those figures are a third of a report's time: 3.1 of 9.2 s for 4,200 runs), or
    here when forking is not safe (another thread of this process could hold a lock the child
    would wait on) or not possible. ``result()`` gives them; a child that fails or dies has
    them drawn here."""

    def __init__(self, sweep: Sweep, out: Path):
        import multiprocessing
        import os
        import threading

        self.sweep, self.out, self.proc, self.pipe = sweep, out, None, None
        if os.name != "posix" or threading.active_count() > 1:
            return
        ctx = multiprocessing.get_context("fork")
        self.pipe, send = ctx.Pipe(duplex=False)

        def draw() -> None:
            try:
                send.send(("ok", _sweep_figures(sweep, out, BESIDE)))
            except BaseException as e:  # noqa: BLE001 - drawn again by the parent, which says it
                send.send(("error", f"{type(e).__name__}: {e}"))

        self.proc = ctx.Process(target=draw, daemon=True)
        self.proc.start()
        send.close()  # the child's end only: a child that dies is an EOF here

    def result(self) -> dict[str, list[Fig]]:
        """The figures of ``BESIDE``, by slot."""
        if self.proc is None:
            return _sweep_figures(self.sweep, self.out, BESIDE)
        try:
            status, value = self.pipe.recv()
        except EOFError:
            status, value = "error", "the process drawing them ended"
        self.proc.join()
        self.pipe.close()
        return value if status == "ok" else _sweep_figures(self.sweep, self.out, BESIDE)


def start_figures(sweep: Sweep, out: Path) -> Drawing:
    """Clear the folder of an older report's figures, then start drawing the runs' own figures
    (``Drawing``), so that ``make_figures`` after the analysis has only the answer's left."""
    out.mkdir(parents=True, exist_ok=True)
    for pattern in PATTERNS:  # a figure that is not redrawn must not linger from an older report
        for old in out.glob(pattern):
            old.unlink()
    return Drawing(sweep, out)


def make_figures(sweep: Sweep, summary: pd.DataFrame, out: Path, answer,
                 drawing: Drawing | None = None) -> list[Fig]:
    """Every figure of the report, in the report's order, saved into ``out``: the ``answer``'s
    (``slnn.report.answer.Answer``) first, then the time to target and the curves. ``drawing``:
    the runs' own figures, started before the analysis (``start_figures``)."""
    drawing = drawing or start_figures(sweep, out)
    pal = palette(sweep.runs)
    with _style():
        first = answer_figure(answer, sweep.runs, pal, out) + km_figure(answer, pal, out)
        maps = heatmap(sweep, summary, out)
    plt.close("all")
    b = _sweep_figures(sweep, out, [s for s in _DRAWERS if s not in BESIDE])
    b.update(drawing.result())
    return (first + b["profile"] + b["curves"] + maps + b["cosines"] + b["outcomes"]
            + b["guide"])
