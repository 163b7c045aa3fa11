"""A password in the tracking URI never leaves the process that was given it: not on stdout or
stderr, not in a sweep's folder or a report, not in the server's artifacts or database, not in a
tag or param. ``mask`` (``slnn.tracking.faults``) is tested on its own against hand-made cases.

    python -m pytest tests/test_secrets.py -m 'not slow'     # mask alone
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from slnn.tracking.faults import mask, strip_credentials

BIN = Path(sys.executable).parent
RAW = "S3cr%40tPW"  # as written in the URI: '@' percent-encoded
PLAIN = unquote(RAW)  # as the server is sent it


@pytest.mark.parametrize("text, masked", [
    ("http://ann:s3cret@127.0.0.1:5000", "http://ann:***@127.0.0.1:5000"),
    # '@' in the password, written as it is: the host is after the last '@'
    ("http://ann:p@ss@host:5000/x", "http://ann:***@host:5000/x"),
    (f"at http://user:{RAW}@127.0.0.1:5/#/experiments/1, then", "at http://user:***@127.0.0.1:5/#/experiments/1, then"),
    ("https://ghp_token123@host/api", "https://***@host/api"),  # a token as the user
    ("postgresql+psycopg2://ann:p%3Ass@db:5432/mlflow?sslmode=require&password=x",
     "postgresql+psycopg2://ann:***@db:5432/mlflow?sslmode=require&password=***"),
    ("http://host/x?access_token=abc&n=1#token=def", "http://host/x?access_token=***&n=1#token=***"),
    # sub-delimiters are valid in a password as written: the URI does not end at them
    ("uri 'http://ann:it's(1);x@h:1' here", "uri 'http://ann:***@h:1' here"),
    # Hydra writes overrides back with colons escaped
    (r"tracking.uri=http\://ann\:s3cret@h\:5000", "tracking.uri=http://ann:***@h:5000"),
    # what cannot be split safely is masked whole after the scheme
    ("http://ann:pa/ss@host/x", "http://***"),
    ("http://ann:pa?ss@host", "http://***"),
    ("sqlite:////tmp/mlflow.db and file:///tmp/a b", "sqlite:////tmp/mlflow.db and file:///tmp/a b"),
    ("http://127.0.0.1:5000/#/experiments/1", "http://127.0.0.1:5000/#/experiments/1"),
])
def test_mask(text, masked):
    assert mask(text) == masked
    assert mask(masked) == masked  # masking twice changes nothing


def test_a_link_to_open_has_no_credentials():
    assert strip_credentials(f"http://user:{RAW}@127.0.0.1:5000/#/x") == "http://127.0.0.1:5000/#/x"
    assert strip_credentials("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


# --- real commands against a real server -----------------------------------------------------

def run(cmd: list, cwd: Path, env: dict, timeout: float = 600):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def leaks(root: Path) -> list[str]:
    """Every file under ``root`` that holds the password, raw or decoded."""
    out = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if RAW.encode() in data or PLAIN.encode() in data:
                out.append(str(path.relative_to(root)))
    return out


@pytest.mark.slow
def test_no_byte_that_slnn_writes_holds_the_password(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from servers import start_mlflow_server, stop_process

    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = start_mlflow_server(f"sqlite:///{server_dir / 'mlflow.db'}", server_dir / "artifacts",
                                 server_dir / "server.log")
    try:
        uri = server.url.replace("http://", f"http://user:{RAW}@")
        work = tmp_path / "work"
        work.mkdir()
        base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        base.pop("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", None)  # MLflow would print its lines
        fast = ["data=iris_petal", "train.epochs=2", "tracking.plot=false"]
        procs = {
            # the URI on the command line: a single run, and a sweep on joblib's workers
            "run": run([BIN / "slnn-train", *fast, "seed=9", f"tracking.uri={uri}"], work, base),
            "sweep": run([BIN / "slnn-train", "-m", "seed=0,1,2", *fast, f"tracking.uri={uri}",
                          "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                          "hydra.sweep.dir=sweep1"], work, base),
            # the URI in the environment, and the basic launcher
            "sweep_env": run([BIN / "slnn-train", "-m", "seed=3,4", *fast,
                              "hydra.sweep.dir=sweep2"], work,
                             {**base, "MLFLOW_TRACKING_URI": uri}),
            # submitit's local jobs: each is a pickle in the sweep folder (the launcher, its
            # config, Hydra's state), and a log of its own
            "sweep_submitit": run([BIN / "slnn-train", "-m", "seed=5,6", *fast,
                                   f"tracking.uri={uri}", "hydra/launcher=submitit_local",
                                   "hydra.sweeper.chunks=2", "hydra.sweep.dir=sweep3"], work, base),
            "report": run([BIN / "slnn-report", "--tracking-uri", uri, "--out", "rep",
                           "--attach"], work, base),
        }
        for name, proc in procs.items():
            assert proc.returncode == 0, (name, proc.stderr[-3000:])
        # a store that does not answer: the one line names it, masked
        refused = run([BIN / "slnn-train", *fast, "tracking.uri=" + uri.rsplit(":", 1)[0]
                       + ":9"], work, base)
        assert refused.returncode == 2 and "user:***@127.0.0.1:9" in refused.stderr
        procs["refused"] = refused

        for name, proc in procs.items():
            text = proc.stdout + proc.stderr
            assert RAW not in text and PLAIN not in text, name
            assert "View run" not in text and "View experiment" not in text, name
        assert "user:***@127.0.0.1" in procs["sweep"].stdout  # the server, named masked
        assert f"(this run: {server.url}/#/experiments/" in procs["run"].stdout

        # the MLflow API: every tag and param of every run
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert len(runs) == 1 + 3 + 7  # a run, three parents, seven cells
        for r in runs:
            for value in (*r.data.tags.values(), *r.data.params.values()):
                assert RAW not in value and PLAIN not in value, (r.info.run_id, value)
        assert any("tracking.uri=http://user:***@" in r.data.tags.get("slnn.command", "")
                   for r in runs)
        # every byte on disk: the work folder (sweep folders, Hydra's, the reports), the server's
        # database and artifacts (config.yaml, cells.json, report.md, run.log, ...)
        assert (work / "rep" / "report.md").exists() and list(work.glob("sweep1/cells/*"))
        assert list(server_dir.glob("artifacts/*/*/artifacts/config.yaml")) or \
            list(server_dir.glob("artifacts/**/config.yaml"))
        # the jobs' pickles were written, and hold the URI masked
        pickles = list(work.glob("sweep3/.submitit/*/*_submitted.pkl"))
        assert len(pickles) == 2 and all(b"user:***@127.0.0.1" in p.read_bytes() for p in pickles)
        assert leaks(work) == []
        assert leaks(server_dir) == []  # mlflow.db, artifacts/, the server's log
    finally:
        stop_process(server.proc)
