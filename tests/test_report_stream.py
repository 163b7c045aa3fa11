"""Reports that stream (#25): the store is read a page of runs and a chunk of histories at a time,
tidy.parquet is written and read a row group of whole runs at a time, and a report keeps only the
histories it draws. Each test holds the streamed path to the whole one it replaced: the same runs
frame as MLflow's ``search_runs`` gives, the same history back from the file, the same curves
and times to target from the kept histories as from every history.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _result(outcome: str, epochs: int, level: float, seed: int):
    from slnn.core.trainer import HISTORY_COLUMNS, TrainResult

    rng = np.random.default_rng(seed)
    n = epochs + 1
    h = {c: level + 0.05 * rng.standard_normal(n) for c in HISTORY_COLUMNS}
    h["epoch"] = np.arange(n, dtype=float)
    h["step"] = h["epoch"] * 10
    h["grad_cosine"][0] = np.nan
    W = np.zeros((3, 3))
    return TrainResult(outcome, "synthetic", W, W, h, epochs_run=epochs, steps_run=epochs * 10)


@pytest.fixture(scope="module")
def store(tmp_path_factory, new_sqlite_store):
    """(uri, parent run id) of a sweep of 13 children: two rules x two lrs x three seeds, one
    cell rerun after a failure, one cell whose runs differ in a param besides the seed."""
    from slnn.tracking import recorder as slnn_recorder, store as slnn_store

    folder = tmp_path_factory.mktemp("stream_store")
    uri = new_sqlite_store(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        client = slnn_store.client_for(uri)
        exp = slnn_store.ensure_experiment(client, "stream")
        parent = client.create_run(exp, tags={"slnn.sweep": "true", "slnn.study": "sweep",
                                              "slnn.n_cells": "12"}).info.run_id
        i = 0
        for rule in ("input", "kronecker"):
            for lr in ("0.1", "1.0"):
                for seed in range(3):
                    params = {"optim.lr": lr, "seed": str(seed), "data.name": "toy",
                              "train.epochs": "5",
                              "model.init": "glorot" if (rule, lr, seed) == ("input", "1.0", 2)
                              else "uniform"}
                    tags = {"slnn.update": rule, "slnn.activation": "sigmoid",
                            "slnn.data": "toy", "slnn.config_hash": f"h{i}",
                            "slnn.outcome": "running"}
                    if i == 3:  # a failed first attempt of this cell
                        slnn_recorder.RunRecorder(client, exp, f"r{i}", params, tags,
                                                  parent).fail(RuntimeError("boom"))
                    rec = slnn_recorder.RunRecorder(client, exp, f"r{i}", params, tags, parent)
                    level = 0.2 if rule == "input" else 0.5
                    rec.finish(_result("max_epochs", 5, level + 0.01 * i, i), "", plot=False,
                               title="")
                    i += 1
        yield uri, parent


def test_the_sql_query_reads_what_search_runs_reads(store):
    """The columns a report reads, from the store's tables by one query, are those of MLflow's
    own ``search_runs`` (``search_frame``), run for run."""
    from slnn.report.frames import runs_frame
    from slnn.report.source import RunReader, open_client, search_frame

    uri, parent = store
    client = open_client(uri)
    exp = client.get_run(parent).info.experiment_id
    reader = RunReader(uri, client, exp)
    assert reader.engine is not None
    sql = reader.children(parent)
    reader.close()
    reader.engine = None  # the path for a store that is not SQL: paged search_runs
    paged = reader.children(parent)
    whole = search_frame(client, [exp], f"tags.mlflow.parentRunId = '{parent}'")
    assert sql.n == paged.n == len(whole) == 13
    want = runs_frame(whole)
    for recs in (sql, paged):
        got = runs_frame(recs.frame())
        pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_the_streamed_sweep_is_the_whole_one(store):
    """read_sweep with ``on_chunk`` hands on every history a chunk of runs at a time and keeps
    none; its runs frame (history figures included) and notes are those of the whole read."""
    from slnn.report.source import read_sweep

    uri, parent = store
    whole = read_sweep(uri, parent)
    seen = []
    streamed = read_sweep(uri, parent, chunk=5, on_chunk=lambda r, h: seen.append((r, h)))
    assert len(seen) == math.ceil(len(whole.runs) / 5) == 3
    assert streamed.history.empty
    pd.testing.assert_frame_equal(streamed.runs, whole.runs)
    got = pd.concat([h for _, h in seen], ignore_index=True)
    pd.testing.assert_frame_equal(got, whole.history)
    assert streamed.notes == whole.notes
    assert any("these params also vary: model.init" in n for n in whole.notes)
    assert any("1 older run(s)" in n for n in whole.notes)
    # each run's first test error is its history's, the final validation error its last epoch's
    h = whole.history.set_index(["run_id", "epoch"])
    r = whole.runs.iloc[0]
    assert r["initial_test_error"] == h.loc[(r["run_id"], 0), "test_error"]
    assert r["val_error"] == h.loc[(r["run_id"], 5), "val_error"]


def test_tidy_parquet_holds_whole_runs_per_row_group(store, tmp_path, monkeypatch):
    from slnn.report import datafiles
    from slnn.report.frames import METRICS, TIDY_COLUMNS
    from slnn.report.source import read_sweep

    uri, parent = store
    sweep = read_sweep(uri, parent)
    monkeypatch.setattr(datafiles, "CHUNK", 4)
    path = tmp_path / "tidy.parquet"
    datafiles.write_tidy(path, sweep.runs, sweep.history)
    pf = pq.ParquetFile(path)
    assert datafiles.WHOLE_RUNS in pf.schema_arrow.metadata
    assert pf.num_row_groups == 3  # 12 runs, 4 a row group
    groups = [set(pf.read_row_group(i, columns=["run_id"]).column(0).to_pylist())
              for i in range(pf.num_row_groups)]
    assert sum(len(g) for g in groups) == len(set().union(*groups)) == 12
    tidy = pd.read_parquet(path)
    assert list(tidy.columns) == TIDY_COLUMNS and len(tidy) == len(sweep.history) * len(METRICS)
    back = pd.concat(list(datafiles.tidy_chunks(path)()), ignore_index=True)
    pd.testing.assert_frame_equal(back, sweep.history)
    some = set(sweep.runs["run_id"].iloc[[0, 11]])
    only = pd.concat(list(datafiles.tidy_chunks(path)(some)), ignore_index=True)
    assert set(only["run_id"]) == some and len(only) == 12


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """reports/guide_vs_correct's data files, and a copy whose tidy.parquet is in row groups of
    whole runs (as a report now writes it)."""
    from slnn.report.datafiles import RUNS, SWEEP, TIDY, IDENTITY, load_inputs, write_tidy

    src = ROOT / "reports" / "guide_vs_correct"
    copy = tmp_path_factory.mktemp("chunked")
    for name in (SWEEP, RUNS, IDENTITY):
        shutil.copyfile(src / name, copy / name)
    full = load_inputs(src, full=True)
    write_tidy(copy / TIDY, full.sweep.runs, full.sweep.history)
    return src, copy, full


def _curves(sweep):
    """What best_lr_curves and best_lr_cosines draw: the bands of each rule's best cells."""
    from slnn.report.selection import choose_best
    from slnn.report.stats import bands

    best = choose_best(sweep.done, by=("data", "update", "activation"))
    keys = list(best[["data", "update", "activation", "lr"]].columns)
    out = []
    for metrics, hold, drop in ((["val_loss", "val_error"], True, ("diverged",)),
                                (["grad_cosine"], False, ())):
        b = bands(sweep, metrics, hold_last=hold, drop=drop).merge(best[keys], on=keys)
        out.append(b.sort_values(keys + ["metric", "epoch"]).reset_index(drop=True))
    return out


@pytest.mark.slow  # the whole committed 4,200-run study analysed twice: 9 s of the fast tier
def test_a_report_keeps_only_the_histories_it_draws_and_draws_the_same(committed):
    """The committed 4,200-run study: the kept histories are a sixth of the rows, and the
    curves, the times to target and the tables are those made from every history, whether the
    file is the old metric-major one or in row groups of whole runs."""
    from slnn.report import analyse
    from slnn.report.datafiles import load_inputs

    src, copy, full = committed
    kept = load_inputs(src)
    assert kept.sweep.history_runs == "needed"
    assert 0 < len(kept.sweep.history) < len(full.sweep.history) / 5
    pd.testing.assert_frame_equal(kept.sweep.runs, full.sweep.runs)
    for got, want in zip(_curves(kept.sweep), _curves(full.sweep)):
        pd.testing.assert_frame_equal(got, want)
    whole = analyse(full.sweep, identity=full.identity, rule_checks=None)
    a = analyse(kept.sweep, identity=kept.identity, rule_checks=None)
    assert len(a.answer.events) and a.answer.events.equals(whole.answer.events)
    assert a.answer.km.equals(whole.answer.km)
    pd.testing.assert_frame_equal(a.summary, whole.summary)
    pd.testing.assert_frame_equal(a.tests, whole.tests)
    # the file in row groups of whole runs keeps the very same runs, histories and identity; the
    # curves and the analysis are functions of those alone, so they are the ones just compared
    chunked = load_inputs(copy)
    assert chunked.sweep.history_runs == "needed"
    pd.testing.assert_frame_equal(chunked.sweep.runs, kept.sweep.runs)
    pd.testing.assert_frame_equal(chunked.sweep.history, kept.sweep.history)
    pd.testing.assert_frame_equal(chunked.identity, kept.identity)


@pytest.mark.parametrize("sql", [True, False], ids=["sql", "search_runs"])
def test_cells_another_sweep_ran_are_read_from_it(store, sql, monkeypatch):
    """A sweep whose cell is a link to another sweep's run, and whose grid (cells.json) names a
    cell only the other sweep ran, reports those two runs of the other sweep, on a SQL store's
    query as through search_runs."""
    import json

    from mlflow import MlflowClient

    from slnn.report import source

    uri, parent_a = store
    client = MlflowClient(uri)
    exp = client.get_run(parent_a).info.experiment_id
    of_a = {r.data.tags["slnn.config_hash"]: r.info.run_id for r in client.search_runs(
        [exp], f"tags.mlflow.parentRunId = '{parent_a}' and attributes.status = 'FINISHED'")}
    parent_b = client.create_run(exp, tags={"slnn.sweep": "true", "slnn.study": "sweep",
                                            "slnn.n_cells": "2"}).info.run_id
    client.log_text(parent_b, json.dumps({"hashes": ["h0", "h5"]}), "cells.json")
    link = client.create_run(exp, tags={"mlflow.parentRunId": parent_b, "slnn.link_to": of_a["h0"],
                                        "slnn.config_hash": "h0", "slnn.outcome": "max_epochs"})
    client.set_terminated(link.info.run_id, "FINISHED")
    if not sql:
        monkeypatch.setattr(source, "_sql_scheme", lambda uri: False)
    sweep = source.read_sweep(uri, parent_b)
    assert set(sweep.runs["run_id"]) == {of_a["h0"], of_a["h5"]}
    assert sweep.runs["has_history"].all() and sweep.runs["update"].eq("input").all()
    client.delete_run(link.info.run_id)
    client.delete_run(parent_b)


def test_a_report_from_the_store_is_the_one_drawn_again_from_its_files(store, tmp_path):
    """Straight from the store, the report takes runs.csv's columns made from the histories as
    it just wrote them (``load_inputs(derived=True)``); drawn again from its files, it makes them
    again from tidy.parquet: the same files and the same report."""
    from slnn.report import report_for_parent, report_from

    uri, parent = store
    first = report_for_parent(uri, parent, out=tmp_path / "store")
    again = report_from(first, tmp_path / "files")
    for name in ("runs.csv", "summary.csv", "tests.csv"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    strip = lambda p: re.sub(r"^- \*\*generated\*\*: .*$", "", p.read_text(), flags=re.M)  # noqa: E731
    assert strip(first / "report.md") == strip(again / "report.md")
