"""``slnn-check``: is an update rule the gradient? Checks a rule against numerical gradients.

    slnn-check my_rule.py:my_step            # a table per activation and a summary
    slnn-check --builtin kronecker --json    # a registered rule; one JSON object per activation
    slnn-check my_rule.py:my_step --compare  # plus a small study against the gradient
    slnn-check my_rule.py:my_step --expect gradient,descent   # exit 1 outside these verdicts

Exit codes: 0 done, 1 a verdict outside ``--expect``, 2 bad input, 130 interrupted, 143
terminated (docs/checker.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from slnn.check.checker import (DEFAULT_N_BATCHES, DEFAULT_SHAPES, DESCENT_SHARE, SHAPE_MISMATCH,
                                VERDICTS, check_rule)
from slnn.check.gallery import GALLERY
from slnn.core.rulefile import CheckedRule, RuleLoadError, load_rule
from slnn.check.report import format_shapes, format_table, summarize

PROG = "slnn-check"
ANY_OTHER_LOSS = "other_loss_gradient"       # in --expect: the gradient of any other loss
EXPECTABLE = (*VERDICTS, ANY_OTHER_LOSS)
EXIT_UNEXPECTED, EXIT_USAGE = 1, 2


class UsageError(ValueError):
    """Bad command-line input; reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; a new mode adds its option here and its branch in ``main``."""
    p = _Parser(
        prog=PROG,
        description="Check a weight-update rule against the negative gradient of "
                    "0.5 ||t - z||^2, for every activation, on random batches of several data "
                    "shapes. The rule is a function my_step(x, net, z, t, delta) returning a "
                    "step shaped like W; the trainer does W += eta * step.",
        epilog=f"verdicts, the first that holds: gradient (equals the negative gradient on every "
               f"batch, to 1e-8 relative for float64 and sqrt-of-precision for float32 or "
               f"float16), other_loss_gradient:<loss> (the gradient of sum_squared, "
               f"cross_entropy or softmax_cross_entropy), gradient_scaled (a constant c > 0 "
               f"times it), descent (the 95% Clopper-Pearson interval of the share of batches "
               f"on which the step points downhill reaches {DESCENT_SHARE}), not_descent, "
               f"shape_mismatch. {DEFAULT_N_BATCHES} batches per data shape. Exit codes: 0 done, "
               f"1 a verdict outside --expect, 2 bad input, 130 interrupted, 143 terminated. "
               f"Gallery rules for --builtin: {', '.join(GALLERY)}.",
    )
    from slnn.tracking.console import version_line

    p.add_argument("--version", action="version", version=version_line(PROG),
                   help="show slnn's version, Hydra's and MLflow's, and exit")
    p.add_argument("rule", nargs="?", metavar="FILE.py:FUNC",
                   help="the rule: a Python file anywhere on disk and the function in it")
    p.add_argument("--builtin", metavar="NAME", help="check a gallery rule instead of a file")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, one object per activation")
    p.add_argument("--seed", type=int, default=0, help="seed of the random batches (default 0)")
    p.add_argument("--expect", metavar="V,V", default=None,
                   help="exit 1 (one line on stderr) unless every activation's verdict is one of "
                        "these, e.g. gradient,descent; other_loss_gradient matches any loss. A "
                        "step that fits W on some data shapes only also counts as "
                        f"{SHAPE_MISMATCH}. Choices: {', '.join(EXPECTABLE)}")
    c = p.add_argument_group(
        "--compare", "after the check, train the rule against the gradient rule input (the "
        "study 'compare': seeds x learning rates on two data sets, through slnn-train) and write "
        "its report, with the report's paired tests, Holm correction and t intervals")
    c.add_argument("--compare", action="store_true", help="run the study and write its report")
    c.add_argument("--store", metavar="URI", default=None,
                   help="tracking store for its runs (default: sqlite:///mlflow.db in this "
                        "folder, or MLFLOW_TRACKING_URI if set); experiment slnn-compare")
    c.add_argument("--data", metavar="A,B", default=None,
                   help="data sets (default: the study's iris_petal,blobs)")
    c.add_argument("--lrs", metavar="LR,LR", default=None,
                   help="learning rates (default: the study's 0.03,0.1,0.3)")
    c.add_argument("--seeds", metavar="N", type=int, default=None,
                   help="seeds 0..N-1 per cell (default: the study's 10)")
    c.add_argument("--activation", metavar="NAME", default=None,
                   help="activation(s), comma-separated (default: the study's sigmoid)")
    c.add_argument("--epochs", metavar="N", type=int, default=None,
                   help="epochs per run (default: the study's 50)")
    c.add_argument("--out", metavar="DIR", default=None,
                   help="report folder (default: reports/compare-<function>)")
    return p


def resolve_rule(args) -> CheckedRule:
    """The rule named by ``FILE.py:FUNC`` or ``--builtin NAME``, wrapped for one-line errors."""
    if (args.rule is None) == (args.builtin is None):
        raise UsageError("give either FILE.py:FUNC or --builtin NAME (exactly one)")
    if args.builtin is not None:
        if args.builtin not in GALLERY:
            raise UsageError(f"unknown --builtin {args.builtin!r}: choose one of "
                             f"{', '.join(GALLERY)}")
        return CheckedRule(GALLERY[args.builtin].step, f"builtin:{args.builtin}",
                           name=args.builtin)
    return load_rule(args.rule)


def _finite(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _json_rows(results, rule: CheckedRule) -> list[dict]:
    rows = []
    for r in results:
        row = {"rule": rule.label, "sha256": rule.digest, **r.to_json()}
        row = {k: _finite(v) for k, v in row.items()}
        row["shapes"] = [{k: _finite(v) for k, v in s.items()} for s in row["shapes"]]
        rows.append(row)
    return rows


def parse_expect(text: str | None) -> tuple[str, ...] | None:
    """``--expect``'s verdicts, or a ``UsageError`` naming the one that is not a verdict."""
    if text is None:
        return None
    items = tuple(v.strip() for v in text.split(","))
    for v in items:
        if v not in EXPECTABLE:
            raise UsageError(f"--expect {text!r}: {v!r} is not a verdict; give a comma-separated "
                             f"list of {', '.join(EXPECTABLE)}")
    return items


def _accepts(expected, verdict: str) -> bool:
    return verdict in expected or (ANY_OTHER_LOSS in expected
                                   and verdict.startswith(ANY_OTHER_LOSS + ":"))


def unexpected(results, expected) -> list[tuple[str, str]]:
    """``(activation, verdict as shown)`` for each activation whose verdict is not expected (a
    step that fits only some data shapes is ``shape_mismatch`` on the others, which must be
    expected too)."""
    out = []
    for r in results:
        shown = [r.verdict] + ([SHAPE_MISMATCH] if r.fits_only else [])
        if not all(_accepts(expected, v) for v in shown):
            text = r.verdict if not r.fits_only else (
                f"{r.verdict} on {', '.join(r.fits_only)} only, {SHAPE_MISMATCH} elsewhere")
            out.append((r.activation, text))
    return out


def expect_line(misses, expected) -> str:
    groups: dict[str, list[str]] = {}
    for act, text in misses:
        groups.setdefault(text, []).append(act)
    got = "; ".join(f"{', '.join(acts)}: {text}" for text, acts in groups.items())
    return f"{PROG}: verdict outside --expect {','.join(expected)}: {got}"


def _quiet_stdout() -> None:
    """After a closed pipe: send what is left for stdout to /dev/null, so that neither the rest
    of the output nor Python's flush at exit complains."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured in a test)
        pass


def _print_results(args, results, rule: CheckedRule, out) -> None:
    if args.json:
        json.dump(_json_rows(results, rule), out, indent=2, allow_nan=False)
        out.write("\n")
        return
    sha = f"  sha256 {rule.digest[:12]}" if rule.digest else ""
    shapes = " ".join(f"d={d},k={k}" for d, k in DEFAULT_SHAPES)
    print(f"{PROG} {rule.label}{sha}  seed {args.seed}, data shapes {shapes}, "
          f"{DEFAULT_N_BATCHES} batches each", file=out)
    print("", file=out)
    print(format_table(results), file=out)
    print("", file=out)
    print(format_shapes(results), file=out)
    print("", file=out)
    print(summarize(results, rule.label, seed=args.seed), file=out)


def run_check(args, out=None) -> int:
    """Check the rule ``args`` names and print the table and summary (or JSON) to ``out``;
    0, or 1 when a verdict is outside ``--expect``."""
    out = sys.stdout if out is None else out
    expected = parse_expect(getattr(args, "expect", None))
    rule = resolve_rule(args)
    results = check_rule(rule, seed=args.seed)
    try:
        _print_results(args, results, rule, out)
        out.flush()
    except BrokenPipeError:   # the reader stopped reading (| head): the verdicts still count
        _quiet_stdout()
    if expected is not None:
        misses = unexpected(results, expected)
        if misses:
            print(expect_line(misses, expected), file=sys.stderr)
            return EXIT_UNEXPECTED
    return 0


COMPARE_STUDY = "compare"
COMPARE_EXPERIMENT = "slnn-compare"


def compare_overrides(args, rule: CheckedRule) -> list[str]:
    """``slnn-train -m`` overrides of the compare study for this rule and these options."""
    if args.builtin is not None:
        if args.builtin == "input":
            raise UsageError("--compare compares a rule with input: pick another rule")
        ov = [f"update={args.builtin},input"]
    else:
        ov = [f"update.fn={rule.path}:{rule.name}"]
    for flag, key in (("data", "data"), ("lrs", "optim.lr"), ("activation", "model.activation")):
        value = getattr(args, flag)
        if value is not None:
            if not re.fullmatch(r"[\w.+-]+(,[\w.+-]+)*", value):
                raise UsageError(f"--{flag} {value!r}: expected comma-separated values, e.g. "
                                 f"--{flag} a,b")
            ov.append(f"{key}={value}")
    if args.seeds is not None:
        if args.seeds < 1:
            raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
        ov.append(f"seed=range({args.seeds})")
    if args.epochs is not None:
        ov.append(f"train.epochs={args.epochs}")
    return ov


def run_compare(args, rule: CheckedRule, overrides: list[str], out=None) -> int:
    """``--compare``: the study ``compare`` for this rule, through ``slnn-train -m`` (the same
    Hydra entry point, validation, resume and store as any sweep), then its report."""
    from slnn.report import report_for_parent
    from slnn.report.source import ReportError, newest_sweep
    from slnn.tracking.faults import mask
    from slnn.tracking.store import resolve_uri

    out = sys.stdout if out is None else out
    env = dict(os.environ)
    if args.store is not None:  # given on the command line: it wins over MLFLOW_TRACKING_URI
        env.pop("MLFLOW_TRACKING_URI", None)
        saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
        try:
            uri = resolve_uri(args.store)
        finally:
            if saved is not None:
                os.environ["MLFLOW_TRACKING_URI"] = saved
    else:
        uri = resolve_uri("sqlite:///mlflow.db")  # slnn-train's default store, in this folder
    cmd = [sys.executable, "-m", "slnn", "-m", f"+experiment={COMPARE_STUDY}",
           *overrides, f"tracking.uri={uri}", "sweep.report=false"]
    name = args.builtin or rule.name
    print(f"{PROG}: --compare: training {rule.label} against input (study {COMPARE_STUDY}); "
          f"runs go to experiment {COMPARE_EXPERIMENT} in {mask(uri)}", file=out, flush=True)
    proc = subprocess.run(cmd, env=env)
    if proc.returncode == 2:  # slnn-train said why, in one line
        return 2
    try:
        parent = newest_sweep(uri, COMPARE_EXPERIMENT)
        from slnn.report.rulecheck import allow_rule_files

        with allow_rule_files([rule.path] if rule.path else []):  # the file checked above
            folder = report_for_parent(uri, parent, attach=True,
                                       out=args.out or Path("reports") / f"compare-{name}")
    except ReportError as e:
        raise UsageError(f"--compare: no report ({e})") from None
    headline = _headline(folder / "report.md")
    print(f"{PROG}: --compare: {headline}", file=out)
    print(f"{PROG}: --compare: report: {folder}/report.md (and report.html); runs: experiment "
          f"{COMPARE_EXPERIMENT} in {mask(uri)}", file=out, flush=True)
    return 1 if proc.returncode else 0


def _headline(report_md: Path) -> str:
    """The report's headline: the paragraph after its title."""
    paras = report_md.read_text().split("\n\n")
    return paras[1].strip().strip("*") if len(paras) > 1 else ""  # the bold answer


def main(argv=None) -> int:
    """Entry point: returns the exit code (0 done, 1 a verdict outside ``--expect``, 2 bad
    input, 130 interrupted, 143 terminated)."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        if args.compare:
            if args.json:
                raise UsageError("--compare writes a report; give it without --json")
            if args.expect is not None:
                raise UsageError("--expect gates the check alone; give it without --compare")
            rule = resolve_rule(args)
            overrides = compare_overrides(args, rule)  # a bad option fails before the check
            run_check(args)
            print("", flush=True)
            return run_compare(args, rule, overrides)
        compare_only = [f for f in ("store", "data", "lrs", "seeds", "activation", "epochs", "out")
                        if getattr(args, f) is not None]
        if compare_only:
            raise UsageError(f"--{compare_only[0]} applies only with --compare")
        return run_check(args)
    except (UsageError, RuleLoadError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (``slnn.app.entry``)
        from slnn.app.signals import exit_code, what

        print(f"{PROG}: {what(e)}", file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
