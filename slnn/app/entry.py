"""The console scripts (and ``python -m slnn``): each makes SIGTERM act as Ctrl-C before its
command's libraries are imported, so that an interrupt in those seconds is one line (exit 130
or 143), as it is later; ``slnn-train`` also pauses the collector for them (``gcpause``)."""

from __future__ import annotations

import importlib
import sys


def _start(prog: str, load):
    """``load()`` (the command's imports) with interrupts handled; an interrupt ends the process
    with one line."""
    from slnn.app import signals

    signals.install()
    try:
        return load()
    except KeyboardInterrupt as e:
        _interrupted(prog, e)


def _interrupted(prog: str, e: KeyboardInterrupt):
    from slnn.app import signals

    print(f"{prog}: {signals.what(e)} while starting; nothing was done", file=sys.stderr,
          flush=True)
    sys.exit(signals.exit_code(e))


def _load_train():
    from slnn.app import gcpause

    gcpause.pause()
    from slnn.app.cli import cli

    return cli


def slnn_train() -> None:
    _start("slnn-train", _load_train)()  # the command handles the interrupts after its imports


def _run(prog: str, module: str) -> None:
    """``module``'s ``main()`` as the command, its exit code the process's."""
    main = _start(prog, lambda: importlib.import_module(module).main)
    try:
        code = main()
    except KeyboardInterrupt as e:  # in the command's own imports, before it handles them
        _interrupted(prog, e)
    sys.exit(code)


def slnn_report() -> None:
    _run("slnn-report", "slnn.app.report_cli")


def slnn_check() -> None:
    _run("slnn-check", "slnn.app.check_cli")
