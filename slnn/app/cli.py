"""The ``slnn-train`` command: one run, or a sweep with ``-m`` (``python -m slnn`` is the same).

    slnn-train data=iris model.activation=tanh update=input optim.lr=0.1 seed=3
    slnn-train -m update=input,kronecker optim.lr=0.01,0.1,1.0 'seed=range(5)' data=iris_petal

A single run's config is composed and validated once, before Hydra starts (``precheck``: one line
and exit code 2 for a bad value), and ``slnn.app.run.run_one`` trains and records it. A sweep
goes through slnn's Hydra sweeper, whose jobs run ``slnn.sweep.worker.run_job``, never this."""

from __future__ import annotations

import os
import re
import sys

import hydra
import numpy as np
from omegaconf import DictConfig

from slnn.app.schema import CONF_PACKAGE, CONF_PATH, Config, register_configs, to_config
from slnn.core.errors import ConfigError, DataError

register_configs()
MULTIRUN_FLAGS = {"-m", "--multirun"}
# the single run's Config, validated by ``precheck`` before Hydra started: ``main`` runs it
_checked: list[Config] = []


@hydra.main(version_base="1.3", config_path=CONF_PATH, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from slnn.app.run import quiet_libraries, run_one
    from slnn.core.rulefile import RuleLoadError
    from slnn.tracking.store import TrackingError

    quiet_libraries()
    try:
        result = run_one(_checked.pop() if _checked else cfg)
    except (ConfigError, DataError, TrackingError, RuleLoadError) as e:
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
    """Hydra's multi-line composition errors as one line that names the problem, the nearest
    valid choice or key, and the choices."""
    from slnn.app.keys import unknown_key
    from slnn.core.errors import did_you_mean

    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    head = lines[0] if lines else type(e).__name__
    unquoted = re.search(r"([\w.+~/@-]+)=(\S*[^\x00-\x7f]\S*)", str(e))
    cause_text = str(e.__cause__ or e.__context__ or "")
    if unquoted and "token recognition error" in str(e) + cause_text:  # unquoted text is ASCII
        key, value = unquoted.groups()
        return (f"{key}={value}: Hydra reads an unquoted value as ASCII only; quote it: "
                f"'{key}=\"{value}\"'")
    missing = re.search(r"Could not find '(.+)/([^/']+)'", head)
    if "Available options in" in str(e) and missing:
        opts = [ln for ln in lines[2:] if "provider=" not in ln and not ln.startswith("Config search")]
        group, choice = missing.groups()
        return f"{group}={choice} is not valid:{did_you_mean(choice, opts)} choose one of {opts}"
    key = _unknown_key_of(e)
    if key and key.startswith("hydra.sweeper.search."):
        return (f"{key} is not a search setting: use space, trials, batch, tune_seeds, "
                "confirm_seeds, sampler, pruner, check_every, monitor or seed (docs/sweeps.md)")
    if key and key.startswith("hydra.sweeper.params."):
        axis = key.removeprefix("hydra.sweeper.params.")
        return (f"{key} is not a grid axis of this sweep: an axis whose name has a dot "
                f"({axis}.<key>) cannot be set through hydra.sweeper.params; give it as a plain "
                f"override instead, e.g. '{axis}.<key>=a,b'")
    if key:
        return unknown_key(key)
    added = re.search(r"An item is already at '(.+?)'", str(e))
    if added:
        return f"{added.group(1)} already exists: set it without the + (+ adds a key; slnn has no new keys)"
    cause = e.__cause__ or e.__context__
    detail = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
    more = " ".join(lines[1:2])
    # OmegaConf's unformatted message template ("Value '$VALUE' of type '$VALUE_TYPE' ...") says
    # nothing the head does not: never shown
    detail, more = ("" if "$" in x and "$" not in head else x for x in (detail, more))
    full_key = re.search(r"full_key: (\S+)", str(e))
    if full_key and more.startswith("full_key:"):  # OmegaConf's type error: the key first
        return f"{full_key.group(1)}: {'; '.join(dict.fromkeys(x for x in (head, detail) if x))}"
    return "; ".join(dict.fromkeys(x for x in (head, detail or more) if x))


def _unknown_key_of(e: BaseException) -> str | None:
    """The full key of an OmegaConf "Key '...' not in '...'" error in ``e``'s chain, if any (a
    study or preset that sets a key the schema does not have)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, (ConfigKeyError, ConfigAttributeError)) and getattr(e, "full_key", None):
            return str(e.full_key)
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def precheck(overrides: list[str], multirun: bool = False) -> Config | None:
    """Check every key, then compose (and for a single run validate) the config before Hydra
    starts, so a typo or a bad value fails with one line instead of Hydra's multi-line report
    or, for ``+key=``, a run that silently ignores the key. A sweep's swept values (``a,b``,
    ``range()``) are checked cell by cell by its sweeper; here only what Hydra composes first.
    A single run's validated ``Config``, which ``main`` then runs (it is not validated again)."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from slnn.app.keys import GroupChecker, check_keys, searchpath_of
    from slnn.core.rulefile import RuleLoadError

    try:
        with initialize_config_module(CONF_PACKAGE, version_base="1.3"):
            check_keys(overrides, GroupChecker(searchpath_of(overrides)))
            if multirun:
                parsed = OverridesParser.create().parse_overrides(list(overrides))
                for o in parsed:  # Hydra's own keys are never swept: a range is their value
                    if o.is_sweep_override() and o.key_or_group.startswith("hydra."):
                        text = o.input_line.split("=", 1)[1]
                        raise ConfigError(
                            f"{o.key_or_group} is Hydra's setting, which a sweep cannot sweep: "
                            f"to give it {text} as its value, quote it: "
                            f"'{o.key_or_group}=\"{text}\"'")
                compose("config", overrides=[o.input_line for o in parsed
                                             if not o.is_sweep_override()])
                return None
            else:
                from slnn.app.run import build_dataset, check_custom_rule

                c = to_config(compose("config", overrides=overrides))
                if c.update.fn:  # the user's rule is loaded and called before the run starts
                    check_custom_rule(c, build_dataset(c))
                return c
    except (ConfigError, DataError, RuleLoadError) as e:
        die(str(e))
    except Exception as e:  # hydra's composition and override-parsing errors
        die(explain_hydra_error(e))


# what slnn-train's flags cannot be combined with -m: Hydra shows, or runs, one config for these
ONE_CONFIG_FLAGS = {"--cfg": "--cfg", "-c": "--cfg", "--info": "--info", "-i": "--info",
                    "--resolve": "--resolve", "--shell-completion": "--shell-completion",
                    "-sc": "--shell-completion", "--help": "--help", "-h": "--help",
                    "--hydra-help": "--hydra-help"}


def refuse_internal_keys(args: list[str]) -> None:
    """``sweep.state`` and ``sweep.chunk`` are set by slnn's sweeper for its launcher jobs: a
    user who sets one gets one line (a job is run again by hand with
    ``python -m slnn.sweep.worker STATE CHUNK``)."""
    from slnn.app.keys import INTERNAL_KEYS, override_key

    for a in args:
        key = override_key(a)
        if key in INTERNAL_KEYS:
            die(f"{key} is set by slnn's sweeper for its jobs, not by users: leave it out "
                "(slnn-train -m <overrides> runs a sweep)")


def check_flags(args: list[str], flags: set[str]) -> None:
    """Flags Hydra would refuse with a traceback: one line instead."""
    if flags & MULTIRUN_FLAGS:
        other = sorted({ONE_CONFIG_FLAGS[f] for f in flags if f in ONE_CONFIG_FLAGS} - {"--help"})
        if other:
            die(f"{other[0]} shows one config and cannot be combined with -m: leave out -m to "
                f"see one cell's (slnn-train {other[0]}{' job' if other[0] == '--cfg' else ''} "
                "<that cell's overrides>)")


def die(msg: str) -> None:
    from slnn.tracking.faults import mask

    print(mask(f"slnn-train: error: {msg}"), file=sys.stderr)
    sys.exit(2)


def cli() -> None:
    """``slnn-train``'s command (the console script, ``slnn.app.entry``, calls it)."""
    from slnn.app import gcpause, shutdown, signals

    gcpause.pause()  # until MLflow is imported (quiet_libraries); entry paused it already

    signals.install()  # SIGTERM closes the open runs as KILLED, as Ctrl-C does
    shutdown.install()  # skip the seconds of garbage collection at the interpreter's exit
    args = sys.argv[1:]
    flags = {a for a in args if a.startswith("-")}
    if flags & {"--version", "-V"}:  # slnn's own version, and the two it is built on
        from slnn.tracking.console import version_line

        print(version_line("slnn-train"))
        sys.exit(0)
    refuse_internal_keys(args)
    check_flags(args, flags)
    if flags & {"--help", "-h", "-sc", "--shell-completion"}:
        from slnn.app.completion import hide_internal_keys_in_help, install_completion

        hide_internal_keys_in_help()
        install_completion()
    try:
        if not flags:  # a single run
            _checked.append(precheck(args))
        elif flags <= MULTIRUN_FLAGS:  # a sweep (other flags: --help, --cfg, ... are Hydra's)
            precheck([a for a in args if a not in MULTIRUN_FLAGS], multirun=True)
        main()
    except BrokenPipeError:  # slnn-train --help | head: quiet, as other tools are
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: one line, no traceback
        if not signals.reported:
            from slnn.tracking import liveness

            what = ("a run it had open is recorded as KILLED" if liveness.opened_any else
                    "no run had been opened yet")
            print(f"slnn-train: {signals.what(e)}; {what}", file=sys.stderr, flush=True)
        # an interrupt in the middle of Numba compiling leaves half-made llvmlite objects, whose
        # finalizers complain at exit ("Exception ignored in ..."): the line above is the story
        sys.unraisablehook = lambda unraisable: None
        sys.exit(signals.exit_code(e))


if __name__ == "__main__":
    cli()
