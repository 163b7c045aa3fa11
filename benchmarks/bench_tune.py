"""Tune, then confirm against the grid it replaces: runs spent and the confirmed test error, arm
by arm (issue 26's goal: at most half the grid's runs, and every arm no worse than the grid's
best cell, within that cell's interval).

    python benchmarks/bench_tune.py --grid reports/guide_vs_correct \\
        --tracking-uri sqlite:///mlflow.db --parent-run <tune_then_confirm's parent run id>

The grid's side is read from its report's data (``runs.csv``), the search's from the store (its
runs' tags and final metrics), so neither side goes through the report code being measured.
An arm's best grid cell is the learning rate with the lowest mean validation error over its
seeds, a diverged run scoring 1 (the grid's own best, chosen and reported on the same seeds: the
winner's curse favours the grid); test errors of diverged runs count as 1 on both sides.
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slnn.report.inference import rate_interval  # noqa: E402


def _err(outcome: str, value) -> float:
    if outcome == "diverged" or value is None or not math.isfinite(float(value)):
        return 1.0
    return float(value)


def grid_side(folder: Path) -> dict:
    every = pd.read_csv(folder / "runs.csv")
    spent = every.groupby(["data", "update", "activation"]).size()
    runs = every[~every["outcome"].isin(["shape_mismatch", "failed", "killed", "running"])]
    out = {key: {"runs": int(n), "lr": None, "test": []} for key, n in spent.items()}
    for (data, update, act), arm in runs.groupby(["data", "update", "activation"]):
        per_lr = {}
        for lr, cell in arm.groupby("lr"):
            val = [_err(o, v) for o, v in zip(cell["outcome"], cell["val_error"])]
            test = [_err(o, v) for o, v in zip(cell["outcome"], cell["test_error"])]
            per_lr[lr] = (sum(val) / len(val), test)
        lr, (_, test) = min(per_lr.items(), key=lambda kv: (kv[1][0], kv[0]))
        out[(data, update, act)] = {"runs": int(spent[(data, update, act)]), "lr": lr,
                                    "test": test}
    return out


def search_side(uri: str, parent: str) -> dict:
    from slnn.tracking.runs import iter_runs
    from slnn.tracking.store import client_for

    client = client_for(uri, write=False)
    exp = client.get_run(parent).info.experiment_id
    arms = collections.defaultdict(lambda: {"runs": 0, "test": [], "lr": None})
    for r in iter_runs(client, [exp], f"tags.mlflow.parentRunId = '{parent}'"):
        t = r.data.tags
        if "slnn.stage" not in t or r.info.status != "FINISHED":
            continue
        key = (t["slnn.data"], t["slnn.update"], t["slnn.activation"])
        a = arms[key]
        a["runs"] += 1
        if t["slnn.stage"] == "confirm" and t.get("slnn.outcome") != "shape_mismatch":
            a["lr"] = float(r.data.params["optim.lr"])
            a["test"].append(_err(t.get("slnn.outcome", ""), r.data.metrics.get("final/test_error")))
    return dict(arms)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=Path, required=True, help="a grid report's folder (runs.csv)")
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--parent-run", required=True, help="the search's parent run id")
    args = p.parse_args()
    grid, tuned = grid_side(args.grid), search_side(args.tracking_uri, args.parent_run)
    rows, worse = [], 0
    for key in sorted(set(grid) | set(tuned)):
        g, s = grid.get(key), tuned.get(key)
        if g is None or s is None or not s["test"] or not g["test"]:
            rows.append((*key, g["runs"] if g else 0, s["runs"] if s else 0, "", "", "", "",
                         "no comparison (an arm that cannot run)"))
            continue
        g_mean = sum(g["test"]) / len(g["test"])
        lo, hi = rate_interval(g["test"])
        s_mean = sum(s["test"]) / len(s["test"])
        slo, shi = rate_interval(s["test"])
        ok = s_mean <= (hi if math.isfinite(hi) else g_mean)
        worse += not ok
        rows.append((*key, g["runs"], s["runs"], f"{g['lr']:g}", f"{g_mean:.3f} [{lo:.3f}, {hi:.3f}]",
                     f"{s['lr']:.3g}", f"{s_mean:.3f} [{slo:.3f}, {shi:.3f}]",
                     "no worse" if ok else "WORSE"))
    cols = ["data", "update", "activation", "grid runs", "search runs", "grid lr",
            "grid test error [95%]", "tuned lr", "confirmed test error [95%]", "verdict"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(x) for x in row) + " |")
    g_runs = sum(v["runs"] for v in grid.values())
    s_runs = sum(v["runs"] for v in tuned.values())
    print(f"\nruns: search {s_runs} / grid {g_runs} = {s_runs / g_runs:.2f}; arms no worse than "
          f"the grid's best cell: {len(rows) - worse - sum(r[-1].startswith('no comp') for r in rows)}"
          f" of {len(rows) - sum(r[-1].startswith('no comp') for r in rows)} comparable")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
