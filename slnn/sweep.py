"""Sweeps that never lose a run: a Hydra callback around every multirun, and the job-side ledger.

    slnn-train -m update=input,kronecker optim.lr=0.01,0.1,1.0 seed=range(5) data=iris_petal
    slnn-train -m +experiment=guide_vs_correct hydra/launcher=joblib

Before any job starts, ``SweepCallback.on_multirun_start`` (in the launching process):
- enumerates every cell of the grid as Hydra's basic sweeper will, composes and validates each
  (a bad value anywhere fails the sweep with one line before anything runs);
- creates and migrates the tracking store and the experiment once, so parallel workers never race
  in SQLite's schema migration;
- marks runs left RUNNING by dead processes on this host as KILLED;
- finds the cells that already have a FINISHED run with the same ``slnn.config_hash`` (one
  ``search_runs`` query) and will skip them unless ``sweep.force=true``;
- opens (or, for the same grid, reopens) the sweep's parent run.
Jobs find all that in a small state file named by ``SLNN_SWEEP_STATE``, append their outcome to
the sweep's ledger (``progress.jsonl``, one line each) and print progress with an estimate of the
time left. ``on_multirun_end`` prints one summary line and closes the parent run; an interrupted
sweep closes it as KILLED, and running it again completes only what is missing.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

STATE_ENV = "SLNN_SWEEP_STATE"
PARENT_ENV = "SLNN_PARENT_RUN_ID"
# outcomes the study expects; anything else counted as "failed" makes the exit code non-zero
EXPECTED = {"converged", "max_epochs", "early_stopped", "diverged", "shape_mismatch", "skipped"}
# keep each worker to one BLAS / OpenMP / Numba thread: the parallelism is across jobs
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _fail(msg: str) -> None:
    print(f"slnn-train: error: {msg}", file=sys.stderr)
    sys.exit(2)


# --- the grid -------------------------------------------------------------------------------

def sweep_arguments(config: DictConfig) -> list[str]:
    """The overrides the basic sweeper will expand: ``hydra.sweeper.params`` then the command line."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    args = [f"{k}={v}" for k, v in params.items()]
    return args + list(OmegaConf.select(config, "hydra.overrides.task") or [])


def enumerate_cells(config: DictConfig) -> list[list[str]]:
    """Every job's overrides, in the order Hydra's basic sweeper launches them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(sweep_arguments(config))
    return [cell for batch in BasicSweeper.split_arguments(parsed, None) for cell in batch]


def _is_group(key: str, conf_dir: Path) -> bool:
    key = key.lstrip("+~")
    return key.startswith("hydra/") or (conf_dir / key).is_dir()


def compose_cells(config_name: str, cells: list[list[str]], conf_dir: Path):
    """Compose and validate each cell; returns ``[(overrides, cfg, Config)]`` or exits with one line.

    Composition is done once per distinct choice of config groups; the plain value overrides of a
    cell are then applied to a copy, which keeps a 1,000-cell grid to about a second.
    """
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from slnn.config import ConfigError, to_config
    from slnn.train import explain_hydra_error

    parser = OverridesParser.create()
    bases: dict[tuple, DictConfig] = {}
    out = []
    for cell in cells:
        groups = tuple(o for o in cell if _is_group(o.split("=", 1)[0], conf_dir)
                       and not o.lstrip("+~").startswith("hydra/"))
        values = [o for o in cell if not _is_group(o.split("=", 1)[0], conf_dir)
                  and not o.startswith("hydra.")]
        try:
            if groups not in bases:
                bases[groups] = compose(config_name, overrides=list(groups))
            cfg = copy.deepcopy(bases[groups])
            for ov in parser.parse_overrides(values):
                key = ov.key_or_group
                if ov.is_delete():
                    with open_dict(cfg):
                        OmegaConf.update(cfg, key, None)
                    continue
                if ov.is_add() or ov.is_force_add():
                    with open_dict(cfg):
                        OmegaConf.update(cfg, key, ov.value(), merge=True)
                else:
                    if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                        raise ConfigError(f"{key!r} is not a config key: to add one use +{key}=..."
                                          f" (in the cell {' '.join(cell)})")
                    OmegaConf.update(cfg, key, ov.value(), merge=True)
            out.append((cell, cfg, to_config(cfg)))
        except ConfigError as e:
            _fail(f"{e} (in the cell {' '.join(cell)}); no run was started")
        except Exception as e:
            _fail(f"{explain_hydra_error(e)} (in the cell {' '.join(cell)}); no run was started")
    return out


# --- the state jobs read, the ledger they write ---------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_runs(client, experiment_id: str, parent_run_id: str | None = None) -> int:
    """Mark runs left RUNNING by processes of this host that no longer exist as KILLED."""
    from mlflow.entities import RunTag

    host = socket.gethostname()
    filt = "attributes.status = 'RUNNING'"
    if parent_run_id:
        filt += f" and tags.mlflow.parentRunId = '{parent_run_id}'"
    n = 0
    for run in client.search_runs([experiment_id], filter_string=filt, max_results=5000):
        tags = run.data.tags
        pid = tags.get("slnn.pid")
        if tags.get("slnn.host") != host or not pid or not pid.isdigit():
            continue  # another machine's run: slnn cannot tell whether it is alive
        if int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        client.log_batch(run.info.run_id, tags=[
            RunTag("slnn.outcome", "killed"),
            RunTag("slnn.reason", f"process {pid} on {host} ended without closing the run"),
        ])
        client.set_terminated(run.info.run_id, "KILLED")
        n += 1
    return n


def finished_hashes(client, experiment_id: str) -> set[str]:
    """Config hashes of every FINISHED slnn run in the experiment (one paged search)."""
    done: set[str] = set()
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string="attributes.status = 'FINISHED'",
                                  max_results=50000, page_token=token)
        done.update(r.data.tags["slnn.config_hash"] for r in page
                    if "slnn.config_hash" in r.data.tags)
        token = page.token
        if not token:
            return done


class Ledger:
    """``progress.jsonl`` in the sweep folder: one line per finished job, appended atomically."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def add(self, **entry: Any) -> None:
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write on an O_APPEND file: lines never interleave
        finally:
            os.close(fd)

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]


def load_state() -> dict | None:
    path = os.environ.get(STATE_ENV)
    if not path or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())


def _fmt_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def report_progress(state: dict, name: str, outcome: str, seconds: float) -> None:
    """Record one finished job in the ledger and print ``[done/total] name outcome, ETA``."""
    ledger = Ledger(Path(state["dir"]) / "progress.jsonl")
    ledger.add(name=name, outcome=outcome, seconds=round(seconds, 4), pid=os.getpid())
    entries = ledger.entries()
    done, total = len(entries), state["total"]
    ran = [e for e in entries if e["outcome"] != "skipped"]
    to_run = total - len(state["skip"])
    left = max(to_run - len(ran), 0)
    elapsed = time.time() - state["start"]
    eta = _fmt_eta(elapsed / len(ran) * left) if ran else "?"
    print(f"[{done}/{total}] {name}: {outcome} ({seconds:.2f} s); about {eta} left", flush=True)


def summarize(entries: list[dict], total: int) -> tuple[Counter, str]:
    c = Counter(e["outcome"] for e in entries)
    finished = sum(v for k, v in c.items() if k in ("converged", "max_epochs", "early_stopped"))
    parts = [f"{finished} finished", f"{c['failed']} failed", f"{c['diverged']} diverged",
             f"{c['shape_mismatch']} shape_mismatch", f"{c['skipped']} skipped"]
    if c["killed"]:
        parts.append(f"{c['killed']} killed")
    missing = total - len(entries)
    if missing > 0:
        parts.append(f"{missing} not run")
    return c, ", ".join(parts) + f" (of {total} cells)"


# --- the callback ---------------------------------------------------------------------------

class SweepCallback(Callback):
    """Registered in ``conf/config.yaml`` under ``hydra.callbacks``; active only in multiruns."""

    def __init__(self) -> None:
        self.state: dict | None = None
        self.client = None
        self._closed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from slnn import tracking
        from slnn.config import config_hash
        from slnn.train import CONF_DIR

        for var in THREAD_ENV:
            os.environ.setdefault(var, "1")
        config_name = kwargs.get("config_name") or "config"
        cells = compose_cells(config_name, enumerate_cells(config), CONF_DIR)
        if not cells:
            _fail("the sweep has no cells: give at least one override or +experiment=<name>")
        first = cells[0][2]
        uri = tracking.resolve_uri(first.tracking.uri)
        exps = {c.tracking.experiment for _, _, c in cells}
        if len(exps) > 1 or len({tracking.resolve_uri(c.tracking.uri) for _, _, c in cells}) > 1:
            _fail("a sweep records into one store and experiment: do not sweep tracking.uri or "
                  "tracking.experiment")
        try:
            client = tracking.client_for(uri)  # creates and migrates a new SQLite store, once
            exp_id = tracking.ensure_experiment(client, first.tracking.experiment)
            reaped = reap_dead_runs(client, exp_id)
            done = finished_hashes(client, exp_id)
        except tracking.TrackingError as e:
            _fail(str(e))
        except Exception as e:
            _fail(f"MLflow at {uri} failed: {str(e).splitlines()[0][:300]}; check the store or "
                  "set MLFLOW_TRACKING_URI to a reachable one")
        hashes = [config_hash(cfg) for _, cfg, _ in cells]
        force = any(c.sweep.force for _, _, c in cells)
        skip = sorted(set(hashes) & done) if not force else []
        study = (OmegaConf.select(config, "hydra.runtime.choices.experiment") or "sweep")
        sweep_hash = hashlib.sha256(",".join(sorted(hashes)).encode()).hexdigest()[:16]
        parent = self._open_parent(client, exp_id, study, sweep_hash, force, len(cells))
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.state = {
            "dir": str(sweep_dir), "uri": uri, "experiment_id": exp_id, "parent_run_id": parent,
            "total": len(cells), "skip": skip, "start": time.time(), "study": study,
            "report": bool(first.sweep.report), "force": force,
        }
        state_path = sweep_dir / "slnn_sweep.json"
        state_path.write_text(json.dumps(self.state))
        os.environ[STATE_ENV] = str(state_path)
        os.environ[PARENT_ENV] = parent
        os.environ["MLFLOW_TRACKING_URI"] = uri  # workers agree on the store whatever their cwd
        self.client = client
        atexit.register(self._close_interrupted)
        note = f"; marked {reaped} dead run(s) KILLED" if reaped else ""
        print(f"slnn: sweep {study}: {len(cells)} cells, {len(skip)} already done and skipped, "
              f"{len(cells) - len(skip)} to run (parent run {parent}){note}", flush=True)

    def _open_parent(self, client, exp_id, study, sweep_hash, force, n_cells) -> str:
        from mlflow.entities import RunTag

        if not force:
            prev = client.search_runs([exp_id], filter_string=f"tags.`slnn.sweep_hash` = '{sweep_hash}'",
                                      order_by=["attributes.start_time DESC"], max_results=1)
            if prev:  # the same grid again: resume under the same parent
                client.update_run(prev[0].info.run_id, status="RUNNING")
                return prev[0].info.run_id
        name = f"{study}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = client.create_run(exp_id, run_name=name)
        client.log_batch(run.info.run_id, tags=[
            RunTag("mlflow.runName", name), RunTag("slnn.sweep", "true"),
            RunTag("slnn.study", study), RunTag("slnn.sweep_hash", sweep_hash),
            RunTag("slnn.n_cells", str(n_cells)), RunTag("slnn.host", socket.gethostname()),
            RunTag("slnn.pid", str(os.getpid())),
        ])
        return run.info.run_id

    def _close(self, status: str) -> tuple[Counter, str]:
        from mlflow.entities import RunTag

        st = self.state
        entries = Ledger(Path(st["dir"]) / "progress.jsonl").entries()
        counts, line = summarize(entries, st["total"])
        reap_dead_runs(self.client, st["experiment_id"], st["parent_run_id"])
        self.client.log_batch(st["parent_run_id"], tags=[RunTag("slnn.summary", line)])
        self.client.set_terminated(st["parent_run_id"], status)
        self._closed = True
        return counts, line

    def _close_interrupted(self) -> None:
        if self.state is not None and not self._closed:
            try:
                _, line = self._close("KILLED")
                print(f"slnn: sweep interrupted: {line}; run the same command again to finish it",
                      file=sys.stderr)
            except Exception:
                pass

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.state is None:
            return
        st = self.state
        entries = Ledger(Path(st["dir"]) / "progress.jsonl").entries()
        counts = Counter(e["outcome"] for e in entries)
        unexpected = sum(v for k, v in counts.items() if k not in EXPECTED)
        counts, line = self._close("FAILED" if unexpected else "FINISHED")
        elapsed = time.time() - st["start"]
        report_note = ""
        if st.get("report"):
            report_note = self._write_report(st)
        print(f"slnn: sweep {st['study']}: {line} in {elapsed:.1f} s; browse: "
              f"mlflow ui --backend-store-uri {st['uri']}{report_note}", flush=True)
        if unexpected:
            sys.exit(1)

    def _write_report(self, st: dict) -> str:
        try:
            from slnn.report import report_for_parent
        except ImportError:
            return ""
        try:
            out = report_for_parent(st["uri"], st["parent_run_id"], attach=True)
            return f"; report: {out}"
        except Exception as e:  # the runs are safe in MLflow; say why there is no report
            return f"; no report ({str(e).splitlines()[0][:200]})"
