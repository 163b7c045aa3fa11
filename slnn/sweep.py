"""Sweeps that never lose a run: the ``slnn`` Hydra sweeper's logic and the job-side ledger.

    slnn-train -m update=input,kronecker optim.lr=0.01,0.1,1.0 seed=range(5) data=iris_petal
    slnn-train -m +experiment=guide_vs_correct hydra/launcher=joblib

``Sweep.prepare`` runs once, in the launching process, before any job starts:
- it enumerates every cell of the grid as Hydra's basic sweeper would, composes and validates
  each, and builds each distinct data set (a bad value or a malformed CSV anywhere fails the sweep
  with one line, before anything runs); composition is cached per choice of config groups;
- it creates and migrates the tracking store and the experiment once, so parallel workers never
  race in SQLite's schema migration;
- it marks runs left RUNNING by dead processes of this host as KILLED;
- it finds the cells that already have a FINISHED run with the same ``slnn.config_hash`` (one
  paged ``search_runs`` query) and leaves them out unless ``sweep.force=true``;
- it opens (or, for the same grid, reopens) the sweep's parent run.
The cells left are dealt into a few chunks; each chunk is one job for Hydra's launcher (basic,
joblib, submitit), so Hydra's per-job cost is paid per chunk, not per cell. Each cell appends its
outcome to the sweep's ledger (``progress.jsonl``) and prints progress with the time left.
``Sweep.finish`` prints one summary line, closes the parent run and writes the report; an
interrupted sweep closes it as KILLED, and running the same command again completes only what is
missing.
"""

from __future__ import annotations

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

# outcomes the study expects; anything else counted as "failed" makes the exit code non-zero
EXPECTED = {"converged", "max_epochs", "early_stopped", "diverged", "shape_mismatch", "skipped"}
# keep each worker to one BLAS / OpenMP / Numba thread: the parallelism is across jobs
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _fail(msg: str) -> None:
    print(f"slnn-train: error: {msg}", file=sys.stderr)
    sys.exit(2)


# --- the grid -------------------------------------------------------------------------------

def sweep_arguments(config: DictConfig, arguments: list[str] | None = None) -> list[str]:
    """The overrides a grid expands: ``hydra.sweeper.params`` then the command line's (a key given
    on the command line replaces the same key of the study's grid, as in Hydra's basic sweeper)."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    args = [f"{k}={v}" for k, v in params.items()]
    if arguments is None:
        arguments = list(OmegaConf.select(config, "hydra.overrides.task") or [])
    return args + list(arguments)


def enumerate_cells(config: DictConfig, arguments: list[str] | None = None) -> list[list[str]]:
    """Every cell's overrides, in the order Hydra's basic sweeper would launch them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(sweep_arguments(config, arguments))
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
    from slnn.data import DataError
    from slnn.train import build_dataset, explain_hydra_error

    parser = OverridesParser.create()
    bases: dict[tuple, DictConfig] = {}
    datasets: dict[str, object] = {}
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
            c = to_config(cfg)
            # build each distinct data set once: a bad CSV fails here, not in a job
            key = json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True)
            if key not in datasets:
                datasets[key] = build_dataset(c)
            out.append((cell, cfg, c))
        except (ConfigError, DataError) as e:
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


def _fmt_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def report_progress(state: dict, name: str, outcome: str, seconds: float,
                    train_seconds: float = 0.0) -> None:
    """Record one finished cell in the ledger and print ``[done/total] name: outcome, time left``."""
    ledger = Ledger(Path(state["dir"]) / "progress.jsonl")
    me = {"name": name, "outcome": outcome, "seconds": round(seconds, 6),
          "train_seconds": round(train_seconds, 6), "pid": os.getpid(), "time": time.time()}
    ledger.add(**me)
    entries = ledger.entries()
    # our own line's place, not the count: two workers finishing together print different numbers
    done = next((i + 1 for i, e in enumerate(entries) if e == me), len(entries))
    total = state["total"]
    done += state["skipped"]
    left = max(total - done, 0)
    elapsed = time.time() - state["start"]
    eta = _fmt_eta(elapsed / len(entries) * left) if entries else "?"
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


# --- the sweep ------------------------------------------------------------------------------

def _chunks(items: list, n: int) -> list[list]:
    """Deal ``items`` round-robin into ``n`` chunks, so each chunk mixes cheap and costly cells."""
    return [c for c in (items[i::n] for i in range(n)) if c]


class Sweep:
    """One multirun, from validation to summary. Driven by ``hydra_plugins.slnn_sweeper``."""

    def __init__(self, config: DictConfig, arguments: list[str], conf_dir: Path):
        self.config, self.arguments, self.conf_dir = config, arguments, conf_dir
        self.state: dict | None = None
        self.client = None

    def prepare(self) -> list[tuple]:
        """Validate every cell, create the store and parent run, write the state; return the cells
        to run as ``(overrides, cfg)``."""
        from slnn import tracking
        from slnn.config import config_hash

        # the launching process's environment is put back when the sweep ends (a notebook goes on)
        self._saved_env = {v: os.environ.get(v) for v in
                           (*THREAD_ENV, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "MLFLOW_TRACKING_URI")}
        for var in THREAD_ENV:
            os.environ.setdefault(var, "1")
        # MLflow prints two "View run" lines per run on an http store; the summary says where to look
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        config = self.config
        config_name = OmegaConf.select(config, "hydra.job.config_name") or "config"
        cell_overrides = enumerate_cells(config, self.arguments)
        cells = compose_cells(config_name, cell_overrides, self.conf_dir)
        if not cells:
            _fail("the sweep has no cells: give at least one override or +experiment=<name>")
        first = cells[0][2]
        uri = tracking.resolve_uri(first.tracking.uri)
        if (len({c.tracking.experiment for _, _, c in cells}) > 1
                or len({tracking.resolve_uri(c.tracking.uri) for _, _, c in cells}) > 1):
            _fail("a sweep records into one store and experiment: do not sweep tracking.uri or "
                  "tracking.experiment")
        try:
            client = tracking.client_for(uri)  # creates and migrates a new SQLite store, once
            exp_id = tracking.ensure_experiment(client, first.tracking.experiment)
            reaped = reap_dead_runs(client, exp_id)
            done = finished_hashes(client, exp_id)
        except tracking.TrackingError as e:
            _fail(str(e))
        except Exception as e:  # noqa: BLE001 - any store failure ends the sweep before it starts
            _fail(f"MLflow at {uri} failed: {(str(e).splitlines() or [type(e).__name__])[0][:300]};"
                  " check the store or set MLFLOW_TRACKING_URI to a reachable one")
        hashes = [config_hash(cfg) for _, cfg, _ in cells]
        force = any(c.sweep.force for _, _, c in cells)
        skip = set(hashes) & done if not force else set()
        study = OmegaConf.select(config, "hydra.runtime.choices.experiment") or "sweep"
        sweep_hash = hashlib.sha256(",".join(sorted(hashes)).encode()).hexdigest()[:16]
        parent = self._open_parent(client, exp_id, study, sweep_hash, force, len(cells))
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        todo = [(ov, cfg) for (ov, cfg, _), h in zip(cells, hashes) if h not in skip]
        # the whole grid on the parent: a report finds cells another sweep had already run
        client.log_text(parent, json.dumps({"hashes": hashes, "overrides": [list(ov) for ov, _, _ in cells]}),
                        "cells.json")
        self.state = {
            "dir": str(sweep_dir), "uri": uri, "experiment_id": exp_id, "parent_run_id": parent,
            "total": len(cells), "skipped": len(cells) - len(todo), "start": time.time(),
            "study": study, "report": bool(first.sweep.report), "force": force,
            "register": bool(first.sweep.register),
        }
        self.client = client
        Ledger(sweep_dir / "progress.jsonl").path.unlink(missing_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = uri  # workers agree on the store whatever their cwd
        note = f"; marked {reaped} dead run(s) KILLED" if reaped else ""
        print(f"slnn: sweep {study}: {len(cells)} cells, {len(cells) - len(todo)} already done and "
              f"skipped, {len(todo)} to run (parent run {parent}){note}", flush=True)
        return todo

    def write_chunks(self, todo: list[tuple], n_chunks: int) -> list[list[str]]:
        """Write the cells to run into chunk files; return one job's overrides per chunk."""
        st = self.state
        folder = Path(st["dir"]) / "cells"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("chunk_*.json"):
            old.unlink()
        state_path = Path(st["dir"]) / "slnn_sweep.json"
        state_path.write_text(json.dumps(st))
        jobs = []
        for k, chunk in enumerate(_chunks(todo, max(1, n_chunks))):
            cells = [{"overrides": list(ov), "config": OmegaConf.to_container(cfg, resolve=True)}
                     for ov, cfg in chunk]
            (folder / f"chunk_{k:04d}.json").write_text(json.dumps(cells))
            jobs.append([f"sweep.state='{state_path}'", f"sweep.chunk={k}"])
        return jobs

    def _open_parent(self, client, exp_id, study, sweep_hash, force, n_cells) -> str:
        from mlflow.entities import RunTag

        if not force:
            prev = client.search_runs([exp_id], filter_string=f"tags.`slnn.sweep_hash` = '{sweep_hash}'",
                                      order_by=["attributes.start_time DESC"], max_results=1)
            if prev:  # the same grid again: resume under the same parent, now this process's
                run_id = prev[0].info.run_id
                client.update_run(run_id, status="RUNNING")
                client.log_batch(run_id, tags=[RunTag("slnn.host", socket.gethostname()),
                                               RunTag("slnn.pid", str(os.getpid()))])
                for stale in ("slnn.outcome", "slnn.reason"):  # left by a reaped interruption
                    if stale in prev[0].data.tags:
                        client.delete_tag(run_id, stale)
                return run_id
        name = f"{study}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = client.create_run(exp_id, run_name=name, tags={
            "mlflow.runName": name, "slnn.sweep": "true", "slnn.study": study,
            "slnn.sweep_hash": sweep_hash, "slnn.n_cells": str(n_cells),
            "slnn.host": socket.gethostname(), "slnn.pid": str(os.getpid())})
        return run.info.run_id

    def _restore_env(self) -> None:
        for var, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value

    def close(self, status: str) -> tuple[Counter, str]:
        self._restore_env()
        st = self.state
        entries = Ledger(Path(st["dir"]) / "progress.jsonl").entries()
        entries += [{"outcome": "skipped"}] * st["skipped"]
        counts, line = summarize(entries, st["total"])
        try:
            reap_dead_runs(self.client, st["experiment_id"], st["parent_run_id"])
        except Exception:  # noqa: BLE001 - the next sweep reaps them; closing the parent matters more
            pass
        error = None
        # an interrupt can leave a worker (or this process's own pool) holding SQLite's write
        # lock for a moment: retry on fresh connections before giving up
        for attempt in range(4):
            try:
                self.client.set_tag(st["parent_run_id"], "slnn.summary", line)
                self.client.set_terminated(st["parent_run_id"], status)
                error = None
                break
            except Exception as e:  # noqa: BLE001
                error = e
                engine = getattr(getattr(getattr(self.client, "_tracking_client", None), "store", None),
                                 "engine", None)
                if engine is not None:
                    engine.dispose()
                time.sleep(0.5 * (attempt + 1))
        if error is not None:  # the summary still reaches the user
            line += f" (could not close the parent run: {(str(error).splitlines() or [''])[0][:200]})"
        return counts, line

    def finish(self) -> int:
        """Summarize, close the parent run, write the report; the exit code (1 if a cell failed)."""
        st = self.state
        entries = Ledger(Path(st["dir"]) / "progress.jsonl").entries()
        # a cell that failed, and a cell that no job ever ran (its job died outside the cells)
        not_run = st["total"] - st["skipped"] - len(entries)
        unexpected = sum(1 for e in entries if e["outcome"] not in EXPECTED) + max(not_run, 0)
        _, line = self.close("FAILED" if unexpected else "FINISHED")
        elapsed = time.time() - st["start"]
        note = self._register() if st.get("register") else ""
        note += self._write_report() if st.get("report") else ""
        print(f"slnn: sweep {st['study']}: {line} in {elapsed:.1f} s; browse: "
              f"mlflow ui --backend-store-uri {st['uri']}{note}", flush=True)
        return 1 if unexpected else 0

    def interrupted(self) -> None:
        _, line = self.close("KILLED")
        print(f"slnn: sweep {self.state['study']} interrupted: {line}; run the same command "
              "again to finish it", file=sys.stderr, flush=True)

    def _register(self) -> str:
        from slnn.registry import RegistryError, register_best

        try:
            name, version, run_id = register_best(self.state["uri"], self.state["parent_run_id"])
        except RegistryError as e:
            return f"; nothing registered ({e})"
        return f"; registered {name} version {version} (run {run_id}) as {name}@best"

    def _write_report(self) -> str:
        st = self.state
        try:
            from slnn.report import report_for_parent
        except ImportError:
            return ""
        try:
            return f"; report: {report_for_parent(st['uri'], st['parent_run_id'], attach=True)}"
        except Exception as e:  # noqa: BLE001 - the runs are safe in MLflow; say why no report
            return f"; no report ({(str(e).splitlines() or [type(e).__name__])[0][:200]})"


def run_chunk(state_path: str, chunk: int) -> int:
    """A launcher job: train every cell of one chunk, in order. Returns how many failed."""
    from slnn.config import Config
    from slnn.train import run_cell

    schema = OmegaConf.structured(Config)
    state = json.loads(Path(state_path).read_text())
    cells = json.loads((Path(state["dir"]) / "cells" / f"chunk_{chunk:04d}.json").read_text())
    failed = 0
    # one BLAS thread per worker: the parallelism is across jobs (numpy may already be loaded,
    # so the environment variables set by the sweep are not enough on their own)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        for cell in cells:
            ok = run_cell(OmegaConf.merge(schema, cell["config"]), state)
            failed += not ok
    return failed
