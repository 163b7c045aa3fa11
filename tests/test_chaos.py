"""The chaos test: ``tests/chaos.py`` runs an 80-cell joblib sweep, kills its workers and its
launcher with SIGKILL and SIGTERM at random moments, reruns it until it completes, and checks
every cell finished exactly once, nothing is left RUNNING, the store passes SQLite's
``PRAGMA integrity_check`` and the report counts the same cells. About 2-5 minutes on 2 cores.

    python -m pytest tests/test_chaos.py -s          # prints the figures
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CHAOS = Path(__file__).with_name("chaos.py")


@pytest.mark.slow
def test_a_sweep_survives_random_kills_with_nothing_lost_or_done_twice(tmp_path):
    from slnn.tracking.store import client_for

    empty = tmp_path / "empty"
    empty.mkdir()
    client_for(f"sqlite:///{empty}/mlflow.db").search_experiments()  # spare each rerun nothing
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, str(CHAOS), "--dir", str(tmp_path / "chaos"),
                           "--cells", "80", "--kills", "4", "--seed", "7",
                           "--store", str(empty / "mlflow.db")],
                          env=env, capture_output=True, text=True, timeout=1500)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = re.search(r"^chaos: (\d+) cells, kills survived (\d+) .* reruns needed (\d+), "
                     r"duplicates (\d+), lost cells (\d+), left RUNNING (\d+), integrity (\w+), "
                     r"report counts (\d+) cells", proc.stdout, re.M)
    assert line, proc.stdout
    cells, kills, reruns, dups, lost, running, integrity, reported = line.groups()
    assert (cells, dups, lost, running, integrity, reported) == ("80", "0", "0", "0", "ok", "80")
    assert int(kills) == 4 and int(reruns) >= 1
