"""A first command interrupted while it creates the SQLite store leaves no store or a whole one:
the next command works, every time.

The interruptions are driven by what the command has done, not by sleeps: the test watches the
scratch file the store is migrated in (``slnn.tracking.store.create_sqlite_store``) appear and
grow, and sends the signal as it passes each size, then once the store is in place.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slnn.tracking.store import SCRATCH_PREFIX

BIN = Path(sys.executable).parent
FAST = ["data=iris_petal", "train.epochs=1", "tracking.plot=false", "tracking.log_model=false"]
# scratch sizes (bytes) to interrupt at; a new store is ~950 kB. None: once the store is in place
MOMENTS = [1, 250_000, 600_000, None]


def env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def scratch_size(folder: Path) -> int | None:
    for entry in os.scandir(folder):
        if entry.name.startswith(SCRATCH_PREFIX) and not entry.name.endswith("-journal"):
            try:
                return entry.stat().st_size
            except FileNotFoundError:
                return None
    return None


def interrupt_at(folder: Path, sig: int, moment: int | None) -> tuple[str, str]:
    """Start the first command in an empty ``folder`` and send ``sig`` (to its process group, as
    a terminal does) when the scratch store reaches ``moment`` bytes, or the store is in place;
    returns where it was when the signal went, and what the command said on stderr."""
    proc = subprocess.Popen([BIN / "slnn-train", *FAST], cwd=folder, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    db = folder / "mlflow.db"
    where, err = "exited first", ""
    try:
        while proc.poll() is None:
            size = scratch_size(folder)
            if moment is not None and size is not None and size >= moment:
                where = f"scratch at {size} bytes"
            elif db.exists() and (moment is None or size is None):
                where = "store in place"  # the creation went past this moment: still a moment
            else:
                time.sleep(0.005)  # polling for the event, not timing the fault
                continue
            os.killpg(proc.pid, sig)
            break
        err = proc.communicate(timeout=120)[1].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return where, err


def accepted_or_absent(db: Path) -> None:
    """No store, or one MLflow's own check accepts: every table and the newest schema."""
    if not db.exists():
        return
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - fills Base.metadata
    from mlflow.store.db.base_sql_model import Base
    from mlflow.store.db.utils import _get_latest_schema_revision

    con = sqlite3.connect(db)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = con.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    finally:
        con.close()
    assert set(Base.metadata.tables) <= tables
    assert version == _get_latest_schema_revision()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_an_interrupted_first_command_never_wedges_the_store(sig, tmp_path):
    seen = []
    for i, moment in enumerate(MOMENTS):
        folder = tmp_path / f"at{i}"
        folder.mkdir()
        where, err = interrupt_at(folder, sig, moment)
        seen.append(where)
        if sig != signal.SIGKILL and where.startswith("scratch"):  # no run existed yet
            assert "no run had been opened yet" in err and "Traceback" not in err, err[-2000:]
        accepted_or_absent(folder / "mlflow.db")
        proc = subprocess.run([BIN / "slnn-train", *FAST], cwd=folder, env=env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (seen[-1], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        accepted_or_absent(folder / "mlflow.db")
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
        finished = [r for r in client.search_runs(["0", *[e.experiment_id for e in
                                                           client.search_experiments()]])
                    if r.info.status == "FINISHED"]
        assert len({r.info.run_id for r in finished}) == 1, seen[-1]
        assert not [p for p in folder.iterdir() if p.name.startswith(SCRATCH_PREFIX)]
    # the signals did land inside the creation, not only before or after it
    assert sum(w.startswith("scratch") for w in seen) >= 2, seen


@pytest.mark.slow
def test_a_disk_that_fills_while_the_store_is_made_leaves_no_store(tmp_path):
    """The store (~950 kB) is made on a 600 kB file system: one line naming the full disk, and
    neither a store nor a scratch file left behind (both looked at before the mount goes)."""
    from test_faults import can_unshare, one_line, run

    why = can_unshare("--mount")
    if why:
        pytest.skip(why)
    folder = tmp_path / "small"
    folder.mkdir()
    listing = tmp_path / "after.txt"
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              f'mount -t tmpfs -o size=600k tmpfs "{folder}" && "$@"; rc=$?; '
              f'ls -A "{folder}" > "{listing}"; exit $rc', "sh"]
    proc = run([BIN / "slnn-train", *FAST, f"tracking.uri=sqlite:///{folder}/mlflow.db"],
               tmp_path, prefix=prefix)
    line = one_line(proc, 2)
    assert "is on a full disk" in line, line
    assert listing.read_text().split() == ["mlflow.db.lock"]
