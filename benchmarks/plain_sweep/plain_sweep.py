"""The plain baseline for benchmarks/bench_sweep.py: the guide_vs_correct grid as the Hydra + MLflow
examples people copy would run it (Hydra's basic sweeper and launcher, ``mlflow.start_run`` per job,
one ``mlflow.log_metrics`` call per epoch), around slnn's own trainer so that only the harness
differs.

    .venv/bin/python benchmarks/plain_sweep/plain_sweep.py -m data=iris_petal,blobs,iris \
        update=input,kronecker activation=sigmoid,tanh,guide_tanh,linear,relu \
        lr=0.01,0.1,1.0 'seed=range(5)' tracking_uri=sqlite:///$PWD/mlflow.db

(``benchmarks/bench_sweep.py`` runs it like this, in a temp folder, with a fresh store.)

Deliberately naive: this is what slnn's sweeper is measured against, not an example to follow.
"""

import os
import tempfile

import hydra
import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from slnn.core.data import load_dataset
from slnn.core.trainer import train


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_experiment(cfg.experiment)
    name = f"{cfg['update']}-{cfg.activation}-lr{cfg.lr:g}-s{cfg.seed}-{cfg.data}"
    with mlflow.start_run(run_name=name):
        mlflow.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
        data = load_dataset(cfg.data)

        def on_epoch(row):  # one log_metrics call per epoch, as the examples do
            mlflow.log_metrics({k: row[k] for k in ("train_loss", "val_loss", "train_error",
                                                    "val_error", "grad_cosine", "weight_norm")},
                               step=int(row["epoch"]))

        result = train(data, activation=cfg.activation, rule=cfg["update"], lr=cfg.lr,
                       epochs=cfg.epochs, rng=np.random.default_rng(cfg.seed), on_epoch=on_epoch)
        mlflow.set_tag("outcome", result.outcome)
        for k, v in result.final.items():
            if k.startswith("test_"):
                mlflow.log_metric(k, v)
        mlflow.log_metric("epochs_run", result.epochs_run)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "final.npy")
            np.save(path, result.W_final)
            mlflow.log_artifact(path, "weights")
    return float(result.final["val_loss"])


if __name__ == "__main__":
    main()
