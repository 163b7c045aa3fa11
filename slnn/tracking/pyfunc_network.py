"""A trained slnn network as an MLflow pyfunc model "from code": no pickle, no import of slnn,
so it serves where only numpy, pandas and mlflow are installed. This file is the template of a
model's code; a logged model's copy ends with its activation's function and the line that sets
the model (``slnn.tracking.model.model_code``).

    model = mlflow.pyfunc.load_model("models:/<model_id>")
    model.predict(frame)   # one column per feature -> p_<class> per class and `predicted`
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from mlflow.models import set_model  # noqa: F401 - the copy's last line calls it
from mlflow.pyfunc import PythonModel


class SlnnNetwork(PythonModel):
    """``z = f([prepare(x), 1] @ W)``; class scores as a distribution, and the argmax class.
    ``activation``: ``f``, element-wise on NumPy arrays."""

    def __init__(self, activation):
        self.f = activation

    def load_context(self, context):
        self.W = np.load(context.artifacts["weights"], allow_pickle=False)  # (d + 1, k)
        with open(context.artifacts["meta"]) as fh:
            meta = json.load(fh)
        self.features = meta["feature_names"]
        self.classes = meta["class_names"]
        self.shift = np.asarray(meta["shift"]) if meta["shift"] is not None else None
        self.scale = np.asarray(meta["scale"]) if meta["scale"] is not None else None

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise ValueError(f"input lacks feature column(s) {missing}: send {self.features}")
        x = frame[self.features].to_numpy(dtype=np.float64)  # (n, d)
        if self.shift is not None:
            x = x - self.shift
        if self.scale is not None:
            x = x / self.scale
        x1 = np.hstack([x, np.ones((x.shape[0], 1))])  # (n, d + 1)
        z = self.f(x1 @ self.W)  # (n, d + 1) @ (d + 1, k) -> (n, k)
        # squared-error outputs estimate the class posteriors; clip and normalize into a distribution
        p = np.clip(z, 0.0, None)
        total = p.sum(axis=1, keepdims=True)
        p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / z.shape[1])
        out = pd.DataFrame(p, columns=[f"p_{c}" for c in self.classes], index=frame.index)
        out["predicted"] = [self.classes[j] for j in np.argmax(z, axis=1)]
        return out

