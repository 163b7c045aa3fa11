"""Why the guide's step is not the gradient: cos(kronecker step, gradient step) = cos(z, x) for one
sample (derived in docs/background.md), checked on logged runs for the report.

    cos_step, cos_zx = sample_cosines(W, data, "sigmoid")    # per training sample, at W
    table = check_runs(runs, fetch)                          # on a few logged kronecker runs"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from slnn.core.activations import get_activation
from slnn.core.data import DataSpec, load_dataset
from slnn.core.outcomes import RAN
from slnn.core.rules import input_step, kronecker_step
from slnn.core.trainer import with_bias

ROUNDING = 1e-12  # below this, a difference of the two cosines is floating-point rounding
RULE = "kronecker"  # the rule this section explains (the guide's Step 12, slnn.core.rules)
PER_DATA = 2  # logged runs checked per data set

WHY = [
    "The chain rule gives the gradient of the loss for one weight: with `net_j = sum_i x_i W_ij` "
    "and `delta_j = (t_j - z_j) f'(net_j)`, `dL/dW_ij = -delta_j x_i`, so the descent step is "
    "`x^T delta`, the sensitivity of output j times the input i that the weight multiplies; "
    "its shape is W's, (n_features + 1, k).",
    "The guide's Step 12 writes `kronecker(transpose(z), delta)`: the layer's output z where "
    "the input x belongs. The product is (k, k), so it can be added to W only when "
    "n_features + 1 = k (iris_petal, blobs with 2 features and 3 classes); on iris, 5 != 3, "
    "and slnn stops such a run as shape_mismatch instead of broadcasting it.",
    "Where it does fit, its direction relative to descent is fixed by one number per sample: "
    "`<z delta^T, x delta^T> = (z . x)(delta . delta)` and the norms are `|z||delta|` and "
    "`|x||delta|`, so cos(kronecker step, gradient step) = cos(z, x). The sensitivity cancels; "
    "the step points downhill only as much as the outputs happen to point like the inputs "
    "(and uphill where they point against them). The `grad_cosine` figures show the logged "
    "mean of this cosine per epoch.",
]


def residue(x: float, words: str = " (rounding)") -> str:
    """``x`` as the report prints it: below ``ROUNDING`` only that it is below (its digits are
    rounding, different from machine to machine; identity.csv has them), else ``x`` itself."""
    return f"< {ROUNDING:.0e}{words}" if x < ROUNDING else f"{x:.1e}"


def sample_cosines(W: np.ndarray, data, activation: str) -> tuple[np.ndarray, np.ndarray]:
    """Per training sample at weights ``W`` (``(n_features + 1, k)``, with n_features + 1 = k):
    the cosine between the guide's step and the gradient step (both from
    ``slnn.core.rules``), and cos(z, x). Samples whose delta is zero are left out (no
    direction)."""
    act = get_activation(activation)
    x1 = with_bias(data.x_train)  # (n, d+1)
    net = x1 @ W  # (n, d+1) @ (d+1, k) -> (n, k)
    z = act.f(net)
    delta = (data.t_train - z) * act.df(net)  # (n, k)
    cs, cz = [], []
    for i in range(x1.shape[0]):
        s = slice(i, i + 1)
        K = kronecker_step(x1[s], net[s], z[s], data.t_train[s], delta[s])  # (k, k)
        G = input_step(x1[s], net[s], z[s], data.t_train[s], delta[s])  # (d+1, k)
        nk, ng = np.linalg.norm(K), np.linalg.norm(G)
        if nk == 0 or ng == 0:
            continue
        cs.append(float(np.sum(K * G) / (nk * ng)))
        cz.append(float(z[i] @ x1[i] / (np.linalg.norm(z[i]) * np.linalg.norm(x1[i]))))
    return np.array(cs), np.array(cz)


def rebuild(config_yaml: str):
    """The run's data set and activation from its logged ``config.yaml``."""
    import yaml

    cfg = yaml.safe_load(config_yaml)
    spec = DataSpec(**cfg["data"])
    return load_dataset(spec, run_seed=int(cfg["seed"])), cfg["model"]["activation"]


def check_runs(runs: pd.DataFrame, fetch, per_data: int = PER_DATA) -> pd.DataFrame:
    """The identity on a few logged runs of ``RULE`` that trained (the first ``per_data`` per
    data set, by activation, lr and seed): rebuild each run's data set from its
    ``config.yaml``, load ``weights/initial.npy``, and compare the two cosines per training
    sample. ``fetch(run_id, artifact_uri, path) -> bytes | None`` reads an artifact.

    Returns run_id, data, activation, lr, seed, samples, cos_mean (the mean cosine of the
    steps with descent at the initial weights) and max_abs_diff."""
    pick = runs[(runs["update"] == RULE) & runs["outcome"].isin(RAN)]
    pick = pick.sort_values(["data", "activation", "lr", "seed"]).groupby("data").head(per_data)
    rows = []
    for _, r in pick.iterrows():
        blob_w = fetch(r["run_id"], r["artifact_uri"], "weights/initial.npy")
        blob_c = fetch(r["run_id"], r["artifact_uri"], "config.yaml")
        if blob_w is None or blob_c is None:
            continue
        try:
            W = np.load(io.BytesIO(blob_w), allow_pickle=False)
            data, activation = rebuild(blob_c.decode("utf-8"))
            cs, cz = sample_cosines(W, data, activation)
        except Exception:  # noqa: BLE001 - a config that names no data set (a synthetic run),
            continue  # weights of another shape: that run cannot be checked, the others can
        rows.append(dict(run_id=r["run_id"], data=r["data"], activation=activation,
                         lr=r["lr"], seed=int(r["seed"]), samples=len(cs),
                         cos_mean=float(cs.mean()) if len(cs) else np.nan,
                         max_abs_diff=float(np.max(np.abs(cs - cz))) if len(cs) else np.nan))
    return pd.DataFrame(rows, columns=["run_id", "data", "activation", "lr", "seed", "samples",
                                       "cos_mean", "max_abs_diff"])
