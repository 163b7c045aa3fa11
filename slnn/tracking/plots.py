"""The learning-curve PNG of one run (``learning_curves.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slnn.core.trainer import TrainResult


def plot_curves(result: TrainResult, title: str, path: Path) -> None:
    """The guide's plot: loss and classification error on train, validation and test vs epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result.history
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, kind, label in ((axes[0], "loss", "regression error (mean (t - z)^2)"),
                            (axes[1], "error", "classification error")):
        for split, colour in (("train", "C0"), ("val", "C1"), ("test", "C2")):
            y = h[f"{split}_{kind}"]
            if np.isfinite(y).any():
                ax.plot(h["epoch"], y, color=colour, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", frameon=False)
    fig.suptitle(f"{title}: {result.outcome}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
