"""Real servers for the tests: a throwaway PostgreSQL cluster, an ``mlflow server``, an
``mlflow models serve``. Each starts on a free 127.0.0.1 port, every wait is bounded, and every
``stop`` ends what was started (terminate, then kill) and removes its files.

    cluster = PgCluster.start()                       # raises Unavailable if it cannot run here
    server = start_mlflow_server(cluster.uri("mlflow"), tmp / "artifacts", tmp / "server.log")
    ...
    stop_process(server.proc); cluster.stop()

PostgreSQL refuses to run as root, so as root its binaries run as the ``postgres`` user
(``runuser -u postgres --``) on a data folder under /tmp that the user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent  # the venv's mlflow, slnn-train, ...


class Unavailable(RuntimeError):
    """A server cannot run on this machine (missing binaries, no postgres user, ...): skip."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A port where nothing answers (free a moment ago; nothing of ours binds it)."""
    return free_port()


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def wait_http(url: str, timeout: float = 90, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200, for at most ``timeout`` seconds; fail early (with the
    log's tail) if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before {url} answered:"
                               f"\n{tail(log) if log else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s ({last}):\n"
                       f"{tail(log) if log else ''}")


def start_process(cmd: list[str], log: Path, env: dict | None = None,
                  cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (servers fork workers), output into ``log``."""
    fh = open(log, "ab")
    try:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
    finally:
        fh.close()  # the child holds its own descriptor


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM ``proc`` (a server's supervisor stops its own workers), wait up to ``timeout`` s,
    then SIGKILL whatever is left of the process group ``start_process`` gave it."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the leader if it hung, or workers it left behind
    except ProcessLookupError:
        pass
    proc.wait(timeout=timeout)


# --- PostgreSQL -----------------------------------------------------------------------------

def pg_bindir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: Debian's /usr/lib/postgresql/<newest>/bin, else
    wherever ``pg_ctl`` on PATH really lives (symlinks resolved)."""
    def version(p: str) -> int:
        v = Path(p).parent.name
        return int(v) if v.isdigit() else 0

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    if found:
        d = Path(os.path.realpath(found)).parent
        if (d / "initdb").exists():
            return d
    raise Unavailable("PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql)")


@dataclass
class PgCluster:
    root: Path          # owned by the server's user: data/, sock/, postgres.log
    port: int
    bindir: Path
    as_user: list[str] = field(default_factory=list)  # the prefix that runs a binary as its owner

    @classmethod
    def start(cls, timeout: float = 60) -> "PgCluster":
        """initdb a fresh cluster into a new folder under /tmp, trust auth, listening on
        127.0.0.1:<free port> only; raises ``Unavailable`` if it cannot be started here."""
        bindir = pg_bindir()
        as_user: list[str] = []
        owner = None
        if os.geteuid() == 0:  # postgres will not run as root
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no 'postgres' user to run "
                                  "PostgreSQL as") from None
            runuser = shutil.which("runuser")
            as_user = [runuser, "-u", "postgres", "--"] if runuser else None
            if as_user is None:
                raise Unavailable("running as root without runuser to drop to the postgres user")
        # /tmp, not pytest's tmp_path: the postgres user must be able to traverse every parent
        root = Path(tempfile.mkdtemp(prefix="slnn-pg-", dir="/tmp"))
        (root / "sock").mkdir()
        if owner is not None:
            for p in (root, root / "sock"):
                os.chown(p, owner.pw_uid, owner.pw_gid)
        os.chmod(root, 0o700)
        cluster = cls(root, free_port(), bindir, as_user)
        try:
            cluster._run("initdb", "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                         "-E", "UTF8", "--no-sync", timeout=timeout)
            # a throwaway cluster: durability off makes MLflow's schema migrations much faster
            opts = (f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {root / 'sock'} "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            cluster._run("pg_ctl", "-D", str(root / "data"), "-l", str(root / "postgres.log"),
                         "-o", opts, "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10)
            conn = cluster.connect("postgres")
            try:
                conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
                with conn.cursor() as cur:
                    cur.execute("CREATE DATABASE mlflow")
            finally:
                conn.close()
        except Exception as e:
            log = tail(root / "postgres.log")
            cluster.stop()
            raise Unavailable(f"PostgreSQL could not be started: {e}\n{log}") from None
        return cluster

    def _run(self, binary: str, *args: str, timeout: float) -> str:
        cmd = self.as_user + [str(self.bindir / binary), *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {p.returncode}: "
                               f"{(p.stderr or p.stdout).strip()[-2000:]}")
        return p.stdout

    def uri(self, db: str = "mlflow") -> str:
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the driver slnn installs is psycopg2
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "mlflow"):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=db,
                                connect_timeout=10)

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (then kill the postmaster if that fails) and remove the folder."""
        data = self.root / "data"
        try:
            if (data / "postmaster.pid").exists():
                try:
                    self._run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop",
                              timeout=40)
                except Exception:  # noqa: BLE001 - the postmaster's pid is in its own file
                    pid = int((data / "postmaster.pid").read_text().split()[0])
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# --- MLflow ---------------------------------------------------------------------------------

@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path
    artifacts: Path | None = None  # where an mlflow server stores the artifacts it proxies


def start_mlflow_server(backend_uri: str, artifacts: Path, log: Path, *, env: dict | None = None,
                        timeout: float = 90) -> Server:
    """``mlflow server`` on ``backend_uri`` (artifacts proxied into ``artifacts``), bound to
    127.0.0.1 on a free port; returns once ``/health`` answers."""
    port = free_port()
    cmd = [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", backend_uri,
           "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    env = dict(os.environ if env is None else env)
    # the server's job runner (seven huey consumers, each importing MLflow) serves GenAI scorers,
    # nothing slnn uses; on two cores it would triple the start-up time
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    proc = start_process(cmd, log, env=env, cwd=Path(artifacts).parent)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", timeout, proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return Server(proc, url, log, Path(artifacts))


def start_model_server(model_uri: str, log: Path, *, env: dict, cwd: Path,
                       timeout: float = 90, venv_bin: Path = VENV_BIN) -> Server:
    """``mlflow models serve -m model_uri --env-manager local`` on 127.0.0.1:<free port>, with
    the mlflow of ``venv_bin`` (this venv's by default); returns once ``/ping`` answers."""
    port = free_port()
    cmd = [str(venv_bin / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # MLflow runs `bash -c "exec uvicorn ..."`: uvicorn must be on PATH, as in an activated venv
    env = {**env, "PATH": os.pathsep.join([str(venv_bin), env.get("PATH", os.defpath)])}
    proc = start_process(cmd, log, env=env, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/ping", timeout, proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return Server(proc, url, log)
