"""Reports are never stale: a report is a function of its data files and the code.

``test_every_committed_report_is_what_the_code_makes_of_its_data`` draws each committed report
(reports/*/) again from its committed data files and requires the committed report.md (the
``generated`` line aside) and the same summary.csv and tests.csv. It FAILS after any change to the
code that makes reports (statistics, words, figures' captions) until the committed reports are drawn
again: ``.venv/bin/python scripts/refresh_reports`` (from the data; ``--adopt`` first for a folder
made before reports kept their data as files), or the study's sweep and ``slnn-report --out``.

The other tests: ``slnn-report --from`` opens no store, writes into ``--out`` or back into the
folder, and a folder lacking a data file is one line with exit code 2; the README's figures are
the committed reports' own; a named study's sweep writes its report into its own folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from slnn.report.datafiles import IDENTITY, REQUIRED, RUNS, SWEEP, TIDY

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ("guide_vs_correct", "guide_reproduction", "mistakes", "tune_then_confirm",
             "tune_then_confirm_mistakes")
SLNN_REPORT = Path(sys.executable).with_name("slnn-report")
SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")
GENERATED = re.compile(r"^- \*\*generated\*\*: .*$", re.M)
REFRESH = ("the committed report is not what this code makes of its data: draw it again with "
           ".venv/bin/python scripts/refresh_reports (and commit reports/), or revert the change "
           "to the code")


def without_generated(text: str) -> str:
    assert len(GENERATED.findall(text)) == 1, "one generated line, which two renders may differ in"
    return GENERATED.sub("", text)


def test_committed_reports_are_all_checked():
    assert {p.parent.name for p in (ROOT / "reports").glob("*/report.md")} == set(COMMITTED)


# the small study (83 runs, 3 s) keeps the check in the fast tier; the big ones (8-10 s each,
# half the fast tier's wall time on 2 cores) run in the full suite, which CI runs
@pytest.mark.parametrize("study", [pytest.param(s, marks=() if s == "guide_reproduction"
                                                else pytest.mark.slow) for s in COMMITTED])
def test_every_committed_report_is_what_the_code_makes_of_its_data(study, tmp_path):
    """Fails until the committed reports are drawn again after a change to the report's code
    (see the module's docstring): that is its purpose."""
    from slnn.report import report_from

    src = ROOT / "reports" / study
    missing = [f for f in REQUIRED if not (src / f).exists()]
    assert not missing, (f"reports/{study} has no {', '.join(missing)}: "
                         "run .venv/bin/python scripts/refresh_reports --adopt")
    before = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    out = report_from(src, tmp_path / study)
    # the committed folder is read, never written
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == before
    got = (out / "report.md").read_text()
    assert without_generated(got) == without_generated(before["report.md"].decode()), REFRESH
    for name in ("summary.csv", "tests.csv"):
        assert (out / name).read_bytes() == before[name], f"{name}: {REFRESH}"
    inputs = json.loads(before[SWEEP])["files"]
    for name in inputs:  # the data files are copied as they are
        assert (out / name).read_bytes() == before[name], name
    # every figure the report links is in the folder, and is the committed folder's too
    for png in re.findall(r"\]\(([^)]+\.png)\)", got):
        assert (out / png).exists() and png in before, png


# --- slnn-report --from --------------------------------------------------------------------

@pytest.fixture
def data_folder(tmp_path) -> Path:
    """A report's data files, from the committed guide_reproduction's runs and histories. Made
    per test (a copy and a small CSV, well under a second), so that the module is no single unit
    for pytest-xdist (conftest.py) and the committed reports' renders spread over the workers."""
    folder = tmp_path / "from" / "data"
    folder.mkdir(parents=True)
    src = ROOT / "reports" / "guide_reproduction"
    for name in (RUNS, TIDY):
        shutil.copyfile(src / name, folder / name)
    runs = pd.read_csv(src / RUNS)
    kron = runs[(runs["update"] == "kronecker") & (runs["outcome"] != "shape_mismatch")]
    pd.DataFrame({"run_id": kron["run_id"].iloc[:2], "data": "iris_petal",
                  "activation": "guide_tanh", "lr": 0.1, "seed": [0, 1], "samples": 75,
                  "cos_mean": [0.868, 0.808], "max_abs_diff": [3.3e-16, 4.4e-16]}
                 ).to_csv(folder / IDENTITY, index=False)
    (folder / SWEEP).write_text(json.dumps({
        "format": 1, "parent_run_id": "eead7f1b14d948a38f3df09723a778a8", "experiment_id": "1",
        "experiment_name": "slnn", "tracking_uri": "sqlite:///mlflow.db",
        "study": "guide_reproduction", "parent_status": "FINISHED", "n_cells": 80,
        "n_children": 83, "command": "", "notes": ["a note kept from the store."],
        "folder": "reports/guide_reproduction", "target_error": 0.1,
        "files": [*REQUIRED, IDENTITY]}))
    return folder


def no_store_env() -> dict:
    """An environment whose tracking URI is a server nobody runs: any store call would fail."""
    return {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}


def test_from_draws_the_report_without_a_store(data_folder, tmp_path, monkeypatch):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    out = tmp_path / "out"
    proc = subprocess.run([str(SLNN_REPORT), "--from", str(data_folder), "--out", str(out)],
                          cwd=cwd, env=no_store_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out.resolve() / 'report.html'}" in proc.stdout
    assert list(cwd.iterdir()) == []  # no mlflow.db, no mlruns/: nothing was opened here
    md = (out / "report.md").read_text()
    header = dict(re.findall(r"^- \*\*(.+?)\*\*: `?(.*?)`?$", md, re.M))
    # the header's facts are sweep.json's, not this machine's or this folder's
    assert header["sweep parent run"] == "eead7f1b14d948a38f3df09723a778a8"
    assert header["tracking URI"] == "sqlite:///mlflow.db"
    assert header["runs"].endswith("83 child runs recorded in all")
    assert header["re-render from its data"] == "slnn-report --from reports/guide_reproduction"
    assert header["regenerate"].endswith("--out reports/guide_reproduction")
    assert "a note kept from the store." in md
    # the identity's rounding residue is not printed (it differs by machine); the file has it
    assert "Largest absolute difference over 150 samples: < 1e-12 (rounding)." in md
    assert "e-16" not in md
    for name in (*REQUIRED, IDENTITY):
        assert (out / name).read_bytes() == (data_folder / name).read_bytes(), name
    # written back into the folder itself without --out: the same report. In this process (the
    # console script and its store-free environment were the first render's): the same main(),
    # with the same unreachable tracking URI, so any store call would still fail
    from slnn.app.report_cli import main

    own = tmp_path / "own"
    shutil.copytree(data_folder, own)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", no_store_env()["MLFLOW_TRACKING_URI"])
    monkeypatch.chdir(cwd)
    assert main(["--from", str(own)]) == 0
    assert without_generated((own / "report.md").read_text()) == without_generated(md)
    for name in ("summary.csv", "tests.csv"):
        assert (own / name).read_bytes() == (out / name).read_bytes(), name
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("name", [SWEEP, RUNS, TIDY, IDENTITY])
def test_a_from_folder_lacking_a_file_is_one_line_and_exit_2(data_folder, tmp_path, name, capsys):
    from slnn.app.report_cli import main

    folder = tmp_path / "data"
    shutil.copytree(data_folder, folder)
    (folder / name).unlink()
    assert main(["--from", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"no {name} there" in err, err
    assert not (folder / "report.md").exists()


def test_from_refuses_store_options_and_a_missing_folder(tmp_path, capsys):
    from slnn.app.report_cli import main

    assert main(["--from", str(tmp_path), "--tracking-uri", "sqlite:///x.db"]) == 2
    assert "drop --tracking-uri" in capsys.readouterr().err
    assert main(["--from", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such folder" in err
    assert not (tmp_path / "x.db").exists()


def test_the_default_folder_is_never_a_committed_reports(tmp_path):
    from slnn.report import default_out

    assert default_out("guide_vs_correct", "7c99f7a91e134b0d") == Path(
        "reports/guide_vs_correct-7c99f7a9")
    assert default_out("sweep", "abcdef0123456789") == Path("reports/sweep-abcdef01")


# --- the README quotes the committed reports ---------------------------------------------------

def _numbers(text: str) -> list[str]:
    """Figures as the README writes them: 0.099, 4.4e-16, 1e-12, 8.8e-05, '27 of the 29',
    '216 tests', '800 runs'."""
    return re.findall(r"(?<![\w.])(?:\d+\.\d+(?:e-\d+)?|\d+e-\d+|\d+ of (?:the |its |all )?\d+"
                      r"|\d+ (?:runs|tests|seeds)\b)(?![\w.]*\d)", text)


def test_the_readme_says_what_the_committed_reports_say():
    """Every figure the README's Reports section gives for a committed report is in that
    committed report (as a whole number, not part of a longer one): the README quotes the
    files in the repository, not a report regenerated on this machine."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("Committed results, regenerated")[1].split("\n## ")[0]
    for study in COMMITTED:
        bullet = section.split(f"[`reports/{study}/report.md`]")[1].split("\n- [")[0]
        report = (ROOT / "reports" / study / "report.md").read_text()
        found = set(_numbers(report)) | set(re.findall(r"(?<![\w.])\d+(?![\w.]*\d)", report))
        numbers = _numbers(bullet)
        assert len(numbers) >= 3, (study, bullet)
        missing = [n for n in numbers if n not in found]
        assert not missing, (f"the README quotes {missing} for reports/{study}, which its "
                             "committed report.md does not say: update the README from it")


# --- a named study's sweep never writes over the committed reports ---------------------------

@pytest.mark.slow
def test_a_named_study_writes_its_report_into_its_sweep_folder(tmp_path):
    """The README's first command in small: the sweep's report goes into the sweep's own
    folder, and nothing under reports/ is made (a clone's tracked reports stay as they are)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [str(SLNN_TRAIN), "-m", "+experiment=guide_reproduction", "seed=0", "optim.lr=0.1",
         "train.epochs=2", "tracking.plot=false", "tracking.log_model=false",
         "hydra.sweep.dir=multirun/here"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r"; report: (\S+) \(rebuild", proc.stdout)
    assert m, proc.stdout[-2000:]
    assert Path(m.group(1)) == (tmp_path / "multirun" / "here" / "report").resolve()
    assert not (tmp_path / "reports").exists()
    md = (Path(m.group(1)) / "report.md").read_text()
    header = dict(re.findall(r"^- \*\*(.+?)\*\*: `?(.*?)`?$", md, re.M))
    assert header["re-render from its data"] == "slnn-report --from multirun/here/report"
    assert header["regenerate"].endswith("--out multirun/here/report")
    # and from its data, with no store, the same report
    again = subprocess.run([str(SLNN_REPORT), "--from", "multirun/here/report", "--out", "again"],
                           cwd=tmp_path, env=no_store_env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert without_generated((tmp_path / "again" / "report.md").read_text()) == \
        without_generated(md)


@pytest.mark.slow  # three renders in a fresh process: 11 s
def test_figures_drawn_beside_the_analysis_are_the_ones_drawn_after_it(tmp_path):
    """The runs' own figures are drawn in a forked process while the analysis runs
    (``figures.Drawing``): the report is byte for byte the one drawn in one process, and a
    drawing process that dies leaves the parent to draw them, with the same result. In a fresh
    process, as ``slnn-report`` is (this one may have threads, where nothing is forked)."""
    script = f"""
import os, threading
from slnn.report import figures, report_from
src, out = {str(ROOT / "reports" / "guide_reproduction")!r}, {str(tmp_path)!r}
forked, real_init = [], figures.Drawing.__init__
def spy(self, sweep, folder):
    real_init(self, sweep, folder)
    forked.append(self.proc is not None)
figures.Drawing.__init__ = spy
report_from(src, out + "/forked")
active = threading.active_count
threading.active_count = lambda: 2  # another thread alive: no fork, drawn here
report_from(src, out + "/here")
threading.active_count = active
parent, real = os.getpid(), figures._sweep_figures
def dies_in_the_child(sweep, folder, *slots):
    if os.getpid() != parent:
        os._exit(3)
    return real(sweep, folder, *slots)
figures._sweep_figures = dies_in_the_child
report_from(src, out + "/died")
print(forked)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=no_store_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[True, False, True]"

    def files(folder):
        md = GENERATED.sub("", (folder / "report.md").read_text())
        return md, {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}

    here = files(tmp_path / "here")
    assert len(here[1]) >= 5
    assert files(tmp_path / "forked") == here == files(tmp_path / "died")
