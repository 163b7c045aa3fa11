"""The learning-curve PNG of one run (``learning_curves.png``).

Drawn on a ``matplotlib.figure.Figure`` with the Agg canvas, not through pyplot (no global figure
state, and pyplot's import is skipped), with fixed margins: constrained layout measured every
text twice and doubled the cost of a plot (0.35 s -> 0.18 s here), which every cell of a sweep
pays when it plots. Tick labels on the y axes switch to a power of ten outside [0.01, 1000), so
they stay short enough for those margins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slnn.core.trainer import TrainResult


def plot_curves(result: TrainResult, title: str, path: Path) -> None:
    """The guide's plot: loss and classification error on train, validation and test vs epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h = result.history
    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.08, right=0.985, bottom=0.13, top=0.87, wspace=0.25)
    for ax, kind, label in ((axes[0], "loss", "regression error (mean (t - z)^2)"),
                            (axes[1], "error", "classification error")):
        for split, colour in (("train", "C0"), ("val", "C1"), ("test", "C2")):
            y = h[f"{split}_{kind}"]
            if np.isfinite(y).any():
                ax.plot(h["epoch"], y, color=colour, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        # short tick labels (the margins are fixed): 1.6 with "1e-3" above the axis, not 0.0016
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.legend(loc="best", frameon=False)
    fig.suptitle(f"{title}: {result.outcome}")
    fig.savefig(path, dpi=110)
