"""Shared test helpers: compose configs the way users do, and run the `slnn-train` console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest

import slnn.app.cli  # noqa: F401 - registers slnn's configs in Hydra's ConfigStore
import slnn.app.schema

SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")  # the venv's console script

# pytest-xdist (``-n`` in pyproject's addopts) sends tests to workers; ``--dist loadgroup`` keeps a
# group on one worker. The SLURM tests share one cluster (scripts/slurm/up is not re-entrant), and
# a module with a module-scoped fixture (a sweep its tests read) keeps its tests together, so the
# fixture is built once; every other test goes wherever a worker is free.
SLURM_MODULES = {"test_slurm_cluster", "test_slurm_sweep"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    shared: dict[Path, bool] = {}
    for item in items:
        path = Path(str(item.fspath))
        if path.stem in SLURM_MODULES:
            item.add_marker(pytest.mark.xdist_group("slurm"))
            continue
        if path not in shared:
            shared[path] = 'scope="module"' in path.read_text()
        if shared[path]:
            item.add_marker(pytest.mark.xdist_group(path.stem))


def compose_config(*overrides: str):
    """The config `slnn-train <overrides>` would run: Hydra's compose over the repo's conf/."""
    with hydra.initialize_config_dir(str(slnn.app.schema.CONF_DIR), version_base="1.3"):
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
