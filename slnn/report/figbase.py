"""What every figure module shares: the Fig record, the resolution, labels, and saving."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from slnn.report.facets import wrap  # noqa: E402

DPI = 100
LABELS = {"val_loss": "validation loss (mean (t - z)^2)", "val_error": "validation error",
          "grad_cosine": "cosine(step, -gradient)"}
BAND = "mean over seeds, 95% t-interval band"


@dataclass
class Fig:
    key: str  # file stem
    title: str
    caption: str
    path: Path | None = None  # None: not drawn, see note
    note: str = ""


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s))


def _suptitle(fig, text: str, **kw) -> None:
    fig.suptitle(wrap(text, fig.get_figwidth()), fontsize=11, **kw)


def _save(fig, path: Path, tight: bool = True) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return path


