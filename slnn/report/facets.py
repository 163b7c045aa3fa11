"""A grid of panels, one line and 95% band per group: seaborn's ``FacetGrid`` layout, fast.

``facet(bands, palette, ylabel, title, runs, row="activation", col="lr", hue="update")`` draws
what ``sns.FacetGrid(...).map_dataframe(band)`` would, but on a figure with fixed margins: no
tight-layout passes, tick objects only on the outer panels, the background grid as two line
collections per panel. At 25 panels a figure that way costs a third of FacetGrid's time, which
is what keeps a thousand-run report within its time budget.
"""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def band(data: pd.DataFrame, x: str = "epoch", color=None, label=None, ax=None, **kw) -> None:
    """One line (``mean``) and its band (``lo`` to ``hi``) against ``x``; FacetGrid-compatible."""
    d = data.sort_values(x)
    ax = ax if ax is not None else plt.gca()
    ax.plot(d[x], d["mean"], color=color, label=label, lw=1.4, **kw)
    ax.fill_between(d[x], d["lo"], d["hi"], color=color, alpha=0.2, lw=0)


def wrap(text: str, width_in: float) -> str:
    """Wrap a title to a figure's width (about 12 characters an inch at 11 pt)."""
    width = max(int(width_in * 12), 30)
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def grid(nrows: int, ncols: int, title: str, w: float = 2.5, h: float = 1.7,
         left: float = 0.75, right: float = 1.9, bottom: float = 0.55):
    """A figure of ``nrows x ncols`` panels of ``w x h`` inches with fixed margins (in inches)
    and room on top for ``title``: no tight_layout or ``bbox_inches="tight"`` passes, which
    dominate the time of big grids."""
    gap_w, gap_h = 0.12, 0.12
    W = left + ncols * w + (ncols - 1) * gap_w + right
    title = wrap(title, W)
    top = 0.45 + 0.21 * (title.count("\n") + 1)
    H = top + nrows * h + (nrows - 1) * gap_h + bottom
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, figsize=(W, H))
    fig.subplots_adjust(left=left / W, right=1 - right / W, bottom=bottom / H, top=1 - top / H,
                        wspace=gap_w / w, hspace=gap_h / h)
    fig.suptitle(title, fontsize=11, y=1 - 0.08 / H, va="top")
    return fig, axes


def label(col: str, value) -> str:
    return f"lr = {value:g}" if col == "lr" else str(value)


def facet(b: pd.DataFrame, pal: dict, ylabel: str, title: str, runs: pd.DataFrame, *,
          row: str = "activation", col: str = "lr", hue: str = "update", ylim=None,
          yticks=None, x: str = "epoch"):
    """Panels ``row`` x ``col``, one line and band per ``hue`` value coloured by ``pal``: the
    layout of seaborn's ``FacetGrid(row=, col=, hue=)``, drawn directly for speed. The panels
    are those of ``runs`` (the data set's ended runs); one with nothing to draw says why."""
    rows, cols = sorted(runs[row].unique()), sorted(runs[col].unique())
    why = runs.groupby([row, col])["outcome"].value_counts()
    fig, axes = grid(len(rows), len(cols), title)
    hues = [h for h in pal if h in set(b[hue])]
    for (r, c, h), d in b.groupby([row, col, hue], observed=True):
        band(d, x=x, color=pal[h], label=label(hue, h), ax=axes[rows.index(r), cols.index(c)])
    logy = False
    if ylim is None:  # from the means: a wide band of two seeds must not flatten every curve
        lo, hi = np.nanmin(b["mean"].values), np.nanmax(b["mean"].values)
        logy = bool(lo > 0 and hi / lo > 100)
        pad = 0.06 * (hi - lo) if hi > lo else 0.1
        ylim = (lo / 2, hi * 2) if logy else (0 if lo >= 0 else lo - pad, hi + pad)
    xmax = b[x].max() if b[x].max() > 0 else 1
    # no tick at the right edge: its label would run into the next panel's 0
    xt = [t for t in MaxNLocator(4, integer=True).tick_values(0, xmax) if 0 <= t <= 0.92 * xmax]
    if yticks is None and logy:
        yticks = 10.0 ** np.arange(np.floor(np.log10(ylim[0])), np.ceil(np.log10(ylim[1])) + 1)
    elif yticks is None:
        yticks = MaxNLocator(4).tick_values(*ylim)
    yt = [t for t in yticks if ylim[0] <= t <= ylim[1]]
    have = set(zip(b[row], b[col]))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            if logy:
                ax.set_yscale("log")
            ax.set_xlim(0, xmax)
            ax.set_ylim(*ylim)
            # tick objects are the costliest part of a panel: only the outer panels get them,
            # and the background grid is two line collections
            ax.hlines(yt, 0, xmax, colors="0.88", lw=0.7, zorder=0)
            ax.vlines(xt, *ylim, colors="0.88", lw=0.7, zorder=0)
            ax.set_xticks(xt if i == len(rows) - 1 else [])
            ax.set_yticks(yt if j == 0 else [])
            ax.minorticks_off()
            ax.tick_params(labelsize=8)
            if i == 0:
                ax.set_title(label(col, c), fontsize=9)
            if j == len(cols) - 1:
                ax.text(1.03, 0.5, label(row, r), rotation=270, ha="left", va="center",
                        fontsize=9, transform=ax.transAxes)
            if (r, c) not in have:
                n = why.get((r, c))
                text = ("no curve:\n" + ", ".join(f"{k} {o}" for o, k in n.items())
                        if isinstance(n, pd.Series) else "no runs")
                ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes,
                        fontsize=8, color="0.3")
    for ax in axes[-1, :]:
        ax.set_xlabel(x)
    fig.supylabel(ylabel, fontsize=10, x=0.15 / fig.get_figwidth(), ha="left")
    handles = [plt.Line2D([], [], color=pal[h], lw=2) for h in hues]
    fig.legend(handles, [label(hue, h) for h in hues],
               title={"update": "update rule", "lr": "learning rate"}.get(hue, hue),
               loc="center left", frameon=False, bbox_to_anchor=(1 - 1.5 / fig.get_figwidth(), 0.5))
    return fig, axes
