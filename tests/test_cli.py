"""The command line as a new user meets it, run for real (``slnn-train``, ``slnn-report`` and
``mlflow ui`` as subprocesses, real SQLite stores in ``tmp_path``): typos are errors that name the
key meant, the help's examples work, each cell's log and overrides are easy to find, and only
slnn's own lines reach the terminal.

    python -m pytest tests/test_cli.py -m 'not slow'     # the typos of single runs, ~20 s
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from slnn.app.keys import config_keys, nearest


def assert_refused(proc, tmp_path, message: str) -> None:
    """Exit code 2, one stderr line ``slnn-train: error: <message>``, and nothing started: no
    store, no run, no Hydra folder."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [f"slnn-train: error: {message}"], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for made in ("mlflow.db", "mlruns", "outputs", "multirun"):
        assert not (tmp_path / made).exists(), made


# --- unknown keys and choices ---------------------------------------------------------------

def test_every_schema_key_is_known_and_a_typo_finds_its_key():
    keys = config_keys()
    assert {"optim.lr", "data.split", "train.epochs", "seed", "tracking.uri", "sweep.force"} <= set(keys)
    assert nearest("optim.lrr", keys) == " did you mean optim.lr?"
    assert nearest("lr", keys) == " did you mean optim.lr?"  # by its last part
    assert nearest("train.epoch", keys) == " did you mean train.epochs?"
    assert nearest("zzzzzz", keys) == ""


SINGLE_RUN_TYPOS = [
    (["+optim.lrr=0.1", "data=iris_petal"], "optim.lrr is not a config key: did you mean optim.lr?"),
    (["optim.lrr=0.1"], "optim.lrr is not a config key: did you mean optim.lr?"),
    (["model.activation=sigmoidd"], "model.activation='sigmoidd' is not valid: did you mean "
                                    "sigmoid? choose one of ['guide_tanh', 'linear', 'relu', "
                                    "'sigmoid', 'tanh']"),
]
MORE_SINGLE_RUN_TYPOS = [
    (["lr=0.1"], "lr is not a config key or group: did you mean optim.lr?"),
    (["+experimnt=guide_vs_correct"], "experimnt is not a config key or group: did you mean "
                                      "experiment?"),
    (["update=kron"], "update=kron is not valid: did you mean kronecker? choose one of "
                      "['ascent', 'custom', 'input', 'kronecker', 'no_bias', 'no_derivative', "
                      "'outer_transposed', 'sigmoid_shortcut', 'sum_not_mean']"),
    (["+optim.lr=0.2"], "optim.lr already exists: set it without the + (+ adds a key; slnn has "
                        "no new keys)"),
]


@pytest.mark.parametrize("args, message", SINGLE_RUN_TYPOS + [
    pytest.param(*t, marks=pytest.mark.slow) for t in MORE_SINGLE_RUN_TYPOS])
def test_a_typo_in_a_single_run_is_one_line_naming_the_key_meant(slnn_train, tmp_path, args,
                                                                 message):
    assert_refused(slnn_train(args, cwd=tmp_path), tmp_path, message)


# the named studies the package ships (the files, listed independently of slnn's own code)
STUDIES = sorted(f.stem for f in (Path(__file__).parent.parent / "experiments").glob("*.yaml"))

SWEEP_TYPOS = [
    # on the command line, swept or not, with + or without
    (["optim.lrr=0.1,0.2", "data=iris_petal"], "optim.lrr is not a config key: did you mean optim.lr?"),
    (["+optim.lrr=0.1", "seed=0,1"], "optim.lrr is not a config key: did you mean optim.lr?"),
    (["+experiment=guide_vs_corect"], "experiment=guide_vs_corect is not valid: did you mean "
                                      f"guide_vs_correct? choose one of {STUDIES}"),
    # a swept choice: the sweeper names the cell, once
    (["model.activation=sigmoid,tanhh", "data=iris_petal"],
     "model.activation='tanhh' is not valid: did you mean tanh? choose one of ['guide_tanh', "
     "'linear', 'relu', 'sigmoid', 'tanh'] (in the cell model.activation=tanhh data=iris_petal); "
     "no run was started"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", SWEEP_TYPOS)
def test_a_typo_in_a_sweep_is_one_line_naming_the_key_meant(slnn_train, tmp_path, args, message):
    assert_refused(slnn_train(["-m", *args], cwd=tmp_path), tmp_path, message)


@pytest.mark.slow
def test_a_typo_in_a_study_of_ones_own_names_the_key_meant_and_the_cell(slnn_train, tmp_path):
    (tmp_path / "myconf" / "experiment").mkdir(parents=True)
    (tmp_path / "myconf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      optim.lrr: 0.1,0.2\n")
    proc = slnn_train(["-m", "+experiment=mine", f"hydra.searchpath=[file://{tmp_path}/myconf]"],
                      cwd=tmp_path)
    assert_refused(proc, tmp_path, "optim.lrr is not a config key: did you mean optim.lr? (in the "
                   "cell optim.lrr=0.1 +experiment=mine); no run was started")


# --- each cell's log and settings; only slnn's own lines -------------------------------------

PLUGIN = '''
import warnings

import numpy as np


def warn_step(x, net, z, t, delta):
    """the gradient, with a warning: a throwaway rule for the test"""
    warnings.warn("slnn-test: a warning from the rule", UserWarning)
    return x.T @ delta


def boom_step(x, net, z, t, delta):
    """a rule that fails: a throwaway rule for the test"""
    raise RuntimeError("slnn-test: boom")
'''

REGISTER_AND_RUN = '''
import sys
from slnn.core import rules
import plugin
rules.UPDATE_RULES["warn"] = rules.UpdateRule("warn", plugin.warn_step)
rules.UPDATE_RULES["boom"] = rules.UpdateRule("boom", plugin.boom_step)
from slnn.app.cli import cli
sys.argv = ["slnn-train", *sys.argv[1:]]
cli()
'''

# the launcher's progress line in a pipe (slnn.sweep.progress): a few per sweep, never one per cell
PROGRESS = re.compile(r"^\[(?P<k>\d+)/(?P<n>\d+)\] (?P<counts>\d+ finished[^;]*); "
                      r"[\d.]+ (?:cells/s|s/cell); about \d+:\d\d:\d\d left$")
# a cell's own line, the last of its log (slnn.sweep.ledger.cell_line)
CELL_LINE = re.compile(r"^slnn: (?P<name>\S+): (?P<outcome>\w+) "
                       r"\((?:val_error (?P<val_error>\d\.\d{3}), )?(?P<seconds>[\d.]+) s"
                       r"(?:, (?P<warnings>\d+) warnings?)?\)(?:: (?P<error>.*))?$")
END = re.compile(r"^slnn: sweep (?P<name>\S+): .* cells\) in [\d.]+ s; parent run "
                 r"(?P<parent>[0-9a-f]{32})(?:; (?!report:)[^;]+)*; report: (?P<report>\S+) "
                 r"\(rebuild: (?P<rebuild>.+?)\); browse: (?P<browse>.+?) \(the sweep: (?P<url>\S+)\)$")


def clean_env(**extra: str) -> dict:
    """This environment, without a tracking URI or a progress-bar setting of the user's, and
    with the venv's bin first on PATH, as for a user whose venv is active (CI runs the venv's
    python without activating it; slnn then prints its commands with their full path)."""
    drop = ("MLFLOW_TRACKING_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    return env | extra


@pytest.fixture(scope="module")
def plugin_sweep(tmp_path_factory):
    """A sweep (Hydra's basic launcher, in one process) over the gradient and two throwaway rules
    registered in one line each: ``warn`` warns in every step, ``boom`` raises; pyfunc models are
    logged (what made MLflow draw its progress bars) and tqdm is installed."""
    import tqdm  # noqa: F401 - the premise: the progress bars would be drawn

    folder = tmp_path_factory.mktemp("plugin_sweep")
    (folder / "plugin.py").write_text(PLUGIN)
    (folder / "run.py").write_text(REGISTER_AND_RUN)
    args = ["-m", "update=input,warn,boom", "seed=0,1", "data=iris_petal", "train.epochs=2",
            "tracking.plot=false", f"hydra.sweep.dir={folder}/multirun"]
    proc = subprocess.run([sys.executable, "run.py", *args], cwd=folder, text=True,
                          capture_output=True, timeout=900,
                          env=clean_env(PYTHONPATH=os.pathsep.join([str(folder), *sys.path])))
    assert proc.returncode == 1, proc.stderr[-3000:]  # the boom cells failed
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("slnn").experiment_id])
    return proc, folder, client, runs


def cell_runs(runs) -> dict:
    return {r.info.run_name: r for r in runs if r.data.tags.get("slnn.sweep") != "true"}


def run_log(client, run) -> str:
    """The run's ``run.log`` artifact, read where a local store keeps it."""
    from urllib.parse import unquote, urlparse

    uri = client.get_run(run.info.run_id).info.artifact_uri
    assert uri.startswith("file://"), uri
    return (Path(unquote(urlparse(uri).path)) / "run.log").read_text()


@pytest.mark.slow
def test_each_cells_log_is_an_artifact_of_its_run_with_its_warnings_and_errors(plugin_sweep):
    proc, folder, client, runs = plugin_sweep
    cells = cell_runs(runs)
    assert len(cells) == 6
    for name, run in cells.items():
        log = run_log(client, run)
        assert f"slnn: {name}: run {run.info.run_id} started" in log
        rule = run.data.tags["slnn.update"]
        if rule == "warn":  # each run's log has its own warning, though both ran in one process
            assert log.count("UserWarning: slnn-test: a warning from the rule") == 1, log
            assert f"slnn: {name}: max_epochs after 2 epochs, val_error" in log
        elif rule == "boom":
            assert run.info.status == "FAILED"
            assert "Traceback" in log and "RuntimeError: slnn-test: boom" in log
        else:
            assert "Warning" not in log
        # the same log in the sweep folder, in the cell's own folder, and the cell's own line
        [copy] = (folder / "multirun" / "cells").glob(f"*-{name}/run.log")
        text = copy.read_text()
        assert text.startswith(log)
        own = CELL_LINE.match(text[len(log):].rstrip("\n"))
        assert own and own["name"] == name, text[len(log):]
        assert own["warnings"] == ("1" if rule == "warn" else None)
    # the terminal says where a log with warnings or an error is, not what is in it
    out = proc.stdout + proc.stderr
    assert "a warning from the rule" not in out
    where = {n: f"multirun/cells/{sorted((folder / 'multirun' / 'cells').glob(f'*-{n}'))[0].name}"
                f"/run.log" for n in cells}
    warned = [n for n, r in cells.items() if r.data.tags["slnn.update"] == "warn"]
    [line] = [ln for ln in proc.stderr.splitlines() if "logged warnings" in ln]
    assert line.startswith(f"slnn: {len(warned)} cells logged warnings; see ")
    assert sorted(line.split("; see ")[1].split(", ")) == sorted(where[n] for n in warned)
    assert re.search(r"^slnn: boom-sigmoid-lr0.1-s0-iris_petal failed: RuntimeError: slnn-test: "
                     r"boom; its log: multirun/cells/\d{4}-boom-sigmoid-lr0.1-s0-iris_petal/run.log$",
                     proc.stderr, re.M), proc.stderr


@pytest.mark.slow
def test_the_sweep_folder_is_laid_out_as_hydra_lays_it_out_with_no_empty_file(plugin_sweep):
    """``multirun.yaml`` in the sweep folder and, in each cell's folder, ``.hydra/`` with its
    overrides, config and Hydra config, as Hydra's basic sweeper writes a job's folder."""
    proc, folder, _, runs = plugin_sweep
    sweep = folder / "multirun"
    cells = sorted((sweep / "cells").iterdir())
    expected = [[f"update={u}", f"seed={s}", "data=iris_petal", "train.epochs=2",
                 "tracking.plot=False"] for u in ("input", "warn", "boom") for s in (0, 1)]
    assert [yaml.safe_load((c / ".hydra" / "overrides.yaml").read_text()) for c in cells] == expected
    assert [c.name for c in cells] == [f"{i:04d}-{u}-sigmoid-lr0.1-s{s}-iris_petal" for i, (u, s)
                                       in enumerate((u, s) for u in ("input", "warn", "boom")
                                                    for s in (0, 1))]
    by_name = cell_runs(runs)
    for i, (cell, overrides) in enumerate(zip(cells, expected)):
        config = yaml.safe_load((cell / ".hydra" / "config.yaml").read_text())
        run = by_name[cell.name.split("-", 1)[1]]
        assert config["update"]["rule"] == run.data.params["update.rule"]
        assert config["seed"] == int(run.data.params["seed"]) and config["train"]["epochs"] == 2
        hydra = yaml.safe_load((cell / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra["overrides"]["task"] == overrides and hydra["job"]["num"] == i
        assert hydra["mode"] == "MULTIRUN" and hydra["runtime"]["output_dir"] == str(cell)
    multirun = yaml.safe_load((sweep / "multirun.yaml").read_text())
    assert multirun["hydra"]["overrides"]["task"] == [
        "update=input,warn,boom", "seed=0,1", "data=iris_petal", "train.epochs=2",
        "tracking.plot=false"]
    assert f"hydra.sweep.dir={folder}/multirun" in multirun["hydra"]["overrides"]["hydra"]
    # no Hydra folder per job (a chunk of cells, mislabelled), no empty log, no empty folder
    assert sorted(p.parent.parent for p in sweep.rglob(".hydra/hydra.yaml")) == cells
    assert not [p for p in sweep.iterdir() if p.name.isdigit()]
    assert not [p for p in sweep.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert not [p for p in sweep.rglob("*") if p.is_dir() and not any(p.iterdir())]
    assert f"; each cell's overrides and log: multirun/cells/" in proc.stdout


@pytest.mark.slow
def test_only_slnns_own_lines_reach_the_terminal(plugin_sweep):
    proc, *_ = plugin_sweep
    assert "Downloading artifacts" not in proc.stdout + proc.stderr  # tqdm is installed
    for line in proc.stdout.splitlines():
        assert line.startswith("slnn: ") or PROGRESS.match(line), line
    for line in proc.stderr.splitlines():
        assert line.startswith("slnn: "), line


@pytest.mark.slow
def test_each_cells_own_line_is_in_its_log_with_its_final_validation_error(plugin_sweep):
    """No line per cell reaches the terminal (a 6-cell sweep of a few seconds prints none); each
    cell's line ends its log, with the outcome and validation error its run has."""
    proc, folder, _, runs = plugin_sweep
    assert not [ln for ln in proc.stdout.splitlines() if CELL_LINE.match(ln)]
    lines = [CELL_LINE.match((p / "run.log").read_text().splitlines()[-1])
             for p in sorted((folder / "multirun" / "cells").iterdir())]
    assert len(lines) == 6 and all(lines)
    for m in lines:
        run = cell_runs(runs)[m["name"]]
        if run.data.tags["slnn.update"] == "boom":
            assert m["outcome"] == "failed" and m["val_error"] is None
            assert m["error"] == "RuntimeError: slnn-test: boom"
        else:
            assert m["outcome"] == run.data.tags["slnn.outcome"]
            assert m["val_error"] == f"{run.data.metrics['final/val_error']:.3f}"


@pytest.mark.slow
def test_the_end_line_gives_the_parent_and_commands_that_work(plugin_sweep):
    proc, folder, client, runs = plugin_sweep
    [parent] = [r for r in runs if r.data.tags.get("slnn.sweep") == "true"]
    end = END.match(proc.stdout.splitlines()[-1])
    assert end, proc.stdout.splitlines()[-1]
    assert end["name"] == parent.info.run_name and end["name"].startswith("grid-")
    assert end["parent"] == parent.info.run_id
    assert end["rebuild"] == (f"slnn-report --parent-run {parent.info.run_id} --tracking-uri "
                              f"sqlite:///{folder}/mlflow.db")
    # the sweep's runs: its experiment's, searched for its children, in model-training mode
    assert end["url"].endswith(
        f"/#/experiments/{parent.info.experiment_id}/runs?searchFilter=tags.mlflow.parentRunId"
        f"%20%3D%20%27{parent.info.run_id}%27&workflowType=machine_learning")
    # the rebuild command, as printed, rebuilds the same report
    report = Path(end["report"]) / "report.md"
    report.unlink()
    rebuilt = subprocess.run(shlex.split(end["rebuild"]), cwd=folder, text=True,
                             capture_output=True, timeout=600, env=clean_env())
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert report.exists() and parent.info.run_id in rebuilt.stdout
    # the browse command, as printed: a UI for one person (it is started in test_browse_...)
    assert end["browse"] == (f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui "
                             f"--backend-store-uri sqlite:///{folder}/mlflow.db --workers 1")


def printed(command: str) -> tuple[dict, list[str]]:
    """A command as slnn prints it (``VAR=value ... program args``): its environment and argv."""
    words = shlex.split(command)
    env = clean_env()
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    return env, words


def expected_program(name: str, cwd: Path, env: dict) -> str:
    """What ``slnn.tracking.console.program`` prints for ``name`` when run in ``cwd`` with
    ``env``'s PATH (the PATH decides whether the bare name finds this venv's script)."""
    from slnn.tracking.console import program

    here, path = os.getcwd(), os.environ.get("PATH")
    os.chdir(cwd)
    os.environ["PATH"] = env["PATH"]
    try:
        return program(name)
    finally:
        os.chdir(here)
        if path is None:
            os.environ.pop("PATH")
        else:
            os.environ["PATH"] = path


@pytest.mark.slow
def test_the_printed_browse_command_starts_a_light_ui(plugin_sweep, tmp_path):
    from servers import free_port, start_process, stop_process, wait_http

    proc, folder, *_ = plugin_sweep
    end = END.match(proc.stdout.splitlines()[-1])
    env, argv = printed(end["browse"])
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert argv[-2:] == ["--workers", "1"] and argv[1] == "ui"
    port = free_port()  # the printed command serves on MLflow's default port; a test must not
    ui = start_process([*argv, "--port", str(port)], tmp_path / "ui.log", env=env, cwd=folder)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, ui, tmp_path / "ui.log")
        time_left = 20  # seconds
        while time_left:  # the process tree, once it has settled
            rows = subprocess.run(["ps", "-e", "-o", "sid=,rss=,args="], capture_output=True,
                                  text=True).stdout.splitlines()
            tree = [r.split(None, 2) for r in rows if r.split(None, 1)[0] == str(ui.pid)]
            if len(tree) >= 2:
                break
            time_left -= 1
            import time
            time.sleep(1)
        args = [t[2] for t in tree]
        assert not [a for a in args if "huey" in a or "_job_runner" in a], args  # no job queue
        assert len(tree) <= 3, args  # the command and one web worker (15 without the flags)
        assert sum(int(t[1]) for t in tree) < 1024 * 1024, tree  # KiB: under 1 GB (~0.5 here)
    finally:
        stop_process(ui)


@pytest.mark.slow
def test_a_single_run_prints_one_line_and_keeps_its_log(tmp_path):
    import tqdm  # noqa: F401 - the premise: MLflow would draw its bars

    proc = subprocess.run([str(Path(sys.executable).with_name("slnn-train")), "data=iris_petal",
                           "train.epochs=2", "tracking.plot=false"], cwd=tmp_path, text=True,
                          capture_output=True, timeout=600, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    [line] = proc.stdout.splitlines()
    m = re.fullmatch(r"slnn: (\S+): max_epochs after 2 epochs, val_error \d\.\d{3}, test_error "
                     r"\d\.\d{3} \(run ([0-9a-f]{32})\); browse: (.*)", line)
    assert m, line
    mlflow = expected_program('mlflow', tmp_path, clean_env())
    assert m[3] == (f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false {mlflow}"
                    f" ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db --workers 1")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    log = run_log(client, client.get_run(m[2]))
    assert log.startswith(f"slnn: {m[1]}: run {m[2]} started") and line.split(" (run ")[0] in log
    assert not list((tmp_path / "outputs").rglob("*.log"))  # no empty Hydra log beside the run


def test_a_run_log_keeps_warnings_log_records_and_stderr_each_run_its_own(capfd):
    import logging
    import warnings

    from slnn.app.runlog import RunLog

    def emit():
        warnings.warn("slnn-test: again", UserWarning)

    # an in-process slnn-report or slnn-check earlier in this worker quiets the mlflow logger
    # (quiet_mlflow): a cell's log starts from MLflow's own default level
    saved = logging.getLogger("mlflow").level
    logging.getLogger("mlflow").setLevel(logging.NOTSET)
    logs = []
    for _ in range(2):  # the same warning from the same place: in each run's log
        with RunLog(echo=False) as log:
            emit()
            logging.getLogger("mlflow").warning("slnn-test: from mlflow")
            logging.getLogger("somewhere").error("slnn-test: an error")
            print("slnn-test: on stderr", file=sys.stderr)
        logs.append(log)
    out = capfd.readouterr()
    assert "slnn-test" not in out.out + out.err  # a sweep's cell: nothing on the terminal
    for log in logs:
        text = log.text()
        for needle in ("UserWarning: slnn-test: again", "WARNING mlflow: slnn-test: from mlflow",
                       "ERROR somewhere: slnn-test: an error", "slnn-test: on stderr"):
            assert needle in text, (needle, text)
        assert log.n_warnings == 3
    with RunLog(echo=True) as log:  # a single run: the terminal too
        emit()
    logging.getLogger("mlflow").setLevel(saved)
    assert "slnn-test: again" in capfd.readouterr().err and "slnn-test: again" in log.text()


# --- every example of both --help texts runs ------------------------------------------------

VENV_BIN = Path(sys.executable).parent


def help_examples(program: str) -> list[str]:
    """The example commands of ``program --help``: ``slnn-train``'s "Examples" block, and the
    lines of ``slnn-report``'s "examples:" that start with a command."""
    out = subprocess.run([str(VENV_BIN / program), "--help"], capture_output=True, text=True,
                         timeout=120, env=clean_env()).stdout
    if program == "slnn-train":
        block = re.search(r"^Examples.*?:\n(.*?)\n\n", out, re.M | re.S).group(1)
        return [ln.strip() for ln in block.splitlines()]
    block = out.split("\nexamples:\n", 1)[1]
    return [ln.split("   ")[0].strip() for ln in block.splitlines() if ln.startswith("  slnn-report")]


def run_example(command: str, cwd: Path, extra: list[str] = ()) -> subprocess.CompletedProcess:
    env, argv = printed(command)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])  # the venv, activated
    return subprocess.run([*argv, *extra], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1200)


def start_example(command: str, cwd: Path, log: Path, extra: list[str]):
    from servers import start_process

    env, argv = printed(command)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    return start_process([*argv, *extra], log, env=env, cwd=cwd)


# --- run ids as users type them --------------------------------------------------------------

def slnn_report(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "slnn-report"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=clean_env())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["prefix8", "prefix12", "name", "upper"])
def test_report_takes_any_unique_start_of_the_parent_id_or_its_name(plugin_sweep, tmp_path, how):
    _, folder, _, runs = plugin_sweep
    [parent] = [r for r in runs if r.data.tags.get("slnn.sweep") == "true"]
    rid = parent.info.run_id
    text = {"prefix8": rid[:8], "prefix12": rid[:12], "name": parent.info.run_name,
            "upper": rid[:10].upper()}[how]
    proc = slnn_report("--parent-run", text, "--tracking-uri", f"sqlite:///{folder}/mlflow.db",
                       "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"slnn-report: wrote {tmp_path / 'r' / 'report.html'}")
    assert f"(sweep {rid})" in proc.stdout


@pytest.mark.slow
def test_an_ambiguous_or_unknown_id_is_one_line_listing_the_candidates(tmp_path):
    """Parent runs made directly in a real store: 17 ids give two with the same first character
    (there are 16), and two sweeps can share a name."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("slnn")
    made = [client.create_run(exp, run_name="grid-20260101-120000" if i < 2 else f"grid-{i}",
                              tags={"slnn.sweep": "true"}).info for i in range(17)]
    by_first: dict[str, list] = {}
    for info in made:
        by_first.setdefault(info.run_id[0], []).append(info)
    shared = next(v for v in by_first.values() if len(v) >= 2)
    for text, hits in ((shared[0].run_id[0], shared), ("grid-20260101-120000", made[:2])):
        proc = slnn_report("--parent-run", text, "--tracking-uri", uri, cwd=tmp_path)
        assert proc.returncode == 2
        [line] = proc.stderr.splitlines()
        assert line.startswith(f"slnn-report: error: {text!r} matches {len(hits)} sweeps at {uri}: ")
        assert line.endswith("; give more of the id")
        for info in hits:
            assert f"{info.run_id} ({info.run_name})" in line
    proc = slnn_report("--parent-run", "zz", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (f"slnn-report: error: no run 'zz' at {uri}: no sweep's parent run has "
                           "an id starting with it or that name; copy it from the sweep's first "
                           "or last line, or use --experiment <name> for the newest sweep\n")


# --- reports that do not point at the machine that made them -------------------------------

def test_portable_drops_this_machines_paths(tmp_path):
    from slnn.tracking.console import portable

    base = tmp_path / "repo"
    home = str(Path.home())
    assert portable(f"sqlite:///{base}/mlflow.db", base) == "sqlite:///mlflow.db"
    assert portable(f"x --out {base}/reports/a hydra.sweep.dir={base}", base) == \
        "x --out reports/a hydra.sweep.dir=."
    assert portable(f"file://{base}/mlruns", base) == "file:./mlruns"
    assert portable(f"{base}-other/x", base) == f"{base}-other/x".replace(f"{home}/", "~/")
    assert portable(f"sqlite:///{home}/elsewhere/mlflow.db", base) == "sqlite:///~/elsewhere/mlflow.db"


@pytest.mark.slow
def test_a_reports_header_has_no_local_path_and_its_commands_work_from_a_clone(tmp_path):
    made, clone = tmp_path / "made", tmp_path / "clone"
    made.mkdir()
    clone.mkdir()
    grid = ["-m", "update=input,kronecker", "data=iris_petal", "train.epochs=2",
            "tracking.plot=false", "tracking.log_model=false"]
    proc = run_example(shlex.join(["slnn-train", *grid]), made)
    assert proc.returncode == 0, proc.stderr[-3000:]
    end = END.match(proc.stdout.splitlines()[-1])
    folder = Path(end["report"])
    md, page = (folder / "report.md").read_text(), (folder / "report.html").read_text()
    for text in (md, page):
        assert str(tmp_path) not in text and str(Path.home()) + "/" not in text
    header = dict(re.findall(r"^- \*\*(.+?)\*\*: `(.*)`$", md, re.M))
    assert header["tracking URI"] == "sqlite:///mlflow.db"
    assert header["regenerate"] == shlex.join(["slnn-train", *grid])
    assert header["or, with its store"] == (f"slnn-report --parent-run {end['parent']} "
                                            "--tracking-uri sqlite:///mlflow.db")
    # where the sweep ran, with its store: the report again
    again = run_example(header["or, with its store"], made)
    assert again.returncode == 0, again.stderr
    assert f"wrote {folder / 'report.html'}" in again.stdout
    # in a clone (no store): the sweep again, which writes its report
    fresh = run_example(header["regenerate"], clone)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert list((clone / "reports").glob("sweep-*/report.md"))
