"""No code runs because a store or a cache names it: the report runs a user's rule only from a
file given on its own command line whose sha256 the runs recorded; a sweep's job runs the rule
file only as the sweep validated it; a cached kernel module runs only as slnn generates it.

Every planted file here writes a marker file when imported: the marker's absence is the proof.

    python -m pytest tests/test_store_code.py -m 'not slow'     # in-process: the loader's checks
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
RULES = textwrap.dedent("""\
    import numpy as np

    def my_step(x, net, z, t, delta):   # the gradient
        return x.T @ delta / x.shape[0]
    """)


def planted(marker: Path) -> str:
    """A rule file that leaves ``marker`` behind when it is imported."""
    return RULES + f"\nopen({str(marker)!r}, 'w').write('imported')\n"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(cmd: list, cwd: Path, env: dict | None = None, timeout: float = 300):
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


# --- in process: loading by digest -----------------------------------------------------------

def test_a_rule_file_runs_only_with_the_expected_digest(tmp_path):
    from slnn.core.rulefile import RuleLoadError, load_rule, pinned

    marker = tmp_path / "marker"
    path = tmp_path / "rule.py"
    path.write_text(planted(marker))
    good = sha(path)
    with pytest.raises(RuleLoadError) as e:
        load_rule(f"{path}:my_step", expect="0" * 64)
    assert str(e.value) == (f"{path}:my_step: the file is not the one recorded (sha256 "
                            f"{good[:12]} now, 000000000000 recorded): not run; run the command "
                            "again to check and record the file as it is now")
    assert not marker.exists()
    with pinned({str(path): "f" * 64}), pytest.raises(RuleLoadError):
        load_rule(f"{path}:my_step")  # a pin is checked as an explicit digest is
    assert not marker.exists()
    assert load_rule(f"{path}:my_step", expect=good).digest == good  # after the pin: as before
    assert marker.read_text() == "imported"


# --- real commands ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def custom_sweep(tmp_path_factory):
    """A 2-cell sweep of a user's rule into a SQLite store: (folder, uri, parent run id)."""
    folder = tmp_path_factory.mktemp("store_code")
    (folder / "my_rules.py").write_text(RULES)
    uri = f"sqlite:///{folder}/mlflow.db"
    proc = run([BIN / "slnn-train", "-m", "update=custom", "update.fn=my_rules.py:my_step",
                "seed=0,1", "data=iris_petal", "train.epochs=3", "sweep.report=false",
                "tracking.plot=false", "tracking.log_model=false", f"tracking.uri={uri}",
                "hydra.sweep.dir=m"], folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    [parent] = client.search_runs(["1"], "tags.`slnn.sweep` = 'true'")
    return folder, uri, parent.info.run_id


def set_rule_tags(uri: str, fn: str, digest: str) -> None:
    """What anyone who can write to the store can do: point the runs' rule tags elsewhere."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs(["1"], "tags.`slnn.update` = 'custom'")
    assert len(runs) == 2
    for r in runs:
        client.set_tag(r.info.run_id, "slnn.rule_fn", fn)
        client.set_tag(r.info.run_id, "slnn.rule_digest", digest)


def report(folder: Path, uri: str, parent: str, out: str, *extra) -> str:
    proc = run([BIN / "slnn-report", "--tracking-uri", uri, "--parent-run", parent, "--out",
                folder / out, *extra], folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (folder / out / "report.md").read_text()


def section(text: str) -> str:
    return text.split("## Rules and their checker verdicts")[1].split("\n## ")[0]


@pytest.mark.slow
def test_a_report_never_runs_a_file_the_store_names(custom_sweep):
    folder, uri, parent = custom_sweep
    rules = folder / "my_rules.py"
    marker = folder / "planted-ran"
    bad = folder / "planted.py"
    bad.write_text(planted(marker))
    # the store now names the planted file, with the planted file's own digest
    set_rule_tags(uri, f"{bad}:my_step", sha(bad))
    try:
        text = section(report(folder, uri, parent, "r1"))
        assert not marker.exists()
        assert ("`custom` (planted.py:my_step): a report runs a rule only from a file named on its "
                "own command line: pass --rule-file <your planted.py> (its sha256 must be "
                f"{sha(bad)[:12]}..., as its runs recorded) to check it.") in text
        # the user's own file, given: not the digest the store claims, so it is not run either
        text = section(report(folder, uri, parent, "r2", "--rule-file", rules))
        assert not marker.exists()
        assert (f"no file given with --rule-file has the sha256 its runs recorded "
                f"({sha(bad)[:12]}...; given: my_rules.py {sha(rules)[:12]}): not checked") in text
        assert "| custom | sigmoid | not checked |" in text.replace("  ", " ")
    finally:
        set_rule_tags(uri, f"{rules.resolve()}:my_step", sha(rules))
    # the true tags and the true file, given: checked (the rule is the gradient)
    text = section(report(folder, uri, parent, "r3", "--rule-file", rules))
    assert "| iris_petal | custom | sigmoid | gradient |" in text


@pytest.mark.slow
def test_an_edited_rule_file_runs_neither_in_a_report_nor_in_a_sweeps_job(custom_sweep):
    folder, uri, parent = custom_sweep
    rules = folder / "my_rules.py"
    recorded = sha(rules)
    marker = folder / "edited-ran"
    rules.write_text(planted(marker))
    try:
        text = section(report(folder, uri, parent, "r4", "--rule-file", rules))
        assert not marker.exists()
        assert (f"no file given with --rule-file has the sha256 its runs recorded "
                f"({recorded[:12]}...; given: my_rules.py {sha(rules)[:12]}): not checked") in text
        # the sweep's job, run again as its launcher runs it: the file is not the one the sweep
        # validated and recorded, so each cell fails before any of it runs
        state = folder / "m" / "slnn_sweep.json"
        proc = run([BIN / "python", "-m", "slnn.sweep.worker", state, "0"], folder)
        assert not marker.exists()
        # each cell it took failed, with the reason in the ledger the launcher reads (and
        # prints, #24); the sweep's launcher is gone, so the job may stop after its first cell
        ledger = (folder / "m" / "progress.jsonl").read_text().splitlines()
        mine = [json.loads(ln) for ln in ledger][2:]  # after the sweep's own two cells
        assert 1 <= len(mine) <= 2, (proc.stderr, mine)
        assert all(e["outcome"] == "failed" and f"the file is not the one recorded (sha256 "
                   f"{sha(rules)[:12]} now, {recorded[:12]} recorded): not run" in e["error"]
                   for e in mine), mine
    finally:
        rules.write_text(RULES)


@pytest.mark.slow
def test_a_tampered_kernel_module_is_written_again_not_imported(tmp_path):
    cache = tmp_path / "cache"
    args = [BIN / "slnn-train", "data=iris_petal", "train.epochs=2", "model.activation=tanh",
            "train.backend=compiled", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            "tracking.plot=false", "tracking.log_model=false", "hydra.output_subdir=null",
            "hydra.run.dir=."]
    first = run(args, tmp_path, env={"SLNN_CACHE_DIR": str(cache)})
    assert first.returncode == 0, first.stderr[-3000:]
    [module] = (cache / "kernels").glob("slnn_kernel_tanh_input_*.py")
    generated = module.read_bytes()
    marker = tmp_path / "kernel-ran"
    module.write_bytes(generated + f"\nopen({str(marker)!r}, 'w').write('x')\n".encode())
    second = run(args, tmp_path, env={"SLNN_CACHE_DIR": str(cache)})
    assert second.returncode == 0, second.stderr[-3000:]
    assert not marker.exists()
    assert module.read_bytes() == generated
    assert (f"slnn: the cached kernel {module} is not the text slnn generates for it (edited or "
            "damaged): written again") in second.stderr.splitlines()
    # the same numbers as the first run, from the module as generated
    assert first.stdout.split("(run ")[0] == second.stdout.split("(run ")[0]
