"""Sweeps that never lose a run: what the ``slnn`` Hydra sweeper does around the launcher.

    slnn-train -m update=input,kronecker optim.lr=0.01,0.1,1.0 seed=range(5) data=iris_petal
    slnn-train -m +experiment=guide_vs_correct hydra/launcher=joblib

``Orchestrator.prepare`` runs once, in the launching process, before any job starts:
- it composes, validates and hashes every cell of the grid (``slnn.sweep.grid``); a bad value or
  a malformed CSV anywhere fails the sweep with one line, before anything runs;
- it creates and migrates the tracking store (under the store's file lock, ``tracking.locks``)
  and the experiment;
- it marks runs left RUNNING by dead processes as KILLED (``tracking.liveness``);
- it finds the cells that already have a FINISHED run with the same ``slnn.config_hash`` (one
  paged ``search_runs`` query) and leaves them out unless ``sweep.force=true``;
- it opens (or, for the same grid, reopens) the sweep's parent run; while another live sweep
  runs the same grid it opens its own, with its own ledger and report folder (``claims``).
The cells left are dealt into a few chunks; each chunk is one job for Hydra's launcher (basic,
joblib, submitit), so Hydra's per-job cost is paid per chunk, not per cell
(``slnn.sweep.worker`` runs a chunk; ``slnn.sweep.ledger`` records each cell).
``Orchestrator.finish`` prints one summary line, closes the parent run and writes the report; an
interrupted sweep closes it as KILLED, and running the same command again completes only what is
missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from slnn.core.outcomes import EXPECTED, Outcome
from slnn.sweep.grid import compose_cells, enumerate_cells, fail
from slnn.sweep.ledger import Ledger, summarize
from slnn.tracking.faults import describe, mask

# keep each worker to one BLAS / OpenMP / Numba thread: the parallelism is across jobs
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


# --- the sweep ------------------------------------------------------------------------------

def _chunks(items: list, n: int) -> list[list]:
    """Deal ``items`` round-robin into ``n`` chunks, so each chunk mixes cheap and costly cells."""
    return [c for c in (items[i::n] for i in range(n)) if c]


class Orchestrator:
    """One multirun, from validation to summary. Driven by ``hydra_plugins.slnn_sweeper``."""

    def __init__(self, config: DictConfig, arguments: list[str]):
        self.config, self.arguments = config, arguments
        self.state: dict | None = None
        self.client = None

    def prepare(self) -> list:
        """Validate every cell, create the store and parent run, write the state; return the
        ``grid.Cell``s to run."""
        from slnn.tracking import store
        from slnn.tracking.runs import finished_hashes, reap_dead_runs

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
        cells = compose_cells(config_name, cell_overrides,
                              OmegaConf.select(config, "hydra.searchpath"))
        if not cells:
            fail("the sweep has no cells: give at least one override or +experiment=<name>")
        first = cells[0].config
        uri = store.resolve_uri(first.tracking.uri)
        if (len({c.config.tracking.experiment for c in cells}) > 1
                or len({store.resolve_uri(c.config.tracking.uri) for c in cells}) > 1):
            fail("a sweep records into one store and experiment: do not sweep tracking.uri or "
                  "tracking.experiment")
        hashes = [c.hash for c in cells]
        force = any(c.config.sweep.force for c in cells)
        study = OmegaConf.select(config, "hydra.runtime.choices.experiment") or "sweep"
        sweep_hash = hashlib.sha256(",".join(sorted(hashes)).encode()).hexdigest()[:16]
        try:
            client = store.client_for(uri)  # creates and migrates a new SQLite store, once
            exp_id = store.ensure_experiment(client, first.tracking.experiment)
            reaped = reap_dead_runs(client, exp_id)
            done = finished_hashes(client, exp_id)
            parent, other = self._open_parent(client, exp_id, study, sweep_hash, force, len(cells))
            # the whole grid on the parent: a report finds cells another sweep had already run
            client.log_text(parent, json.dumps({"hashes": hashes,
                                                "overrides": [c.overrides for c in cells]}),
                            "cells.json")
        except store.TrackingError as e:
            fail(str(e))
        except Exception as e:  # noqa: BLE001 - any store failure ends the sweep before it starts
            fail(describe(uri, e, "preparing the sweep"))
        skip = set(hashes) & done if not force else set()
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        if other is not None:  # its ledger and chunk files must not be the other sweep's
            sweep_dir = sweep_dir / f"concurrent-{parent[:8]}"
        sweep_dir.mkdir(parents=True, exist_ok=True)
        todo = [c for c in cells if c.hash not in skip]
        self.state = {
            "dir": str(sweep_dir), "uri": uri, "experiment_id": exp_id, "parent_run_id": parent,
            "total": len(cells), "n_skipped": len(cells) - len(todo), "start": time.time(),
            "study": study, "report": bool(first.sweep.report), "force": force,
            "register": bool(first.sweep.register),
            # a concurrent sweep of the same grid writes its report beside the other's, not over it
            "report_out": (str(Path("reports") / f"{study}-{parent[:8]}")
                           if other is not None and study != "sweep" else None),
        }
        self.client = client
        Ledger(sweep_dir / "progress.jsonl").path.unlink(missing_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = uri  # workers agree on the store whatever their cwd
        note = f"; marked {reaped} dead run(s) KILLED" if reaped else ""
        if other is not None:
            t = other.data.tags
            note += (f"; another sweep of the same grid is running (parent run {other.info.run_id},"
                     f" pid {t.get('slnn.pid', '?')} on {t.get('slnn.host', '?')}): this one has "
                     "its own parent, leaves the cells that sweep has claimed to it, and writes "
                     "its own report")
        print(mask(f"slnn: sweep {study}: {len(cells)} cells, {len(cells) - len(todo)} already done"
                   f" and skipped, {len(todo)} to run (parent run {parent}){note}"), flush=True)
        return todo

    def write_chunks(self, todo: list, n_chunks: int) -> list[list[str]]:
        """Write the cells to run into chunk files (and keep them in memory for jobs that run in
        this process); return one job's overrides per chunk."""
        from slnn.sweep.worker import PREPARED

        st = self.state
        folder = Path(st["dir"]) / "cells"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("chunk_*.json"):
            old.unlink()
        state_path = Path(st["dir"]) / "slnn_sweep.json"
        state_path.write_text(json.dumps(st))
        jobs = []
        for k, chunk in enumerate(_chunks(todo, max(1, n_chunks))):
            cells = [{"overrides": c.overrides, "hash": c.hash,
                      "config": OmegaConf.to_container(c.cfg, resolve=True)} for c in chunk]
            (folder / f"chunk_{k:04d}.json").write_text(json.dumps(cells))
            PREPARED[(str(state_path), k)] = [(c.cfg, c.config, c.hash) for c in chunk]
            jobs.append([f"sweep.state='{state_path}'", f"sweep.chunk={k}"])
        return jobs

    def _open_parent(self, client, exp_id, study, sweep_hash, force, n_cells):
        """(parent run id, a concurrent sweep's live parent run or None): ``claims.open_parent``."""
        from slnn.sweep.claims import open_parent

        name = f"{study}-{time.strftime('%Y%m%d-%H%M%S')}"
        return open_parent(client, exp_id, sweep_hash, force, {
            "mlflow.runName": name, "slnn.sweep": "true", "slnn.study": study,
            "slnn.sweep_hash": sweep_hash, "slnn.n_cells": str(n_cells)})

    def _restore_env(self) -> None:
        for var, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value

    def close(self, status: str) -> tuple[Counter, str]:
        from slnn._compat import dispose_store_connections
        from slnn.tracking.liveness import stop
        from slnn.tracking.runs import reap_dead_runs

        self._restore_env()
        st = self.state
        entries = Ledger(Path(st["dir"]) / "progress.jsonl").entries()
        entries += [{"outcome": Outcome.SKIPPED}] * st["n_skipped"]
        counts, line = summarize(entries, st["total"])
        stop(st["parent_run_id"])
        # an interrupted sweep's workers may take a moment to die: reap their runs as they go
        for _ in range(12 if status == "KILLED" else 1):
            try:
                reap_dead_runs(self.client, st["experiment_id"], st["parent_run_id"])
                if status != "KILLED" or not self.client.search_runs(
                        [st["experiment_id"]], max_results=1, filter_string="attributes.status ="
                        f" 'RUNNING' and tags.mlflow.parentRunId = '{st['parent_run_id']}'"):
                    break
            except Exception:  # noqa: BLE001 - the next command reaps them; the parent matters more
                break
            time.sleep(0.25)
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
                dispose_store_connections(self.client)
                time.sleep(0.5 * (attempt + 1))
        if error is not None:  # the summary still reaches the user
            line += f" (could not close the parent run: {(str(error).splitlines() or [''])[0][:200]})"
        return counts, line

    def finish(self) -> int:
        """Summarize, close the parent run, write the report; the exit code (1 if a cell failed)."""
        st = self.state
        entries = Ledger(Path(st["dir"]) / "progress.jsonl").entries()
        # a cell that failed, and a cell that no job ever ran (its job died outside the cells)
        not_run = st["total"] - st["n_skipped"] - len(entries)
        unexpected = sum(1 for e in entries if e["outcome"] not in EXPECTED) + max(not_run, 0)
        _, line = self.close("FAILED" if unexpected else "FINISHED")
        elapsed = time.time() - st["start"]
        note = self._register() if st.get("register") else ""
        note += self._write_report() if st.get("report") else ""
        print(mask(f"slnn: sweep {st['study']}: {line} in {elapsed:.1f} s; browse: "
                   f"mlflow ui --backend-store-uri {st['uri']}{note}"), flush=True)
        return 1 if unexpected else 0

    def interrupted(self, e: BaseException | None = None) -> None:
        from slnn.app import signals

        _, line = self.close("KILLED")
        if isinstance(e, KeyboardInterrupt):
            how = signals.what(e)
        else:  # e.g. joblib's TerminatedWorkerError when a worker was killed
            first = (str(e).strip().splitlines() or [""])[0][:200]
            how = f"interrupted ({type(e).__name__}: {first})" if e is not None else "interrupted"
        print(f"slnn: sweep {self.state['study']} {how}: {line}; run the same command "
              "again to finish it", file=sys.stderr, flush=True)
        signals.reported = True

    def _register(self) -> str:
        from slnn.tracking.model_registry import RegistryError, register_best

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
            return "; report: " + str(report_for_parent(st["uri"], st["parent_run_id"], attach=True,
                                                        out=st.get("report_out")))
        except Exception as e:  # noqa: BLE001 - the runs are safe in MLflow; say why no report
            return f"; no report ({(str(e).splitlines() or [type(e).__name__])[0][:200]})"
