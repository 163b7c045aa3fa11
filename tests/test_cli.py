"""The command line as a new user meets it, run for real (``slnn-train``, ``slnn-report`` and
``mlflow ui`` as subprocesses, real SQLite stores in ``tmp_path``): typos are errors that name the
key meant, the help's examples work, each cell's log and overrides are easy to find, and only
slnn's own lines reach the terminal.

    python -m pytest tests/test_cli.py -m 'not slow'     # the typos of single runs, ~20 s
"""

from __future__ import annotations

import pytest

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
                      "['input', 'kronecker']"),
    (["+optim.lr=0.2"], "optim.lr already exists: set it without the + (+ adds a key; slnn has "
                        "no new keys)"),
]


@pytest.mark.parametrize("args, message", SINGLE_RUN_TYPOS + [
    pytest.param(*t, marks=pytest.mark.slow) for t in MORE_SINGLE_RUN_TYPOS])
def test_a_typo_in_a_single_run_is_one_line_naming_the_key_meant(slnn_train, tmp_path, args,
                                                                 message):
    assert_refused(slnn_train(args, cwd=tmp_path), tmp_path, message)


SWEEP_TYPOS = [
    # on the command line, swept or not, with + or without
    (["optim.lrr=0.1,0.2", "data=iris_petal"], "optim.lrr is not a config key: did you mean optim.lr?"),
    (["+optim.lrr=0.1", "seed=0,1"], "optim.lrr is not a config key: did you mean optim.lr?"),
    (["+experiment=guide_vs_corect"], "experiment=guide_vs_corect is not valid: did you mean "
                                      "guide_vs_correct? choose one of ['activation_lr', "
                                      "'guide_reproduction', 'guide_vs_correct']"),
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
