"""``slnn-check``: is an update rule the gradient? Checks a rule against numerical gradients.

    slnn-check my_rule.py:my_step            # a table per activation and a one-paragraph summary
    slnn-check my_rule.py:my_step --json     # one JSON object per activation
    slnn-check --builtin kronecker           # a rule from slnn.check.gallery

The rule has the signature ``my_step(x, net, z, t, delta) -> step shaped like W`` (see
``slnn.check.checker``). Bad input is one line on stderr, ``slnn-check: error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from slnn.check.checker import DEFAULT_SHAPES, check_rule
from slnn.check.gallery import GALLERY
from slnn.check.loader import CheckedRule, RuleLoadError, load_rule
from slnn.check.report import format_shapes, format_table, summarize

PROG = "slnn-check"


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
        epilog=f"gallery rules for --builtin: {', '.join(GALLERY)}",
    )
    p.add_argument("rule", nargs="?", metavar="FILE.py:FUNC",
                   help="the rule: a Python file anywhere on disk and the function in it")
    p.add_argument("--builtin", metavar="NAME", help="check a gallery rule instead of a file")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, one object per activation")
    p.add_argument("--seed", type=int, default=0, help="seed of the random batches (default 0)")
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


def run_check(args, out=None) -> int:
    """Check the rule ``args`` names and print the table and summary (or JSON) to ``out``."""
    out = sys.stdout if out is None else out
    rule = resolve_rule(args)
    results = check_rule(rule, seed=args.seed)
    if args.json:
        json.dump(_json_rows(results, rule), out, indent=2, allow_nan=False)
        out.write("\n")
        return 0
    sha = f"  sha256 {rule.digest[:12]}" if rule.digest else ""
    shapes = " ".join(f"d={d},k={k}" for d, k in DEFAULT_SHAPES)
    print(f"{PROG} {rule.label}{sha}  seed {args.seed}, data shapes {shapes}", file=out)
    print("", file=out)
    print(format_table(results), file=out)
    print("", file=out)
    print(format_shapes(results), file=out)
    print("", file=out)
    print(summarize(results, rule.label, seed=args.seed), file=out)
    return 0


def main(argv=None) -> int:
    """Entry point: returns the exit code (0 done, 2 bad input)."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        # one mode today; another (e.g. --compare) adds its option in build_parser and a branch
        # here, before the default
        return run_check(args)
    except (UsageError, RuleLoadError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
