"""The one-node SLURM test cluster (``scripts/slurm/up`` / ``scripts/slurm/down``) for the tests.

    cluster = SlurmCluster.up()        # raises Unavailable(reason) where it cannot run here
    subprocess.run(["sbatch", ...], env=cluster.env)
    cluster.down()                     # only if this call of up() started it

or, in a test module (or conftest.py), the session fixture, which also exports ``SLURM_CONF``
into ``os.environ`` for the whole session (so submitit and Hydra's submitit launcher, which run
``sbatch``/``sacct`` in subprocesses, find the cluster) and skips, with the reason, where the
cluster cannot run::

    from slurm_cluster import slurm_cluster  # noqa: F401

    def test_x(slurm_cluster):
        overrides = slurm_cluster.launcher_overrides()   # hydra/launcher=submitit_slurm ...

However many modules import the fixture, the cluster is brought up once per test process and
taken down after the last of them, and only if it was not already up before the tests (a
developer's running cluster is left running).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UP = REPO / "scripts" / "slurm" / "up"
DOWN = REPO / "scripts" / "slurm" / "down"
DEFAULT_STATE_DIR = Path("/tmp/slnn-slurm")


class Unavailable(RuntimeError):
    """The SLURM test cluster cannot run on this machine (no packages, not root, a daemon that
    does not start, ...): the message says what; the tests skip with it."""


@dataclass
class SlurmCluster:
    state_dir: Path          # config (etc/), logs (log/), recorded pids (run/pids)
    conf: Path               # what SLURM_CONF must point at
    started: bool            # True if up() started it; False if it was already up
    partition: str = "debug"
    account: str = "slnn"

    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` with ``SLURM_CONF`` pointing at this cluster, for subprocesses."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @property
    def logs(self) -> Path:
        return self.state_dir / "log"

    @classmethod
    def up(cls, state_dir: Path | str | None = None, timeout: float = 900) -> "SlurmCluster":
        """Run ``scripts/slurm/up`` (installing the Debian packages if they are missing, which
        is why the timeout is long); raise ``Unavailable`` with its one-line reason if it fails."""
        if not sys.platform.startswith("linux"):
            raise Unavailable(f"the test cluster runs on Linux only (this is {sys.platform})")
        state = Path(state_dir or os.environ.get("SLNN_SLURM_DIR") or DEFAULT_STATE_DIR).resolve()
        env = {**os.environ, "SLNN_SLURM_DIR": str(state)}
        env.pop("SLURM_CONF", None)
        try:
            p = subprocess.run(["bash", str(UP)], env=env, capture_output=True, text=True,
                               timeout=timeout)
        except FileNotFoundError:
            raise Unavailable("bash is not installed") from None
        except subprocess.TimeoutExpired:
            subprocess.run(["bash", str(DOWN)], env=env, capture_output=True, timeout=120)
            raise Unavailable(f"scripts/slurm/up did not finish within {timeout:.0f} s") from None
        if p.returncode != 0:
            lines = [ln for ln in (p.stderr or p.stdout).splitlines() if ln.strip()]
            raise Unavailable(lines[-1] if lines else f"scripts/slurm/up exited with "
                                                      f"{p.returncode}")
        conf = state / "etc" / "slurm.conf"
        if f"export SLURM_CONF={conf}" not in p.stdout:
            raise Unavailable(f"scripts/slurm/up did not report {conf}: {p.stdout.strip()[-300:]}")
        return cls(state, conf, started="already up" not in p.stdout)

    def down(self, force: bool = False) -> None:
        """Run ``scripts/slurm/down`` if up() started the cluster (or ``force``)."""
        if not (self.started or force):
            return
        env = {**os.environ, "SLNN_SLURM_DIR": str(self.state_dir)}
        p = subprocess.run(["bash", str(DOWN)], env=env, capture_output=True, text=True,
                           timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"scripts/slurm/down failed: {(p.stderr or p.stdout).strip()}")

    def run(self, *cmd: str, check: bool = True, timeout: float = 60,
            **kw) -> subprocess.CompletedProcess:
        """Run a SLURM client command (``sbatch``, ``sacct``, ...) against this cluster."""
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True,
                              check=check, timeout=timeout, **kw)

    def launcher_overrides(self, timeout_min: int = 10, mem_gb: int = 1, cpus_per_task: int = 1,
                           array_parallelism: int = 2) -> list[str]:
        """The Hydra overrides that send a multirun here. On a real cluster only partition,
        account and timeout_min change (docs/slurm.md)."""
        return ["hydra/launcher=submitit_slurm",
                f"hydra.launcher.partition={self.partition}",
                f"hydra.launcher.account={self.account}",
                f"hydra.launcher.timeout_min={timeout_min}",
                f"hydra.launcher.mem_gb={mem_gb}",
                f"hydra.launcher.cpus_per_task={cpus_per_task}",
                f"hydra.launcher.array_parallelism={array_parallelism}"]


# --- one cluster per test process, however many fixtures ask for it ----------------------------

_lock = threading.Lock()
_shared: SlurmCluster | None = None
_failure: Unavailable | None = None
_users = 0


def acquire() -> SlurmCluster:
    """The process's cluster, brought up on first use; raises (the same) ``Unavailable`` on every
    call once bringing it up has failed, without trying again."""
    global _shared, _failure, _users
    with _lock:
        if _failure is not None:
            raise _failure
        if _shared is None:
            try:
                _shared = SlurmCluster.up()
            except Unavailable as e:
                _failure = e
                raise
        _users += 1
        return _shared


def release() -> None:
    """Drop one user; after the last, take the cluster down (if this process brought it up)."""
    global _shared, _users
    with _lock:
        _users -= 1
        if _users == 0 and _shared is not None:
            cluster, _shared = _shared, None
            cluster.down()


@pytest.fixture(scope="session")
def slurm_cluster():
    """The running one-node cluster (a ``SlurmCluster``), with ``SLURM_CONF`` exported into
    ``os.environ`` for the session; skipped, with the reason, where it cannot run."""
    try:
        cluster = acquire()
    except Unavailable as e:
        pytest.skip(f"no SLURM test cluster here: {e}")
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(cluster.conf))
    try:
        yield cluster
    finally:
        mp.undo()
        release()
