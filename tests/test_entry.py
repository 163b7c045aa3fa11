"""An interrupt while a command is still importing its libraries (the first second or two) is one
line and exit code 130 (Ctrl-C) or 143 (SIGTERM), as it is later (``slnn.app.entry``). The signal
is sent by the process to itself at the moment it starts importing a given library: an event,
not a delay."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import builtins, os, signal, sys
real, fired = builtins.__import__, []
def spy(name, *args, **kwargs):
    if name.split(".")[0] == {module!r} and not fired:
        fired.append(name)
        os.kill(os.getpid(), signal.{sig})
    return real(name, *args, **kwargs)
builtins.__import__ = spy
sys.argv = [{prog!r}, *{args!r}]
from slnn.app import entry
entry.{entry}()
"""


@pytest.mark.parametrize("prog, entry, args, module, sig, code", [
    ("slnn-train", "slnn_train", ["data=iris_petal"], "hydra", "SIGINT", 130),
    ("slnn-train", "slnn_train", ["data=iris_petal"], "omegaconf", "SIGTERM", 143),
    ("slnn-report", "slnn_report", ["--from", "nowhere"], "pandas", "SIGTERM", 143),
    ("slnn-check", "slnn_check", ["--builtin", "input"], "numpy", "SIGINT", 130),
])
def test_an_interrupt_while_importing_is_one_line(prog, entry, args, module, sig, code, tmp_path):
    script = SCRIPT.format(module=module, sig=sig, prog=prog, args=args, entry=entry)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    what = "interrupted (Ctrl-C)" if sig == "SIGINT" else "terminated (SIGTERM)"
    assert done.returncode == code, done.stderr[-3000:]
    assert done.stderr == f"{prog}: {what} while starting; nothing was done\n"
    assert list(tmp_path.iterdir()) == []  # nothing was made
