"""The ``slnn-report`` console script: write a sweep's report from what is in MLflow, or draw a
report again from the data files in its folder, with no store.

    slnn-report --experiment slnn                       # the newest sweep in experiment slnn
    slnn-report --parent-run <id, its start, or name> --out reports/   # one sweep, into reports/
    slnn-report --tracking-uri http://127.0.0.1:5000 --target-error 0.05
    slnn-report --from reports/guide_vs_correct         # again from its data files, in place
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# the id and the name the examples below show; tests/test_cli.py runs every example with a real
# sweep's in their place
EXAMPLE_ID = "3bda841f9358"
EXAMPLE_NAME = "guide_vs_correct-20260101-120000"
EXAMPLE_SERVER = "http://127.0.0.1:5000"

EPILOG = f"""\
examples:
  slnn-report                                   the newest sweep of experiment slnn in ./mlflow.db
  slnn-report --experiment slnn                 the same, naming the experiment
  slnn-report --parent-run {EXAMPLE_ID} --out reports/mine
                                                one sweep, by its parent run id or any unique
                                                start of it (the sweep prints the id when it
                                                starts and ends), into reports/mine
  slnn-report --parent-run {EXAMPLE_NAME}
                                                the same by the parent run's name (the sweep's
                                                first and last lines call it so)
  slnn-report --tracking-uri {EXAMPLE_SERVER} --attach
                                                from an MLflow server, and log the report to the
                                                sweep's parent run under report/
  slnn-report --parent-run {EXAMPLE_ID} --register
                                                also register the sweep's best run as
                                                slnn-<study>@best in the Model Registry
  slnn-report --from reports/guide_vs_correct   the report again from the data files in that
                                                folder (no store is opened), written back there

writes the data files (sweep.json, runs.csv, tidy.parquet, and identity.csv or rulecheck.json
where the report has those sections), then report.md, report.html (self-contained), the figures
(PNG), summary.csv and tests.csv drawn from them, into the output folder: by default
reports/<study>-<parent run id's first 8 characters>/, a new folder per sweep, so the committed
reports/<study>/ are written only when --out names them. Bad input (no such experiment or run, a
sweep without runs, an id start that matches several sweeps, a --from folder without a data file)
gives one line on stderr and exit code 2.
"""


def build_parser() -> argparse.ArgumentParser:
    from slnn.tracking.console import version_line

    p = argparse.ArgumentParser(
        prog="slnn-report", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare how the update rules train, from one sweep recorded in MLflow: "
                    "learning curves, final test errors, outcomes, a summary table with 95% "
                    "intervals and a verdict written from the numbers. Each rule's best cell "
                    "is chosen by validation error, ties going to the lower validation loss.")
    p.add_argument("--version", action="version", version=version_line("slnn-report"),
                   help="show slnn's version, Hydra's and MLflow's, and exit")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--experiment", metavar="NAME", default=None,
                       help="report the newest sweep in this MLflow experiment (default: slnn)")
    which.add_argument("--parent-run", metavar="ID",
                       help="report the sweep whose parent run has this id, any unique start of "
                            "it, or this name (e.g. guide_vs_correct-20260101-120000)")
    which.add_argument("--from", dest="from_dir", metavar="DIR",
                       help="draw the report again from the data files in DIR (a report's "
                            "folder: sweep.json, runs.csv, tidy.parquet, ...), with no store; "
                            "into --out if given, else back into DIR")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow store: a sqlite:///file.db, a folder, or an http:// server "
                        "(default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.add_argument("--out", metavar="DIR",
                   help="folder to write into (default: reports/<study>-<id>/ under the current "
                        "directory; <study> is the sweep's +experiment=<name>, or 'sweep' for an "
                        "ad-hoc grid, <id> the first 8 characters of its parent run id; with "
                        "--from: the --from folder)")
    p.add_argument("--target-error", type=float, default=None, metavar="E",
                   help="validation error that counts as learned, for the epochs-to-target "
                        "figure (default: 0.1; with --from, the value the data were written with)")
    p.add_argument("--attach", action="store_true",
                   help="also log the report's files to the sweep's parent run under report/")
    p.add_argument("--register", nargs="?", const="", metavar="NAME",
                   help="also register the sweep's best run (the lowest final validation "
                        "loss among runs that trained to a result, ties broken by validation "
                        "error; never by a test figure) in the Model Registry with the alias "
                        "'best', as NAME "
                        "(default: slnn-<study>)")
    p.add_argument("--grid", metavar="DIR",
                   help="for a tuned study (hydra.sweeper.search): compare each arm's confirmed "
                        "test error with the grid's cell for the same (data, rule, activation), "
                        "from a grid report's folder DIR (e.g. reports/guide_vs_correct), "
                        "chosen cross-fitted as that report chooses; its runs are kept with the "
                        "report's data")
    p.add_argument("--rule-file", action="append", default=[], metavar="FILE",
                   help="a user's rule file (update=custom) the report may run to check the "
                        "rule, only if its sha256 is the one the runs recorded; repeat for "
                        "several. Without it a user's rule is not checked: a report never runs "
                        "a file because the store names it")
    return p


def _uri(arg: str | None) -> str:
    from slnn.tracking.store import resolve_uri

    if arg:  # the flag wins over the environment: resolve it as if it were the environment's
        saved = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = arg
        try:
            return resolve_uri(arg)
        finally:
            if saved is None:
                del os.environ["MLFLOW_TRACKING_URI"]
            else:
                os.environ["MLFLOW_TRACKING_URI"] = saved
    return resolve_uri("sqlite:///mlflow.db")


def _fail(msg: str, code: int = 2) -> int:
    from slnn.tracking.faults import mask

    print(mask(f"slnn-report: error: {msg}"), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.from_dir is not None:
        bad = [f for f, v in (("--tracking-uri", args.tracking_uri), ("--attach", args.attach),
                              ("--register", args.register is not None)) if v]
        if bad:
            return _fail(f"--from draws a report from files, with no store: drop {', '.join(bad)}"
                         " (or report the sweep from its store with --parent-run <id>)")
    if args.target_error is not None and not 0 < args.target_error <= 1:
        return _fail(f"--target-error must be in (0, 1], got {args.target_error}: "
                     "e.g. --target-error 0.1")
    import logging
    import warnings

    from slnn.app import shutdown
    from slnn.app.signals import install

    install()  # SIGTERM ends it like Ctrl-C: one line
    if argv is None:  # the console script, not a call from Python (a test) that goes on after
        shutdown.install()  # skip the seconds of garbage collection at the interpreter's exit

    warnings.filterwarnings("ignore")
    from slnn.report import ReportError, newest_sweep, report_for_parent
    from slnn.report.source import find_sweep
    from slnn.report.tuning import GridError
    from slnn.tracking.console import quiet_mlflow

    quiet_mlflow(logging.ERROR)  # and no progress bars when histories are downloaded
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        return _fail(f"--out {args.out} is a file, not a folder: pass a folder (it is created if "
                     "missing), e.g. --out reports/mine")
    if args.grid is not None:
        from slnn.report.tuning import GridError, load_grid

        try:
            load_grid(args.grid)  # a bad folder is said before the store is read
        except GridError as e:
            return _fail(str(e))
    if args.from_dir is not None:
        return _from(args)
    for f in args.rule_file:
        if not Path(f).is_file():
            return _fail(f"--rule-file {f}: no such file: pass the rule's .py file, e.g. "
                         "--rule-file my_rules.py")
    from slnn.report.rulecheck import allow_rule_files

    try:
        uri = _uri(args.tracking_uri)
        parent = (find_sweep(uri, args.parent_run) if args.parent_run is not None
                  else newest_sweep(uri, args.experiment or "slnn"))
        with allow_rule_files(args.rule_file):  # the only rule files the report may run
            folder = report_for_parent(uri, parent, attach=args.attach, out=args.out,
                                       target_error=args.target_error or 0.1, grid=args.grid)
    except (ReportError, GridError) as e:
        return _fail(str(e))
    except KeyboardInterrupt as e:
        from slnn.app.signals import exit_code, what

        return _fail(f"{what(e)}; the report may be incomplete", exit_code(e))
    except OSError as e:  # the output folder: read-only, a file in the way, a full disk
        where = e.filename or args.out or "the report's folder"
        return _fail(f"cannot write the report into {where} ({e.strerror or e}): pass --out "
                     "<a folder you can write>")
    except Exception as e:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get("SLNN_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        return _fail(f"unexpected {type(e).__name__}: {first} (set SLNN_DEBUG=1 for the "
                     "traceback)", 1)
    print(f"slnn-report: wrote {folder / 'report.html'} and report.md (sweep {parent})")
    if args.register is not None:
        from slnn.tracking.model_registry import RegistryError, register_best

        try:
            name, version, run_id = register_best(uri, parent, name=args.register or None)
        except RegistryError as e:
            return _fail(str(e))
        print(f"slnn-report: registered run {run_id} as {name} version {version}, alias "
              f"{name}@best")
    return 0


def _from(args) -> int:
    """``--from DIR``: the report drawn again from DIR's data files; no store is opened."""
    from slnn.report import report_from
    from slnn.report.datafiles import MissingData
    from slnn.report.tuning import GridError

    try:
        folder = report_from(args.from_dir, args.out, target_error=args.target_error,
                             grid=args.grid)
    except (MissingData, GridError) as e:
        return _fail(str(e))
    except KeyboardInterrupt as e:
        from slnn.app.signals import exit_code, what

        return _fail(f"{what(e)}; the report may be incomplete", exit_code(e))
    except OSError as e:
        where = e.filename or args.out or args.from_dir
        return _fail(f"cannot write the report into {where} ({e.strerror or e}): pass --out "
                     "<a folder you can write>")
    except Exception as e:  # a bug or a damaged file: one line, the traceback on request
        if os.environ.get("SLNN_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        return _fail(f"unexpected {type(e).__name__} drawing the report from {args.from_dir}: "
                     f"{first} (set SLNN_DEBUG=1 for the traceback)", 1)
    print(f"slnn-report: wrote {folder / 'report.html'} and report.md (from the data in "
          f"{args.from_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
