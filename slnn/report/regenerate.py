"""The report's header lines that say where it came from, with no path of the machine that made
it: the tracking URI as given relative to the working directory, a command that regenerates the
report from a clone (the study's own sweep command, then ``slnn-report``), and one that draws it
again from its data files (``slnn-report --from``)."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from slnn.report.frames import SweepData as Sweep

DEFAULT_URI = "sqlite:///mlflow.db"
# a study file's command line: "#   slnn-train -m +experiment=<name> ...   # a comment"
COMMAND = re.compile(r"^#\s+(slnn-train -m \+experiment=\S+[^#]*?)\s*(#.*)?$")


def display_uri(uri: str, cwd: str | Path | None = None) -> str:
    """``uri`` as a reader can use it: a local store under the working directory relative to it
    (``sqlite:///mlflow.db``); a local store elsewhere by its file name only (its absolute path
    belongs to the machine that made the report); a server's URI with any password masked
    (``slnn.tracking.faults.mask``: a report is uploaded to the server and read by others)."""
    from slnn.tracking.faults import mask

    cwd = Path(cwd or os.getcwd()).resolve()
    for scheme in ("sqlite:///", "file://"):
        if uri.startswith(scheme):
            path = Path(uri[len(scheme):])
            if not path.is_absolute():
                return uri
            try:
                return scheme + path.resolve().relative_to(cwd).as_posix()
            except ValueError:
                return scheme + path.name
    if uri.startswith("/"):
        path = Path(uri)
        try:
            return path.resolve().relative_to(cwd).as_posix()
        except ValueError:
            return path.name
    return mask(uri)


def study_command(study: str) -> str | None:
    """The first sweep command in the header comment of ``experiments/<study>.yaml`` (the
    package ``slnn.conf.experiment`` once installed)."""
    try:
        text = (resources.files("slnn.conf.experiment") / f"{study}.yaml").read_text()
    except (FileNotFoundError, OSError, ValueError):
        return None
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        m = COMMAND.match(line)
        if m:
            return m.group(1).strip()
    return None


def home(sweep: Sweep) -> str:
    """The folder the report's data were written to, relative to where it was made (sweep.json's
    ``folder``), or ``reports/<study>`` when that was not below it."""
    return getattr(sweep, "folder", None) or f"reports/{sweep.study}"


def regenerate_command(sweep: Sweep, grid: str = "") -> str:
    """For a named study: the command that ran its sweep (else the one its study file gives),
    then ``slnn-report`` into the report's folder (both from a clone's root); for an ad-hoc grid
    the command that ran it; else ``slnn-report`` on its parent run. ``grid``: the grid report a
    tuned study's report compares with (``slnn-report --grid``; an ad-hoc sweep, which writes
    its report itself, is given ``sweep.report_grid``)."""
    from slnn.tracking.console import portable
    from slnn.tracking.faults import mask

    uri = display_uri(sweep.uri)
    flag = "" if uri == DEFAULT_URI else f" --tracking-uri {uri}"
    cmd = study_command(sweep.study)
    if cmd and f"+experiment={sweep.study}" in (sweep.command or ""):
        cmd = mask(portable(sweep.command))  # as typed: its overrides made this report
    if cmd:
        return (f"{cmd} && slnn-report --experiment {sweep.experiment_name}{flag} "
                f"--out {home(sweep)}" + (f" --grid {grid}" if grid else ""))
    if sweep.command:  # an ad-hoc grid: the command that ran it (it writes its report again)
        cmd = mask(portable(sweep.command))  # a store written before slnn masked it
        return cmd + (f" sweep.report_grid={grid}" if grid and "sweep.report_grid=" not in cmd
                      else "")
    return rebuild_command(sweep) + (f" --grid {grid}" if grid else "")


def rerender_command(sweep: Sweep) -> str:
    """``slnn-report --from`` on the report's folder: the report again from its data files."""
    folder = getattr(sweep, "folder", None)
    return f"slnn-report --from {folder}" if folder else "slnn-report --from <this folder>"


def rebuild_command(sweep: Sweep) -> str:
    """``slnn-report`` on the sweep's parent run, where its store is."""
    return f"slnn-report --parent-run {sweep.parent_run_id} --tracking-uri {display_uri(sweep.uri)}"
