"""The same sweep through Hydra's submitit launcher (local processes here; the same config runs
as ``hydra/launcher=submitit_slurm`` on a cluster): every cell recorded once, in one store."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_submitit_local_runs_every_cell_once(tmp_path, slnn_train):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    rules, lrs = ("input", "kronecker"), ("0.1", "1.0")
    proc = slnn_train(["-m", f"update={','.join(rules)}", f"optim.lr={','.join(lrs)}",
                       "data=iris_petal", "train.epochs=3", "sweep.report=false",
                       "hydra/launcher=submitit_local", "hydra.sweeper.chunks=2",
                       f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path}/multirun"],
                      tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 finished, 0 failed" in proc.stdout
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("slnn")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("slnn.sweep") == "true"]
    cells = [r for r in runs if r.data.tags.get("slnn.sweep") != "true"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    got = Counter((r.data.tags["slnn.update"], r.data.params["optim.lr"]) for r in cells)
    # every (rule, lr) of the grid exactly once, each a FINISHED child of the one parent
    assert got == Counter((rule, str(float(lr))) for rule, lr in itertools.product(rules, lrs))
    assert {r.info.status for r in cells} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parents[0].info.run_id}
    # the two chunks really were separate submitit jobs, with their own logs
    logs = list((tmp_path / "multirun").rglob("*_log.out"))
    assert len(logs) >= 2
