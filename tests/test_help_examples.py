"""Every example of ``slnn-train --help`` and ``slnn-report --help`` runs, pasted as a user would.

Its own module (the helpers are ``test_cli``'s), so that it runs beside ``test_cli``'s tests,
which share one module-scoped sweep and so one worker.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

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
    from slnn.app.report_cli import EXAMPLE_ID, EXAMPLE_NAME, EXAMPLE_SERVER

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
        assert len(report) == 7 and report[-1].startswith("slnn-report --from reports/")
        for command in report:
            command = (command.replace(EXAMPLE_ID, newest.info.run_id[:12])
                       .replace(EXAMPLE_NAME, newest.info.run_name)
                       .replace(EXAMPLE_SERVER, server.url)
                       # the committed report's folder is not in this fresh one: the report an
                       # earlier example wrote (--out reports/mine) is drawn again from its data
                       .replace("--from reports/guide_vs_correct", "--from reports/mine"))
            proc = run_example(command, tmp_path)
            assert proc.returncode == 0, (command, proc.stderr[-3000:])
            said = ("(from the data in reports/mine)" if "--from" in command
                    else f"(sweep {newest.info.run_id})")
            assert said in proc.stdout, (command, proc.stdout)
    finally:
        stop_process(server.proc)
    assert (tmp_path / "reports" / "mine" / "report.html").exists()


# --- the README's and the docs' commands --------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = ("slnn-train", "slnn-report", "slnn-check")


def doc_commands(path: Path) -> list[str]:
    """The slnn commands of ``path``'s code (indented or fenced blocks), continuation lines
    joined, a leading ``.venv/bin/`` and environment assignments dropped, comments kept out."""
    out, code, fenced, pending = [], [], False, ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            code.append(line.strip())
    for line in code:
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not any(p in line for p in PROGRAMS):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split, lexer.commenters = True, "#"
        try:
            tokens = list(lexer)
        except ValueError:  # not a shell line (Python in a fenced block)
            continue
        part: list[str] = []
        for token in [*tokens, ";"]:
            if token not in (";", "&&", "|", "||", "(", ")", "$("):
                part.append(token)
                continue
            while part and re.match(r"^[A-Z_]+=", part[0]):
                part = part[1:]
            if part and part[0].removeprefix(".venv/bin/") in PROGRAMS:
                out.append(shlex.join([part[0].removeprefix(".venv/bin/"), *part[1:]]))
            part = []
    return out


def test_the_readme_is_short_and_every_doc_has_commands():
    assert len((ROOT / "README.md").read_text().splitlines()) < 260
    commands = {p.name: doc_commands(p) for p in DOCS}
    assert len(commands["README.md"]) >= 10
    assert sum(map(len, commands.values())) >= 30


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_in_the_readme_and_the_docs_is_valid(doc, tmp_path, monkeypatch, capsys):
    """Each slnn command the README and the docs show parses as its program parses it: a
    ``slnn-train`` line's keys, groups and (unswept) values pass the checks a run or a sweep makes
    before it starts (``slnn.app.cli.precheck``, on a copy of the files the examples name);
    ``slnn-report`` and ``slnn-check`` lines pass their argument parsers. Lines with a
    placeholder (``<id>``, ``...``, ``/abs/path``) are checked as far as the placeholder allows."""
    import pandas as pd
    from sklearn.datasets import load_iris

    from slnn.app.cli import MULTIRUN_FLAGS, precheck
    from slnn.app.check_cli import build_parser as check_parser
    from slnn.app.report_cli import build_parser as report_parser

    iris = load_iris(as_frame=True)
    pd.concat([iris.data, iris.target.rename("label")], axis=1).to_csv(tmp_path / "my.csv",
                                                                       index=False)
    (tmp_path / "my_rules.py").write_text(
        "def my_step(x, net, z, t, delta):\n    return x.T @ delta / len(x)\n")
    monkeypatch.chdir(tmp_path)
    checked = 0
    for command in doc_commands(doc):
        program, *args = shlex.split(command)
        if "..." in args or any("<" in a or "/abs/path" in a for a in args):
            if program == "slnn-train":
                continue
            args = [re.sub(r"<[^>]*>", "x", a) for a in args if a != "..."]
        try:
            if program == "slnn-train":
                flags = {a for a in args if a.startswith("-")}
                if flags - MULTIRUN_FLAGS:  # --help, --version, -sc: Hydra's and slnn's flags
                    continue
                precheck([a for a in args if a not in MULTIRUN_FLAGS], multirun=bool(flags))
            elif program == "slnn-report":
                report_parser().parse_args(args)
            else:
                check_parser().parse_args(args)
        except BaseException as e:  # noqa: BLE001 - SystemExit from die(), UsageError, ...
            pytest.fail(f"{doc.name}: {command}: {type(e).__name__} {e} "
                        f"{capsys.readouterr().err.strip()}")
        checked += 1
    if doc.name == "README.md":
        assert checked >= 8
