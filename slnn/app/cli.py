"""The ``slnn-train`` command: one run, or a sweep with ``-m``.

    slnn-train data=iris model.activation=tanh update=input optim.lr=0.1 seed=3
    slnn-train -m update=input,kronecker optim.lr=0.01,0.1,1.0 'seed=range(5)' data=iris_petal
    slnn-train --help                    # the config groups, their choices and every key
    python -m slnn ...                   # the same

A single run's overrides are composed and validated before Hydra starts (one line and exit code
2 for a bad value); ``slnn.app.run.run_one`` does the rest. A sweep goes through slnn's Hydra
sweeper (``hydra_plugins.slnn_sweeper``, logic in ``slnn.sweep``), whose launcher jobs come back
here as chunks of cells for ``slnn.sweep.worker``.
"""

from __future__ import annotations

import re
import sys

import hydra
import numpy as np
from omegaconf import DictConfig

from slnn.app.schema import CONF_DIR, register_configs, to_config
from slnn.core.errors import ConfigError, DataError

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from slnn.app.run import quiet_libraries, run_one
    from slnn.tracking.store import TrackingError

    quiet_libraries()
    if cfg.sweep.chunk is not None:  # a job of the slnn sweeper: a chunk of cells
        from slnn.sweep.worker import run_chunk

        return run_chunk(cfg.sweep.state, cfg.sweep.chunk)
    try:
        result = run_one(cfg)
    except (ConfigError, DataError, TrackingError) as e:
        die(str(e))
    except Exception as e:  # a store that failed mid-run (disk full, gone, ...): one line
        from slnn.tracking.faults import classify, describe
        from slnn.tracking.store import resolve_uri

        uri = resolve_uri(cfg.tracking.uri)
        if classify(uri, e) is None:
            raise
        die(describe(uri, e, "recording the run"))
    v = result.final["val_loss"]
    return None if np.isnan(v) else float(v)


def explain_hydra_error(e: BaseException) -> str:
    """Hydra's multi-line composition errors as one line that names the problem and the choices."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    head = lines[0] if lines else type(e).__name__
    unquoted = re.search(r"([\w.+~/@-]+)=(\S*[^\x00-\x7f]\S*)", str(e))
    cause_text = str(e.__cause__ or e.__context__ or "")
    if unquoted and "token recognition error" in str(e) + cause_text:  # unquoted text is ASCII
        key, value = unquoted.groups()
        return (f"{key}={value}: Hydra reads an unquoted value as ASCII only; quote it: "
                f"'{key}=\"{value}\"'")
    if "Available options in" in str(e):
        opts = [ln for ln in lines[2:] if "provider=" not in ln and not ln.startswith("Config search")]
        return f"{head.split(': ', 1)[-1]}: choose one of {opts}"
    cause = e.__cause__ or e.__context__
    detail = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
    more = " ".join(lines[1:2])
    return "; ".join(x for x in (head, detail or more) if x)


def precheck(overrides: list[str]) -> None:
    """Compose and validate a single run's config before Hydra starts the job, so a bad override
    fails with one line instead of Hydra's multi-line report."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            to_config(compose("config", overrides=overrides))
    except ConfigError as e:
        die(str(e))
    except Exception as e:  # hydra's composition and override-parsing errors
        die(explain_hydra_error(e))


def precheck_sweep(args: list[str]) -> None:
    """A sweep's overrides must parse and its config groups (``+experiment=``, ``data=``, ...)
    exist: one line instead of Hydra's multi-line report. Each cell is validated by the sweeper."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        plain = [o.input_line for o in parsed
                 if not o.is_sweep_override() and not o.key_or_group.startswith("hydra")]
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            compose("config", overrides=plain)
    except Exception as e:  # hydra's composition and override-parsing errors
        die(explain_hydra_error(e))


def die(msg: str) -> None:
    from slnn.tracking.faults import mask

    print(mask(f"slnn-train: error: {msg}"), file=sys.stderr)
    sys.exit(2)


def cli() -> None:
    """The ``slnn-train`` console script."""
    from slnn.app import signals

    signals.install()  # SIGTERM closes the open runs as KILLED, as Ctrl-C does
    args = sys.argv[1:]
    try:
        if not any(a.startswith("-") for a in args):  # a single run (flags: multirun, help, ...)
            precheck(args)
        elif "-m" in args or "--multirun" in args:
            precheck_sweep(args)
        main()
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: one line, no traceback
        if not signals.reported:
            print(f"slnn-train: {signals.what(e)}; a run it had open is recorded as KILLED",
                  file=sys.stderr, flush=True)
        sys.exit(signals.exit_code(e))


if __name__ == "__main__":
    cli()
