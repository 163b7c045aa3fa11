"""Every example of ``slnn-train --help`` and ``slnn-report --help`` runs, pasted as a user would.

Its own module (the helpers are ``test_cli``'s), so that it runs beside ``test_cli``'s tests,
which share one module-scoped sweep and so one worker.
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from test_cli import PROGRESS, clean_env, help_examples, run_example, start_example


@pytest.mark.slow
def test_every_example_of_both_helps_runs(tmp_path):
    """As a user would paste them into a shell, in a fresh folder: the ids, name and server
    address of slnn-report's examples replaced by the sweep's run here, and ``mlflow ui`` given
    a free port (it serves on 5000, which a shared machine may be using)."""
    import pandas as pd
    from sklearn.datasets import load_iris

    from servers import free_port, start_mlflow_server, stop_process, wait_http
    from slnn.report.cli import EXAMPLE_ID, EXAMPLE_NAME, EXAMPLE_SERVER

    iris = load_iris(as_frame=True)
    pd.concat([iris.data, iris.target.rename("label")], axis=1).to_csv(tmp_path / "my.csv",
                                                                       index=False)
    train = help_examples("slnn-train")
    assert len(train) == 6 and train[-1].startswith("MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui")
    # the named study first: the newest sweep, which the report examples read, is then the grid
    # (18 runs, not 80: a quicker report, and the examples check the command line, not the size)
    for command in sorted(train[:-1], key=lambda c: "+experiment=" not in c):
        proc = run_example(command, tmp_path)
        assert proc.returncode == 0, (command, proc.stderr[-3000:])
        for line in (proc.stdout + proc.stderr).splitlines():  # only slnn's own lines
            assert line.startswith("slnn: ") or PROGRESS.match(line), (command, line)
    port = free_port()
    ui = start_example(train[-1], tmp_path, tmp_path / "ui.log", ["--port", str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, ui, tmp_path / "ui.log")
    finally:
        stop_process(ui)

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    [newest] = client.search_runs([client.get_experiment_by_name("slnn").experiment_id],
                                  "tags.`slnn.sweep` = 'true'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
    assert newest.data.tags["slnn.study"] == "sweep"  # the 18-cell grid, run last
    server = start_mlflow_server(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts",
                                 tmp_path / "server.log", env=clean_env())
    try:
        report = help_examples("slnn-report")
        assert len(report) == 6
        for command in report:
            command = (command.replace(EXAMPLE_ID, newest.info.run_id[:12])
                       .replace(EXAMPLE_NAME, newest.info.run_name)
                       .replace(EXAMPLE_SERVER, server.url))
            proc = run_example(command, tmp_path)
            assert proc.returncode == 0, (command, proc.stderr[-3000:])
            assert f"(sweep {newest.info.run_id})" in proc.stdout, (command, proc.stdout)
    finally:
        stop_process(server.proc)
    assert (tmp_path / "reports" / "mine" / "report.html").exists()
