"""What reaches the terminal: MLflow kept to its warnings (no progress bars, no "View run" lines),
and the commands slnn prints for users to copy (browse a store, rebuild a sweep's report),
exactly as they can be typed here, with any credentials in the store's URI masked
(``slnn.tracking.faults.mask``).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

# MLflow documents this switch (mlflow.environment_variables): with tqdm installed, as in most ML
# environments, every artifact upload or download otherwise draws "Downloading artifacts" bars
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
# the UI's background job queue (7 consumer processes) serves features slnn never uses
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
# MLflow documents this switch too: on an http:// store, ending a run prints "View run <name> at:
# <tracking URI>/#/..." to stdout, password and all; slnn prints its own line, masked
RUN_URL_ENV = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def say(text: str, stream=None) -> None:
    """``text`` and its newline as one write to ``stream`` (stdout unless given), then flushed.

    ``print`` writes the text and the newline separately. joblib's workers run with unbuffered
    standard streams, so each of those is its own write to the pipe they share with the
    launcher, and two workers ending cells together printed ``[48/80] ... left[49/80] ... left``
    and then two newlines. One write of a line shorter than the pipe's buffer (4096 bytes on
    Linux) is never split. No stream (``sys.stdout`` is None under pythonw): nothing, as
    ``print`` does."""
    stream = sys.stdout if stream is None else stream
    if stream is None:
        return
    stream.write(text + "\n")
    stream.flush()


def version_line(program_name: str) -> str:
    """``slnn-train 0.1.0 (slnn 0.1.0, Hydra 1.3.8, MLflow 3.1.0, Python 3.11.9)``: what
    ``--version`` prints, read from the installed packages' metadata (nothing is imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return (f"{program_name} {of('slnn')} (slnn {of('slnn')}, Hydra {of('hydra-core')}, "
            f"MLflow {of('mlflow')}, Python {platform.python_version()})")


def suppress_run_urls() -> None:
    """MLflow's own "View run ... at <URI>" lines off in this process and the ones it starts:
    they would print a password in the URI (slnn's own lines say where a run is, masked). Set
    whatever the environment said: a password must not depend on a variable being unset."""
    os.environ[RUN_URL_ENV] = "true"


def quiet_mlflow(level: int = logging.WARNING) -> None:
    """No artifact progress bars (unless the user asked for them in the environment), no "View
    run" lines (``suppress_run_urls``), and no INFO lines from MLflow or Alembic (table creation,
    signature checks)."""
    os.environ.setdefault(PROGRESS_BAR_ENV, "false")
    suppress_run_urls()
    import mlflow  # noqa: F401 - it sets its logger's level when imported: import it first

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(level)


def program(name: str) -> str:
    """How to type this environment's console script ``name`` here: the bare name when it is the
    one on ``PATH``, else its path (relative to the working directory when it is below it), so
    a printed command works whether or not the virtual environment is activated."""
    mine = Path(sys.executable).with_name(name)
    if not mine.exists():
        return name
    found = shutil.which(name)
    if found and Path(found).resolve() == mine.resolve():
        return name
    return shlex.quote(relative(mine))


def relative(path: str | Path) -> str:
    """``path`` relative to the working directory when it is below it (``multirun/...``), else
    absolute."""
    p = Path(path).absolute()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def browse_command(uri: str) -> str:
    """The command that opens the MLflow UI on ``uri``: for a local store, a UI for one person
    on a laptop (one web worker, no job queue: 2 processes, ~0.5 GB, against 15 and ~2.5 GB for
    ``mlflow ui`` as it comes); for a tracking server, its address (credentials masked)."""
    from slnn.tracking.faults import mask

    if uri.startswith(("http://", "https://")):
        return mask(uri)
    return (f"{JOB_EXECUTION_ENV}=false {program('mlflow')} ui --backend-store-uri "
            f"{shlex.quote(uri)} --workers 1")


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """Where a run is in the UI: on the tracking server, or on ``browse_command``'s (which serves
    on MLflow's default address). Without the server's credentials: a browser asks for them."""
    from slnn.tracking.faults import strip_credentials

    base = (strip_credentials(uri).rstrip("/") if uri.startswith(("http://", "https://"))
            else "http://127.0.0.1:5000")
    # the UI's model-training mode: a run page opened in its GenAI mode lists no logged models
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def sweep_url(uri: str, experiment_id: str, parent_run_id: str) -> str:
    """Where a sweep's runs are in the UI: its experiment's runs, searched for the sweep's
    children, in the UI's model-training mode (``run_url``'s server)."""
    from urllib.parse import quote

    base = run_url(uri, experiment_id, parent_run_id).split("/#/")[0]
    search = quote(f"tags.mlflow.parentRunId = '{parent_run_id}'", safe="")
    return (f"{base}/#/experiments/{experiment_id}/runs?searchFilter={search}"
            "&workflowType=machine_learning")


def report_command(uri: str, parent_run_id: str) -> str:
    """The command that rebuilds the report of the sweep under ``parent_run_id`` (a password in
    ``uri`` masked: the user types it in)."""
    from slnn.tracking.faults import mask

    return (f"{program('slnn-report')} --parent-run {parent_run_id} --tracking-uri "
            f"{shlex.quote(mask(uri))}")


def portable(text: str, base: str | Path | None = None) -> str:
    """``text`` without this machine's paths: below ``base`` (the working directory) relative to
    it, below the home folder as ``~/``. For what is written to be read elsewhere (a committed
    report's header): ``sqlite:////home/me/slnn/mlflow.db`` -> ``sqlite:///mlflow.db``."""
    base = str(Path(base or Path.cwd()).absolute())
    if base != "/":
        text = text.replace(f"file://{base}/", "file:./").replace(f"{base}/", "")
        text = re.sub(rf"{re.escape(base)}(?![\w.-])", ".", text)
    home = str(Path.home())
    if home != "/":
        text = text.replace(f"{home}/", "~/")
    return text
