"""Two drawing helpers the figures share: a mean line with its band, and a title wrapped to a
figure's width."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


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
