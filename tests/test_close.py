"""A sweep's close reads its children by a query of the few columns it needs
(``orchestrator.child_runs``): the same children, fields and parent numbers as reading every
child whole through ``search_runs``."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_the_close_reads_what_search_runs_reads(tmp_path):
    from slnn.sweep.orchestrator import child_runs, close_summary
    from slnn.tracking.model_registry import ChildRun
    from slnn.tracking.runs import iter_runs
    from slnn.tracking.store import client_for

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # iris (4 + 1 != 3: kronecker cannot run there) and lr 1e6 (diverges): every kind of child
    proc = subprocess.run([BIN / "slnn-train", "-m", "update=input,kronecker", "data=iris", "model.activation=linear",
                           "optim.lr=0.1,1e6", "seed=0,1", "train.epochs=5", f"tracking.uri={uri}",
                           "sweep.report=false", "tracking.log_model=false",
                           f"hydra.sweep.dir={tmp_path}/multirun"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    client = client_for(uri)
    parent = next(r for r in client.search_runs(["1"]) if "slnn.sweep" in r.data.tags)
    pid = parent.info.run_id
    whole = sorted((ChildRun.of(r) for r in iter_runs(client, ["1"],
                                                      f"tags.mlflow.parentRunId = '{pid}'")),
                   key=lambda c: c.run_id)
    light = sorted(child_runs(uri, client, "1", pid), key=lambda c: c.run_id)
    assert len(light) == len(whole) == 8

    def same(a, b):
        return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))

    for a, b in zip(light, whole):
        for field in ChildRun.__dataclass_fields__:
            assert same(getattr(a, field), getattr(b, field)), (field, a, b)
    assert {c.outcome for c in light} >= {"shape_mismatch", "diverged"}
    # the parent's numbers, as the close logged them, from the light read
    numbers = close_summary(uri, pid)
    logged = client.get_run(pid).data.metrics
    for k, v in numbers.items():
        assert logged[k] == pytest.approx(v), k
