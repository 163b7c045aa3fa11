"""Shared test helpers: compose configs the way users do, and run the `slnn-train` console script."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import hydra
import pytest

import slnn.app.cli  # noqa: F401 - registers slnn's configs in Hydra's ConfigStore
import slnn.app.schema

SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")  # the venv's console script

# The tests press Ctrl-C (SIGINT) as a user at a terminal would. A shell without job control
# starts a command run with ``&`` with SIGINT ignored, and an ignored signal stays ignored in every
# process started from it, slnn-train included (Python then installs no KeyboardInterrupt): so
# a test suite started in the background would see Ctrl-C do nothing. Handled again here, the
# signal is back to its default in every process the tests start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# pytest-xdist (``-n`` in pyproject's addopts) sends tests to workers in units. The SLURM tests
# share one cluster (scripts/slurm/up is not re-entrant): one unit. A module with a module-scoped
# fixture (a sweep its tests read) is one unit, so the fixture is built once. Every other test is a
# unit of its own and goes wherever a worker is free. The units are made here, from node ids, by a
# scheduler of our own (xdist's public ``pytest_xdist_make_scheduler`` hook): xdist's loadgroup
# marks a test's group by rewriting its node id, which pytest 9.2's node ids no longer take, so the
# ``xdist_group`` marker silently stopped grouping anything.
SLURM_MODULES = {"test_slurm_cluster", "test_slurm_sweep"}


def schedule_unit(nodeid: str, shared: dict[str, bool]) -> str:
    """The unit a test is scheduled in: ``slurm``, its module's path, or its own node id."""
    path = nodeid.split("::", 1)[0]
    if Path(path).stem in SLURM_MODULES:
        return "slurm"
    if path not in shared:
        file = Path(__file__).parent.parent / path
        shared[path] = file.is_file() and 'scope="module"' in file.read_text()
    return path if shared[path] else nodeid


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") not in ("loadscope", "loadgroup"):
        return None  # another --dist, asked for on the command line
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        """xdist's load-scope scheduling (larger units first), with ``schedule_unit``'s units."""

        shared: dict[str, bool] = {}

        def _split_scope(self, nodeid: str) -> str:
            return schedule_unit(nodeid, self.shared)

    return UnitScheduling(config, log)


def compose_config(*overrides: str):
    """The config `slnn-train <overrides>` would run: Hydra's compose over slnn's config package
    (the repo's conf/ and experiments/)."""
    with hydra.initialize_config_module(slnn.app.schema.CONF_PACKAGE, version_base="1.3"):
        return hydra.compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def compose():
    """``compose("optim.lr=0.5", ...)`` -> the composed (unvalidated) DictConfig."""
    return compose_config


def run_slnn_train(args: list[str], cwd: Path, *, module: bool = False,
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``slnn-train args`` (or ``python -m slnn args``) in ``cwd``, without an inherited
    ``MLFLOW_TRACKING_URI``; returns the completed process with text stdout/stderr."""
    cmd = [sys.executable, "-m", "slnn"] if module else [str(SLNN_TRAIN)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def slnn_train():
    """``slnn_train(["data=iris_petal"], cwd=tmp_path)`` -> the finished subprocess."""
    return run_slnn_train


@pytest.fixture(scope="session")
def new_sqlite_store(tmp_path_factory):
    """``new_sqlite_store(folder)`` -> the URI of an empty SQLite store at ``folder/mlflow.db``,
    made as slnn makes a new store (``client_for``: migrated, in WAL mode, checkpointed into the
    file) once per worker and copied: a migration costs about a second of CPU, which tests that
    are not about making stores need not pay each time (test_store_creation.py and
    test_tracking.py make theirs the real way). Its Default experiment's artifact folder is the
    template's own: the tests given a copy record into experiments of their own."""
    from slnn.tracking.store import client_for

    folder = tmp_path_factory.mktemp("store_template")
    template = folder / "mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        client_for(f"sqlite:///{template}").search_experiments()

    def make(dest: Path) -> str:
        shutil.copyfile(template, Path(dest) / "mlflow.db")
        return f"sqlite:///{Path(dest) / 'mlflow.db'}"

    return make


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster (``tests/servers.py``) on 127.0.0.1 with an empty database
    ``mlflow``; the tests that need it are skipped, with the reason, where it cannot run."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed: pip install -e '.[test]'")
    from servers import PgCluster, Unavailable

    try:
        cluster = PgCluster.start()
    except Unavailable as e:
        pytest.skip(f"no PostgreSQL here: {e}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def mlflow_pg_server(postgres, tmp_path_factory):
    """``mlflow server`` on the ``postgres`` cluster, artifacts proxied into a temporary folder:
    ``.url`` (http://127.0.0.1:<port>), ``.artifacts``, ``.log``; stopped at the end."""
    from servers import start_mlflow_server, stop_process

    root = tmp_path_factory.mktemp("mlflow_server")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = start_mlflow_server(postgres.uri("mlflow"), root / "artifacts", root / "server.log",
                                 env=env)
    try:
        yield server
    finally:
        stop_process(server.proc)
