"""The launching side of a sweep, driven by the ``slnn`` Hydra sweeper: ``Orchestrator.prepare``
validates and hashes every cell (``slnn.sweep.grid``), opens the store, reaps dead runs, plans
what to run (``slnn.sweep.resume``) and opens or reopens the parent run (``slnn.sweep.claims``);
``write_chunks`` deals the cells to the launcher's jobs (``slnn.sweep.worker``); ``finish``
prints the summary, closes the parent and writes the report; an interrupted sweep closes it as
KILLED. What a user sees, and how a rerun resumes: docs/sweeps.md."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import gc
import json
import math
import os
import shlex
import shutil
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from slnn.core.outcomes import EXPECTED, Outcome
from slnn.sweep import folder as sweep_folder
from slnn.sweep.attempt import GONE_FILE
from slnn.sweep.grid import compose_cells, enumerate_cells, fail, study_question
from slnn.sweep.ledger import Ledger, summarize
from slnn.sweep.state import SweepState
from slnn.tracking.console import (browse_command, portable, relative, report_command, say,
                                   sweep_url)
from slnn.tracking.faults import describe, mask
from slnn.tracking.liveness import process_owner

# keep each worker to one BLAS / OpenMP / Numba thread: the parallelism is across jobs
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


# --- the sweep ------------------------------------------------------------------------------

def _command() -> str:
    """The command that ran this sweep, as typed but with paths below the working folder relative
    to it (a report's header shows how to run it again, from that folder, on any machine)."""
    return mask(portable(shlex.join(["slnn-train", *sys.argv[1:]])))[:5000]


def _sqlite_file(uri: str) -> str | None:
    from slnn.tracking.locks import sqlite_path

    path = sqlite_path(uri)
    return None if path is None else str(path)


def _store_file(uri: str) -> list[int] | None:
    """``[device, inode]`` of a SQLite store's file (None: not SQLite, or no such file): the same
    at a sweep's end as at its start unless the file was deleted or replaced meanwhile."""
    path = _sqlite_file(uri)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def _chunks(items: list, n: int) -> list[list]:
    """Deal ``items`` round-robin into ``n`` chunks, so each chunk mixes cheap and costly cells."""
    return [c for c in (items[i::n] for i in range(n)) if c]


def _for_job(cell):
    """What a chunk file holds of a cell: the cell without its plain container, a password in its
    ``tracking.uri`` and overrides masked (the job puts the real URI back, ``worker.real_uri``)."""
    config = cell.config
    if mask(config.tracking.uri) != config.tracking.uri:
        config = copy.deepcopy(config)
        config.tracking.uri = mask(config.tracking.uri)
    return dataclasses.replace(cell, config=config, container=None,
                               overrides=[mask(o) for o in cell.overrides])


def _mask_strings(node) -> None:
    """Mask, in place, every string of a config (raw: interpolations are left as written) that
    holds a credential (``faults.mask``)."""
    from omegaconf import DictConfig, ListConfig, read_write

    from slnn._compat import omegaconf_raw

    with read_write(node):
        keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
        for key in keys:
            value = omegaconf_raw(node, key)
            if isinstance(value, (DictConfig, ListConfig)):
                _mask_strings(value)
                continue
            if isinstance(value, str) and mask(value) != value:
                node[key] = mask(value)


def mask_launch_config(config: DictConfig) -> None:
    """The sweep's own config, and Hydra's copy of it, with a password in any value (tracking.uri,
    its command-line override) masked: a launcher pickles them for its jobs, and submitit writes
    that pickle into the sweep folder (``.submitit/<job>/*_submitted.pkl``). A job composes its
    config from the job's overrides alone and takes the real URI from its environment
    (``MLFLOW_TRACKING_URI``, which ``set_env`` sets and submitit's local and SLURM jobs inherit;
    ``worker.real_uri``)."""
    from hydra.core.hydra_config import HydraConfig

    _mask_strings(config)
    if HydraConfig.initialized():  # Singleton state: pickled with each submitit job
        _mask_strings(HydraConfig.instance().cfg)


def drop_sweeper_overrides(config: DictConfig) -> None:
    """Leave the sweeper's own command-line overrides (``hydra.sweeper.params.seed=...``,
    ``hydra.sweeper.search.trials=...``) out of the config the launcher composes each job's
    from: a job runs cells, it does not sweep, and its composition lacks the study
    (``+experiment=...`` is not one of its overrides), so a key the study added to
    ``hydra.sweeper.params`` "could not be overridden" there and every job failed."""
    from omegaconf import read_write

    from hydra.core.hydra_config import HydraConfig

    def keep(o) -> bool:
        return not str(o).lstrip("+~").startswith("hydra.sweeper.")

    for cfg in (config, HydraConfig.instance().cfg if HydraConfig.initialized() else None):
        hydra_node = cfg.get("hydra") if cfg is not None else None
        if hydra_node is None or "hydra" not in hydra_node.get("overrides", {}):
            continue
        with read_write(hydra_node.overrides):
            hydra_node.overrides.hydra = [o for o in hydra_node.overrides.hydra if keep(o)]


def _rule_digests(cells) -> dict:
    """``{file: sha256}`` of the user's rule files the grid was validated with (update=custom):
    jobs run exactly these bytes (``loader.pinned``), and the sweep's report may check them."""
    from slnn.core.rulefile import parse_spec

    out = {}
    for c in cells:
        if c.rule_digest:
            path = str(Path(parse_spec(c.config.update.fn)[0]).resolve())
            if out.setdefault(path, c.rule_digest) != c.rule_digest:
                fail(f"{path} changed while the sweep was being checked: run it again")
    return out


def release_interrupted(e: BaseException | None) -> None:
    """Free what the code an interrupt stopped still holds through the exception's traceback.

    Ctrl-C can land anywhere in a cell that runs in this process, also between a store write and
    its commit or rollback; the frames of that code stay alive with the traceback, and with them
    a SQLite connection whose open transaction holds the store's write lock, so the sweep could
    not close its parent run. Clearing the finished frames' locals and collecting drops that
    connection, which rolls its transaction back."""
    import traceback

    if e is not None and e.__traceback__ is not None:
        traceback.clear_frames(e.__traceback__)
        for linked in (e.__context__, e.__cause__):
            if linked is not None and linked.__traceback__ is not None:
                traceback.clear_frames(linked.__traceback__)
    gc.collect()


_CHILD_TAGS = ("slnn.config_hash", "slnn.outcome", "slnn.update", "slnn.link_to")
_CHILD_METRICS = ("final/val_loss", "final/val_error", "val_loss", "val_error")


def child_runs(uri: str, client, experiment_id: str, parent_run_id: str) -> list:
    """The parent's children as ``model_registry.ChildRun``s, for a sweep's close: on a SQL
    store one query of the few columns needed (a 10,080-cell sweep's close read every child
    whole through ``search_runs``: 73 s and 1.1 GB), else paged ``search_runs``."""
    from slnn.report.source import _sql_scheme, _tables
    from slnn.tracking.model_registry import ChildRun
    from slnn.tracking.runs import iter_runs

    db = _sqlite_file(uri)
    if not _sql_scheme(uri) or (db is not None and not os.path.exists(db)):
        # a SQLite file deleted mid-sweep: a new engine would create an empty one in its place
        # (and the close would call the store replaced, not deleted); MLflow's own still holds it
        return [ChildRun.of(r) for r in iter_runs(client, [experiment_id],
                                                  f"tags.mlflow.parentRunId = '{parent_run_id}'")]
    from sqlalchemy import create_engine, select

    runs, tags, _, latest = _tables()
    kids = select(tags.c.run_uuid).where(tags.c.key == "mlflow.parentRunId",
                                         tags.c.value == parent_run_id)
    engine = create_engine(uri)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(runs.c.run_uuid, runs.c.status, runs.c.start_time).where(
                runs.c.run_uuid.in_(kids), runs.c.lifecycle_stage == "active")).all()
            got_tags: dict = {r[0]: {} for r in rows}
            got_metrics: dict = {r[0]: {} for r in rows}
            for run_id, k, v in conn.execute(select(tags.c.run_uuid, tags.c.key, tags.c.value)
                                             .where(tags.c.run_uuid.in_(kids),
                                                    tags.c.key.in_(_CHILD_TAGS))):
                got_tags.setdefault(run_id, {})[k] = v
            for run_id, k, v, nan in conn.execute(
                    select(latest.c.run_uuid, latest.c.key, latest.c.value, latest.c.is_nan)
                    .where(latest.c.run_uuid.in_(kids), latest.c.key.in_(_CHILD_METRICS))):
                got_metrics.setdefault(run_id, {})[k] = math.nan if nan else float(v)
    finally:
        engine.dispose()
    out = []
    for run_id, status, start in rows:
        t, m = got_tags[run_id], got_metrics[run_id]
        out.append(ChildRun(run_id, t.get("slnn.config_hash", run_id), int(start or 0),
                            status == "FINISHED", t.get("slnn.outcome"), t.get("slnn.update"),
                            m.get("final/val_loss", m.get("val_loss", math.nan)),
                            m.get("final/val_error", m.get("val_error", math.nan)),
                            t.get("slnn.link_to")))
    return out


def close_summary(uri: str, parent_run_id: str) -> dict:
    """What a sweep's close logs on its parent, from ``child_runs``: the outcome counts and each
    rule's best validation error (what ``benchmarks/bench_scale.py`` times)."""
    from slnn.tracking.store import client_for

    client = client_for(uri, write=False)
    exp = client.get_run(parent_run_id).info.experiment_id
    return _summary(child_runs(uri, client, exp, parent_run_id))[0]


def _summary(children: list) -> tuple[dict, list, int]:
    """(the parent's numbers, the newest finished child of each cell, how many cells have one)."""
    from slnn.core.outcomes import TRAINED
    from slnn.tracking.model_registry import keep_newest

    newest: dict = {}  # by config hash, whatever its status
    newest_finished: dict = {}
    for cell in children:
        keep_newest(newest, cell)
        if cell.finished:
            keep_newest(newest_finished, cell)
    outcomes = Counter(c.outcome for c in newest.values())
    values = {"finished": sum(outcomes[o] for o in TRAINED)}
    for o in (Outcome.DIVERGED, Outcome.SHAPE_MISMATCH, Outcome.FAILED, Outcome.KILLED):
        values[str(o)] = outcomes[o]
    if outcomes[Outcome.PRUNED]:  # a search's (slnn.sweep.tune)
        values[str(Outcome.PRUNED)] = outcomes[Outcome.PRUNED]
    best: dict[str, float] = {}
    for c in newest.values():
        if c.outcome in TRAINED and not math.isnan(c.val_error) and c.update:
            best[c.update] = min(c.val_error, best.get(c.update, c.val_error))
    values.update({f"best_val_error.{rule}": v for rule, v in best.items()})
    return values, list(newest_finished.values()), len(newest_finished)


class Orchestrator:
    """One multirun, from validation to summary. Driven by ``hydra_plugins.slnn_sweeper``."""

    def __init__(self, config: DictConfig, arguments: list[str]):
        self.config, self.arguments = config, arguments
        self.state: SweepState | None = None
        self.client = None

    def set_env(self) -> None:
        """One thread per worker, MLflow's per-run URL lines off; before any worker starts
        (``warm.start``), and put back when the sweep ends (a notebook goes on)."""
        if hasattr(self, "_saved_env"):
            return
        from slnn.tracking.console import suppress_run_urls

        self._saved_env = {v: os.environ.get(v) for v in (*THREAD_ENV, "MLFLOW_TRACKING_URI")}
        for var in THREAD_ENV:
            os.environ.setdefault(var, "1")
        # MLflow prints two "View run" lines per run on an http store, with the URI's password;
        # the summary says where to look, masked. Not put back: the parent closes after this
        suppress_run_urls()
        # the sweep's files hold a password in tracking.uri masked: its jobs (joblib's start now)
        # take the real URI from their environment (``worker.real_uri``); a URI already there
        # is the store (it wins over tracking.uri) and is inherited as it is
        given = OmegaConf.select(self.config, "tracking.uri")
        if isinstance(given, str) and mask(given) != given \
                and not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ["MLFLOW_TRACKING_URI"] = given

    def prepare(self, cell_overrides: list[list[str]] | None = None,
                identity: str | None = None) -> list:
        """Validate every cell, create the store and parent run, write the state; return the
        ``grid.Cell``s to run. A search (``slnn.sweep.tune``) gives its arms' first cells and its
        ``identity``: they are validated and find the parent, and its cells come later
        (``extend``)."""
        from slnn.sweep.resume import plan
        from slnn.tracking import store
        from slnn.tracking.provenance import code_hash
        from slnn.tracking.runs import finished_runs, link_to_parent, reap_dead_runs

        self.set_env()
        config = self.config
        if cell_overrides is None:
            cell_overrides = enumerate_cells(config, self.arguments)
        cells = self.compose(cell_overrides)
        if not cells:
            fail("the sweep has no cells: an axis has no values (range(0)?), or nothing was "
                 "swept: give each axis a value, or an override, or +experiment=<name>")
        first = cells[0].config
        if first.sweep.report_grid and identity is None:
            fail(f"sweep.report_grid={first.sweep.report_grid}: only a tuned study's report is "
                 "compared with a grid (hydra.sweeper.search); drop sweep.report_grid")
        uri = store.resolve_uri(first.tracking.uri)
        if (len({c.config.tracking.experiment for c in cells}) > 1
                or len({store.resolve_uri(c.config.tracking.uri) for c in cells}) > 1):
            fail("a sweep records into one store and experiment: do not sweep tracking.uri or "
                  "tracking.experiment")
        # the folder is this grid's, or the sweep stops here: another grid's files stay as they are
        sweep_root = Path(config.hydra.sweep.dir).resolve()
        grid = sweep_folder.grid_id([c.hash for c in cells], uri, first.tracking.experiment)
        sweep_folder.claim(sweep_root, grid, _command(), len(cells))
        try:
            client = store.client_for(uri)  # creates and migrates a new SQLite store, once
            exp_id = store.ensure_experiment(client, first.tracking.experiment)
            reaped = reap_dead_runs(client, exp_id)
            finished = finished_runs(client, exp_id)
        except store.TrackingError as e:
            fail(str(e))
        except Exception as e:  # noqa: BLE001 - any store failure ends the sweep before it starts
            fail(describe(uri, e, "preparing the sweep"))
        force = any(c.config.sweep.force for c in cells)
        reuse_other_code = any(c.config.sweep.reuse_other_code for c in cells)
        code = code_hash()
        the_plan = plan(cells, finished, code, force=force, reuse_other_code=reuse_other_code)
        study = OmegaConf.select(config, "hydra.runtime.choices.experiment") or "sweep"
        # the same grid on the same data with the same code reopens its parent
        keys = sorted(f"{c.hash}:{c.data_digest}" + (f":{c.rule_digest}" if c.rule_digest else "")
                      for c in cells)
        if identity is not None:  # a search: its settings too, and none of these cells is run
            keys, the_plan.todo, the_plan.reused = [identity, *keys], [], {}
        sweep_hash = hashlib.sha256(",".join([code, *keys]).encode()).hexdigest()[:16]
        question = study_question(study, OmegaConf.select(config, "hydra.searchpath"))
        try:
            parent, label, other = self._open_parent(client, exp_id, study, sweep_hash, force,
                                                     len(cells), question)
            for reused in the_plan.reused.values():  # the UI, the report and the summary count them
                link_to_parent(client, exp_id, reused.run_id, parent)
            # the whole grid on the parent: a report finds cells another sweep had already run
            if identity is None:  # a search's, as it ends (``extend`` collects them)
                self._log_cells(client, parent, cells)
        except store.TrackingError as e:
            fail(str(e))
        except Exception as e:  # noqa: BLE001
            fail(describe(uri, e, "opening the sweep's parent run"))
        sweep_folder.name(sweep_root, grid, label, parent)
        sweep_dir = sweep_root
        if other is not None:  # its ledger and chunk files must not be the other sweep's
            sweep_dir = sweep_dir / f"concurrent-{parent[:8]}"
        sweep_dir.mkdir(parents=True, exist_ok=True)
        resumed = self._hydra_files(client, parent, sweep_dir)
        for i, c in enumerate(cells):
            c.index = i  # the cell's place in the grid: its folder's number, the same every rerun
        todo = the_plan.todo
        self.all_cells = [] if identity is not None else cells
        self.state = SweepState(
            dir=str(sweep_dir), uri=uri, experiment_id=exp_id, parent_run_id=parent,
            total=len(self.all_cells), n_skipped=len(self.all_cells) - len(todo),
            start=time.time(), sweep_hash=sweep_hash,
            study=study, label=label, report=bool(first.sweep.report), force=force,
            reuse_other_code=reuse_other_code, register=bool(first.sweep.register),
            log_best_model=first.tracking.log_model is not False,
            rule_digests=_rule_digests(cells),
            # a named study's report goes into the sweep's own folder (a concurrent sweep of the
            # same grid has its own), never over the committed reports/<study>/; an ad-hoc grid's
            # into reports/sweep-<parent id 8>/ (slnn.report.default_out)
            report_out=str(sweep_dir / "report") if study != "sweep" else None,
            report_grid=(str(Path(first.sweep.report_grid).resolve())
                         if first.sweep.report_grid else None),
            store_file=_store_file(uri),
            launcher=process_owner())  # a job whose launcher died stops (worker)
        self.client = client
        Ledger(sweep_dir / "progress.jsonl").path.unlink(missing_ok=True)
        (sweep_dir / GONE_FILE).unlink(missing_ok=True)  # an earlier session's outage
        os.environ["MLFLOW_TRACKING_URI"] = uri  # workers agree on the store whatever their cwd
        note = f"; marked {reaped} dead run(s) KILLED" if reaped else ""
        if other is not None:
            t = other.data.tags
            note += (f"; another sweep of the same grid is running (parent run {other.info.run_id},"
                     f" pid {t.get('slnn.pid', '?')} on {t.get('slnn.host', '?')}): this one has "
                     "its own parent, leaves the cells that sweep has claimed to it, and writes "
                     "its own report")
        note += resumed
        where = f"; each cell's overrides and log: {relative(sweep_dir / 'cells')}/" if todo else ""
        if identity is not None:
            print(mask(f"slnn: sweep {label}: a search of {len(cells)} arm(s) (parent run "
                       f"{parent}){note}"), flush=True)
            return []
        print(mask(f"slnn: sweep {label}: {len(cells)} cells: {the_plan.line()}; {len(todo)} to "
                   f"run (parent run {parent}){note}{where}"), flush=True)
        return todo

    def _log_cells(self, client, parent: str, cells) -> None:
        client.log_text(parent, json.dumps({"hashes": [c.hash for c in cells], "overrides": [
            [mask(o) for o in c.overrides] for c in cells]}), "cells.json")

    def extend(self, cell_overrides: list[list[str]], extra: list[dict], what: str) -> list:
        """More cells of this sweep (a search's next batch of trials, its confirmation): each
        composed, validated and hashed, with its ``extra`` (``tags``, ``trial``); the ones with no
        matching finished run are returned to run, the others linked to the parent as a grid's
        are. ``last_cells`` holds them all, in order."""
        from slnn.sweep.resume import plan
        from slnn.tracking.provenance import code_hash
        from slnn.tracking.runs import finished_runs, link_to_parent

        st = self.state
        cells = self.compose(cell_overrides)
        for i, (c, x) in enumerate(zip(cells, extra)):
            c.index, c.tags, c.trial = len(self.all_cells) + i, dict(x.get("tags", {})), x.get("trial")
        the_plan = self._retried(lambda: plan(
            cells, finished_runs(self.client, st.experiment_id), code_hash(), force=st.force,
            reuse_other_code=st.reuse_other_code), 3)
        for reused in the_plan.reused.values():
            self._retried(lambda r=reused: link_to_parent(self.client, st.experiment_id, r.run_id,
                                                          st.parent_run_id), 3)
        self.all_cells += cells
        self.last_cells = cells
        st.total += len(cells)
        st.n_skipped += len(cells) - len(the_plan.todo)
        say(mask(f"slnn: sweep {st.label}: {what}: {len(cells)} cells: {the_plan.line()}; "
                 f"{len(the_plan.todo)} to run"), sys.stdout)
        return the_plan.todo

    def remember(self, cell_overrides: list[list[str]]) -> None:
        """Cells of this sweep an earlier session ran (a resumed search's trials): listed in the
        parent's ``cells.json`` with the rest, not run."""
        known = {c.hash for c in self.all_cells}
        self.all_cells += [c for c in self.compose(cell_overrides) if c.hash not in known]

    def compose(self, cell_overrides: list[list[str]]) -> list:
        """``grid.compose_cells`` for this sweep's config and search path."""
        config_name = OmegaConf.select(self.config, "hydra.job.config_name") or "config"
        return compose_cells(config_name, cell_overrides,
                             OmegaConf.select(self.config, "hydra.searchpath"))

    def results(self, cells) -> dict[str, tuple[str, float | None, float | None]]:
        """``{config hash: (outcome, final validation error, final validation loss)}`` of
        ``cells``' newest finished runs:
        under this sweep's parent (a reused run's link carries its figures), or, for a cell a
        concurrent sweep ran (its claim), wherever it is in the experiment."""
        from slnn.tracking.model_registry import ChildRun
        from slnn.tracking.runs import iter_runs

        st, want = self.state, {c.hash for c in cells}
        found: dict[str, tuple[int, str, float | None, float | None]] = {}

        def keep(children) -> None:
            for c in children:
                if c.finished and c.config_hash in want and (
                        c.config_hash not in found or c.start_time > found[c.config_hash][0]):
                    found[c.config_hash] = (c.start_time, c.outcome or "", c.val_error,
                                            c.val_loss)

        keep(self._retried(lambda: child_runs(st.uri, self.client, st.experiment_id,
                                              st.parent_run_id), 3))
        search = {c.hash: (getattr(c, "tags", None) or {}).get("slnn.search") for c in cells}
        for h in sorted(want - set(found)):  # a concurrent sweep's run: of the same search
            same = f" and tags.`slnn.search` = '{search[h]}'" if search.get(h) else ""
            keep(self._retried(lambda h=h, same=same: [ChildRun.of(r) for r in iter_runs(
                self.client, [st.experiment_id], f"tags.`slnn.config_hash` = '{h}' and "
                f"attributes.status = 'FINISHED'{same}")], 3))
        return {h: (o, err, loss) for h, (_, o, err, loss) in found.items()}

    def _hydra_files(self, client, parent: str, sweep_dir: Path) -> str:
        """Hydra's ``multirun.yaml`` in the sweep folder (each cell's ``.hydra/`` is written by
        its job, ``worker.write_cell_folder``), a password masked; and for a resumed sweep (its
        parent reopened, its folder a new one) a link ``previous`` to the folder the sweep ran
        in before. The note for the start line: where the earlier session's files are."""
        (sweep_dir / "multirun.yaml").write_text(mask(OmegaConf.to_yaml(self.config)))
        try:
            before = client.get_run(parent).data.tags.get("slnn.sweep_dir")
            client.set_tag(parent, "slnn.sweep_dir", str(sweep_dir))
        except Exception:  # noqa: BLE001 - a link is a convenience: the sweep goes on
            return ""
        if not before:
            return ""
        if Path(before) == sweep_dir:
            return f"; continues in its folder {relative(sweep_dir)}"
        if not Path(before).is_dir():
            return ""
        link = sweep_dir / "previous"
        if not link.is_symlink() and not link.exists():
            link.symlink_to(before, target_is_directory=True)
        return f"; resumes the sweep of {relative(before)} (linked as {relative(link)})"

    def write_chunks(self, todo: list, n_chunks: int, shared: bool = False) -> list[list[str]]:
        """Write the cells to run for ``n_chunks`` launcher jobs (pickled ``grid.Cell``s: a job
        runs them as they are, unchecked again); return one job's overrides per job.

        ``shared=False``: the cells are dealt round-robin into one chunk file per job, and each
        job trains its own chunk (a SLURM or submitit job: its share, and so its time limit,
        is known when it is submitted). ``shared=True``: every job takes its next cell from one
        list, the first job free takes the next cell not yet taken (``worker.take``), so jobs
        that are always running (joblib's workers) finish together whatever each cell costs."""
        import pickle

        from slnn.app.schema import run_name

        st = self.state
        folder = Path(st.dir) / "jobs"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("chunk_*.pkl"):
            old.unlink()
        # a shared list's marks live in a folder of this session's own: a joblib worker left
        # running by an earlier session of this sweep (its launcher killed with kill -9) finds
        # its folder gone at its next take and stops, instead of taking this session's cells
        for old in folder.glob("taken*"):
            shutil.rmtree(old, ignore_errors=True)
        st.taken = f"taken-{uuid.uuid4().hex[:12]}" if shared else None
        for c in todo:  # each cell's folder is made by the job, when the cell's turn comes
            c.folder = f"{c.index:04d}-{run_name(c.config)}"
        state_path = Path(st.dir) / "slnn_sweep.json"
        st.shared = bool(shared)
        # the files of a sweep's folder hold no secret: a password in the store's URI is masked
        # there, and each job takes the real URI from its own config or environment (``worker``)
        st.save(state_path, mask(st.uri))
        mask_launch_config(self.config)  # what the launcher pickles for its jobs, too
        drop_sweeper_overrides(self.config)
        self.todo_folders = [c.folder for c in todo]
        self.dealt = getattr(self, "dealt", []) + self.todo_folders  # every launch's (a search's)
        n_jobs = max(1, min(n_chunks, len(todo)))
        chunks = [todo] if shared else _chunks(todo, n_jobs)
        if shared:
            (folder / st.taken).mkdir()
        for k, chunk in enumerate(chunks):
            (folder / f"chunk_{k:04d}.pkl").write_bytes(pickle.dumps([_for_job(c) for c in chunk]))
        # a job runs many cells: Hydra's folder per job (a .hydra/ of internal keys, an empty
        # log) would mislabel them; each cell has its own folder under cells/ instead
        return [[f"sweep.state='{state_path}'", f"sweep.chunk={k}", "hydra.output_subdir=null",
                 "hydra.sweep.subdir=."] for k in range(n_jobs if shared else len(chunks))]

    def _open_parent(self, client, exp_id, study, sweep_hash, force, n_cells,
                     question) -> tuple[str, str, object]:
        """(parent run id, its name, a concurrent sweep's live parent run or None):
        ``claims.open_parent``. The name is what the sweep is called in its lines and the UI, and
        what ``slnn-report --parent-run`` takes."""
        from slnn.sweep.claims import open_parent
        from slnn.tracking.provenance import source_tags

        name = f"{study if study != 'sweep' else 'grid'}-{time.strftime('%Y%m%d-%H%M%S')}"
        tags = {"mlflow.runName": name, "slnn.sweep": "true", "slnn.study": study,
                "slnn.sweep_hash": sweep_hash, "slnn.n_cells": str(n_cells),
                "slnn.command": _command(), **source_tags()}
        if question:  # the UI shows it as the parent run's description
            tags["mlflow.note.content"] = f"{study}: {question}"
        return open_parent(client, exp_id, sweep_hash, force, tags,
                           reopen_tags={"slnn.command": tags["slnn.command"]})

    def _restore_env(self) -> None:
        for var, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value

    def _retried(self, step, attempts: int):
        """``step()``'s value, tried ``attempts`` times on fresh connections (an interrupt can
        leave a worker, or this process's own pool, holding SQLite's write lock a moment); the
        last attempt's error is raised."""
        from slnn._compat import dispose_store_connections

        for attempt in range(attempts):
            try:
                return step()
            except Exception:  # noqa: BLE001 - tried again, or raised on the last attempt
                if attempt == attempts - 1:
                    raise
                gc.collect()  # a connection nobody references any more: closed, lock released
                dispose_store_connections(self.client)
                time.sleep(0.5 * (attempt + 1))

    def close(self, status: str) -> tuple[Counter, str]:
        from slnn.sweep.slurm import reap_slurm_runs
        from slnn.tracking.liveness import stop
        from slnn.tracking.runs import reap_dead_runs

        self._restore_env()
        st = self.state
        entries = Ledger(Path(st.dir) / "progress.jsonl").per_cell(self._cells())
        entries += [{"outcome": Outcome.SKIPPED}] * st.n_skipped
        counts, line = summarize(entries, st.total)
        stop(st.parent_run_id)
        # an interrupted sweep's workers may take a moment to die: reap their runs as they go
        for _ in range(12 if status == "KILLED" else 1):
            try:
                reap_dead_runs(self.client, st.experiment_id, st.parent_run_id)
                reap_slurm_runs(self.client, st.experiment_id, st.parent_run_id)
                if status != "KILLED" or not self.client.search_runs(
                        [st.experiment_id], max_results=1, filter_string="attributes.status ="
                        f" 'RUNNING' and tags.mlflow.parentRunId = '{st.parent_run_id}'"):
                    break
            except Exception:  # noqa: BLE001 - the next command reaps them; the parent matters more
                break
            time.sleep(0.25)
        try:
            self._log_summary_metrics()
        except Exception as e:  # noqa: BLE001 - the numbers are in the children; closing matters more
            self._count_error = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]

        def close_parent() -> None:
            self.client.set_tag(st.parent_run_id, "slnn.summary", line)
            self.client.set_terminated(st.parent_run_id, status)

        try:
            self._retried(close_parent, 4)
        except Exception as error:  # noqa: BLE001 - the summary still reaches the user
            first = (str(error).splitlines() or [""])[0][:200]
            line += f" (could not close the parent run: {first})"
        self.closed = (status, line)
        return counts, line

    def finish(self) -> int:
        """Summarize, close the parent run, write the report; the exit code (1 if a cell failed,
        or if the store does not hold what the sweep would report: ``_store_fault``)."""
        from slnn.sweep.attempt import store_gone

        st = self.state
        if st.search is not None:  # a search's cells, known only now, for its report and the UI
            self._step(lambda: self._log_cells(self.client, st.parent_run_id, self.all_cells)
                       or self.client.set_tag(st.parent_run_id, "slnn.n_cells",
                                              str(len(self.all_cells))) or "", "no cells.json")
        entries = Ledger(Path(st.dir) / "progress.jsonl").per_cell(self._cells())
        # a cell that failed, and a cell that no job ever ran (its job died outside the cells)
        not_run = st.total - st.n_skipped - len(entries)
        unexpected = sum(1 for e in entries if e["outcome"] not in EXPECTED) + max(not_run, 0)
        gone = store_gone(st)
        if gone:  # the store stayed down: closing the parent would wait for it again
            from slnn.tracking.liveness import stop

            stop(st.parent_run_id)
            self._restore_env()
            _, line = summarize(entries + [{"outcome": Outcome.SKIPPED}] * st.n_skipped,
                                st.total)
            say(mask(f"slnn: sweep {st.label} stopped: {gone}; {line}; run the same command "
                     "again once the store answers (the next command closes the parent run "
                     f"{st.parent_run_id})"), sys.stderr)
            return 1
        _, line = self.close("FAILED" if unexpected else "FINISHED")
        fault = self._store_fault(entries)
        if fault:
            say(mask(f"slnn: sweep {st.label}: {fault}"), sys.stderr)
            return 1
        elapsed = time.time() - st.start
        uri, parent = st.uri, st.parent_run_id
        note = self._step(self._log_best_model, "no model logged") if st.log_best_model else ""
        note += self._step(self._register, "nothing registered") if st.register else ""
        rebuild = report_command(uri, parent)
        grid, grid_note = self._report_grid()
        if grid is not None:
            rebuild += f" --grid {shlex.quote(str(grid))}"  # absolute, as the URI
        note += (self._write_report(rebuild, grid, grid_note) if st.report else grid_note +
                 f"; no report (sweep.report=false; write it: {rebuild})")
        print(mask(f"slnn: sweep {st.label}: {line} in {elapsed:.1f} s; parent run {parent}"
                   f"{note}; browse: {browse_command(uri)} (the sweep: "
                   f"{sweep_url(uri, st.experiment_id, parent)})"), flush=True)
        return 1 if unexpected else 0

    def _step(self, step, none: str) -> str:
        """A step of a sweep's end (its note), or ``; <none> (<why>)`` when the store or the disk
        fails it: the summary line still comes, and the exit code stays the cells'."""
        try:
            return step()
        except Exception as e:  # noqa: BLE001 - disk full, read-only, a deleted experiment, 500s
            return f"; {none} ({describe(self.state.uri, e)})"

    def _store_fault(self, entries: list[dict]) -> str | None:
        """Why the runs this sweep would report are not (all) in its store, or None: its SQLite
        file deleted or replaced while it ran, or fewer finished cells under its parent run than
        its ledger counts (which ``close`` read, ``_log_summary_metrics``)."""
        from slnn.core.outcomes import TRAINED

        st = self.state
        was, path = st.store_file, _sqlite_file(st.uri)
        if was is not None and path is not None:
            now = _store_file(st.uri)
            if now is None:
                return (f"the tracking store {path} was deleted while the sweep ran, and the runs "
                        "it recorded with it: restore it from a backup, or run the same command "
                        "again to record a new sweep")
            if now != was:
                return (f"the tracking store {path} was replaced by another file while the sweep "
                        "ran: the runs it recorded are not in it; put the original back, or run "
                        "the same command again to record them in this one")
        claimed = sum(1 for e in entries if e["outcome"] in TRAINED)
        found = getattr(self, "_n_finished_in_store", None)
        if found is None and claimed:
            found = self._count_finished()  # the summary's pass failed: count on its own
        if found is None:
            if not claimed:
                return None
            return (f"could not count this sweep's runs in the tracking store {st.uri} "
                    f"({getattr(self, '_count_error', 'unknown error')}): its {claimed} finished "
                    "cell(s) may not be recorded; run the same command again to check and "
                    "complete it")
        if found < claimed:
            return (f"the tracking store {st.uri} holds {found} finished cell(s) of this sweep "
                    f"where it trained {claimed}: the store lost runs while the sweep ran "
                    "(deleted, replaced or restored); run the same command again to record them")
        return None

    def _count_finished(self) -> int | None:
        """How many cells have a FINISHED run under the parent, or None if the store cannot say
        (tried a few times on fresh connections: a killed worker may hold SQLite's lock a
        moment)."""
        from slnn.tracking.runs import iter_runs

        st = self.state
        try:
            children = f"tags.mlflow.parentRunId = '{st.parent_run_id}'"
            return self._retried(lambda: len({
                r.data.tags.get("slnn.config_hash", r.info.run_id)
                for r in iter_runs(self.client, [st.experiment_id], children)
                if r.info.status == "FINISHED"}), 3)
        except Exception as e:  # noqa: BLE001 - named in the line
            self._count_error = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            return None

    def _log_summary_metrics(self) -> None:
        """The parent's own numbers, for the UI: cells, outcomes, best validation error per rule.
        The same read of the children (``child_runs``: the few columns needed) finds the sweep's
        best run (``model_registry.choose_best``)."""
        from mlflow.entities import Metric

        st = self.state
        values, self._newest_finished, self._n_finished_in_store = _summary(
            child_runs(st.uri, self.client, st.experiment_id, st.parent_run_id))
        # a resumed search's cells include the trials an earlier session ran (``remember``)
        values = {"cells": max(st.total, len({c.hash for c in self.all_cells})), **values}
        now = int(time.time() * 1000)
        self.client.log_batch(st.parent_run_id,
                              metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])

    def _log_best_model(self) -> str:
        """A sweep's runs log no model by default: its best run (by validation) gets one."""
        from slnn.tracking.model_registry import (RegistryError, best_of_sweep, best_run,
                                                  choose_best, ensure_logged_model,
                                                  mark_on_parent, the_run)

        parent = self.state.parent_run_id
        try:
            if getattr(self, "_newest_finished", None) is not None:  # read when the sweep closed
                run = the_run(self.client, choose_best(self._newest_finished, parent))
            else:
                run, _ = best_run(self.client, parent)
            model_id = ensure_logged_model(self.client, run,
                                           best_of_sweep(parent, self.state.study))
            mark_on_parent(self.client, parent, model_id)
        except RegistryError as e:
            return f"; no model logged ({e})"
        self.client.set_tag(parent, "slnn.best_run", run.info.run_id)
        return f"; best run {run.info.run_id} logged as model {model_id}"

    def interrupted(self, e: BaseException | None = None) -> None:
        from slnn.app import signals

        release_interrupted(e)
        closed = getattr(self, "closed", None)
        if closed is None:
            _, line = self.close("KILLED")
        else:  # interrupted while ending (the report, say): the parent keeps what it was closed as
            line = f"{closed[1]}; the parent run was closed {closed[0]} before the interrupt"
        if isinstance(e, KeyboardInterrupt):
            how = signals.what(e)
        else:  # e.g. joblib's TerminatedWorkerError when a worker was killed
            first = (str(e).strip().splitlines() or [""])[0][:200]
            how = f"interrupted ({type(e).__name__}: {first})" if e is not None else "interrupted"
        print(mask(f"slnn: sweep {self.state.label} {how}: {line}; run the same command "
                   f"again to finish it (parent run {self.state.parent_run_id})"),
              file=sys.stderr, flush=True)
        signals.reported = True

    def _cells(self) -> set[str] | None:
        """This session's cells (their folders), once they are dealt to jobs: the ledger is
        counted over them only, so a line a leftover job of an earlier session writes for a
        cell this session did not plan cannot stand in for one it did."""
        folders = getattr(self, "dealt", None)
        return None if folders is None else set(folders)

    def launcher_failed(self, exc: BaseException) -> int:
        """A job died outside its cells (cancelled, killed at its time limit): close the parent as
        FAILED, name the lost cells in one line, say how to resume; the exit code (1)."""
        from slnn.sweep.lost import lost_cells_line

        _, line = self.close("FAILED")
        entries = Ledger(Path(self.state.dir) / "progress.jsonl").per_cell(self._cells())
        print(lost_cells_line(self.state.study, exc, getattr(self, "todo_folders", []), entries,
                              line), file=sys.stderr, flush=True)
        return 1

    def _register(self) -> str:
        from slnn.tracking.model_registry import RegistryError, register_best

        try:
            name, version, run_id = register_best(self.state.uri, self.state.parent_run_id)
        except RegistryError as e:
            return f"; nothing registered ({e})"
        return f"; registered {name} version {version} (run {run_id}) as {name}@best"

    def _report_grid(self) -> tuple[str | None, str]:
        """(``sweep.report_grid`` when it is a grid report's folder, else None; the note saying
        why there is no grid comparison, or "")."""
        grid = self.state.report_grid
        if grid is None:
            return None, ""
        try:
            from slnn.report.tuning import GridError, load_grid
        except ImportError:  # no report can be written either (_write_report)
            return None, ""

        try:
            load_grid(grid)
        except GridError as e:  # the report goes on without the comparison, and says so
            why = (f"sweep.report_grid={relative(Path(grid))} is no folder here: the named "
                   "studies' grids are in reports/ at a clone's root" if not Path(grid).is_dir()
                   else str(e).replace("--grid ", "sweep.report_grid=", 1))
            return None, f"; no grid comparison ({why})"
        return grid, ""

    def _write_report(self, rebuild: str, grid: str | None = None, note: str = "") -> str:
        """``; report: <folder> (rebuild: <command>)``, or why there is none. A named study's
        report goes into ``<sweep folder>/report/`` (``state.report_out``), an ad-hoc grid's
        into ``reports/sweep-<parent id 8>/``: never over a tracked ``reports/<study>/``."""
        st = self.state
        try:
            from slnn.report import report_for_parent
            from slnn.report.rulecheck import allow_rule_files
        except ImportError:
            return ""
        try:
            with allow_rule_files(st.rule_digests or ()):  # the files it validated
                folder = report_for_parent(st.uri, st.parent_run_id, attach=True,
                                           out=st.report_out, grid=grid)
        except Exception as e:  # noqa: BLE001 - the runs are safe in MLflow; say why no report
            why = (str(e).splitlines() or [type(e).__name__])[0][:200]
            return f"; no report ({why}; retry: {rebuild}){note}"
        return f"; report: {folder} (rebuild: {rebuild}){note}"
