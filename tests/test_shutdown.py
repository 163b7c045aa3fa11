"""Tests for slnn.app.shutdown, the quick exit of slnn's commands, and slnn.app.gcpause: run with
`python -m pytest tests/test_shutdown.py -q`.

Each test runs a small program in a fresh interpreter, because what is tested happens as that
interpreter exits."""

import sqlite3
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""\
    import atexit, gc, sys
    # registered before install(): atexit runs it after the hook, as the interpreter's teardown
    atexit.register(lambda: print(f"frozen={{gc.get_freeze_count() > 0}}", file=sys.stderr))
    from slnn.app import shutdown
    shutdown.install()
    shutdown.install()  # twice: one hook
    if {store!r}:
        from slnn.tracking.store import client_for
        client = client_for({uri!r})
        run = client.create_run(client.create_experiment("e"))
        client.log_metric(run.info.run_id, "m", 1.5)
        client.set_terminated(run.info.run_id)
    sys.stdout.write("last words, no newline")  # buffered: the hook flushes it
    sys.exit({code})
    """)


def _run(tmp_path, code=0, store=True):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    src = PROGRAM.format(store=store, uri=uri, code=code)
    return subprocess.run([sys.executable, "-c", src], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_the_exit_code_and_the_last_output_survive_and_the_objects_are_frozen(tmp_path):
    proc = _run(tmp_path, code=3, store=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "last words, no newline"
    assert proc.stderr.strip().splitlines() == ["frozen=True"]


def test_a_sqlite_store_is_whole_in_its_file_after_the_quick_exit(tmp_path):
    # WAL mode (slnn's stores): the last connection to close folds the log into the file and
    # deletes it; the hook closes the pooled connections that the skipped teardown used to
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == "frozen=True"
    assert sorted(p.name for p in tmp_path.glob("mlflow.db*")) == ["mlflow.db", "mlflow.db.lock"]
    # the file alone holds the run: read it with a plain sqlite3 connection, read-only
    con = sqlite3.connect(f"file:{tmp_path / 'mlflow.db'}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("select status from runs").fetchall() == [("FINISHED",)]
        assert con.execute("select key, value from metrics").fetchall() == [("m", 1.5)]
    finally:
        con.close()


def test_a_store_only_read_is_closed_too(tmp_path):
    # slnn-report opens its store read-only (client_for(write=False)): its connections are
    # closed at exit like a writer's, so no log or shared-memory file is left beside the store
    assert _run(tmp_path).returncode == 0
    reader = textwrap.dedent(f"""\
        from slnn.app import shutdown
        shutdown.install()
        from slnn.tracking.store import client_for
        client = client_for({f"sqlite:///{tmp_path}/mlflow.db"!r}, write=False)
        print(len(client.search_runs([e.experiment_id for e in client.search_experiments()])))
        """)
    proc = subprocess.run([sys.executable, "-c", reader], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "1"
    assert sorted(p.name for p in tmp_path.glob("mlflow.db*")) == ["mlflow.db", "mlflow.db.lock"]


def test_a_store_opened_by_mlflow_alone_is_closed_too(tmp_path):
    # the hook closes the engines MLflow itself cached, so a client slnn did not make (a
    # notebook's, or a library's) leaves the store whole in its file as well
    assert _run(tmp_path).returncode == 0
    reader = textwrap.dedent(f"""\
        from slnn.app import shutdown
        shutdown.install()
        from mlflow.tracking import MlflowClient
        client = MlflowClient({f"sqlite:///{tmp_path}/mlflow.db"!r})
        print(len(client.search_runs([e.experiment_id for e in client.search_experiments()])))
        """)
    proc = subprocess.run([sys.executable, "-c", reader], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "1"
    assert sorted(p.name for p in tmp_path.glob("mlflow.db*")) == ["mlflow.db", "mlflow.db.lock"]


def _python(src: str, tmp_path) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(src)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


def test_the_collector_is_paused_for_the_imports_and_resumed_once_mlflow_is_in(tmp_path):
    # slnn.app.gcpause: off from the console script's start until quiet_libraries has imported
    # MLflow, then on again, with everything imported so far frozen
    out = _python("""\
        import gc, sys
        from slnn.app import gcpause
        gcpause.pause()
        print(gc.isenabled(), "mlflow" in sys.modules)
        from slnn.app.run import quiet_libraries
        quiet_libraries()
        print(gc.isenabled(), "mlflow" in sys.modules, gc.get_freeze_count() > 100_000)
        gcpause.resume()  # a second resume changes nothing
        print(gc.isenabled())
        """, tmp_path)
    assert out == ["False", "False", "True", "True", "True", "True"]


def test_a_collector_the_program_turned_off_stays_off(tmp_path):
    out = _python("""\
        import gc
        from slnn.app import gcpause
        gc.disable()
        gcpause.pause()
        gcpause.resume()
        print(gc.isenabled(), gc.get_freeze_count())
        """, tmp_path)
    assert out == ["False", "0"]


def test_the_console_script_starts_with_the_collector_paused(tmp_path):
    # the entry point pauses before slnn.app.cli (Hydra, OmegaConf, the schema) is imported
    out = _python("""\
        import gc, sys
        import slnn.app.cli as cli_module
        calls = []
        cli_module.cli = lambda: calls.append((gc.isenabled(), "hydra" in sys.modules))
        del sys.modules["slnn.app.cli"]  # the entry imports it afresh: see what it sees
        sys.modules["slnn.app.cli"] = cli_module
        gc.enable()
        from slnn.app.entry import slnn_train
        slnn_train()
        print(*calls[0])
        """, tmp_path)
    assert out == ["False", "True"]
