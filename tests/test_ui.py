"""The MLflow UI on slnn's runs, in a real browser: Debian's Chromium, headless, driven by
Playwright, against ``mlflow server`` started here on 127.0.0.1 (a free port).

A small sweep (two cells, its best run logs the sweep's model) and a single run (which logs its
own) go into a fresh store. Then the UI shows: the single run's page lists its model, named for
what it is, under "Logged models (1)"; its "Model metrics" tab leads with the learning curves (the
``curves`` section, then ``final``, ``max``, ``min``); the sweep's best run lists the sweep's
model; the sweep's URL, as the sweep's last line prints it, shows the
sweep's runs in the UI's model-training mode. Screenshots go to ``test-artifacts/``
(``SLNN_TEST_ARTIFACTS`` to move them) for a person to look at. Every wait is for something on
the page, never for a time.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from servers import VENV_BIN, start_mlflow_server, stop_process

from test_browser import ARTIFACTS, CHROMIUM, FLAGS  # one Chromium setup for both

WAIT_MS = 90_000  # the first page of a cold UI on a busy 2-core machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium; "
                                                ".ci/run installs it)"),
]


def _train(folder: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([str(VENV_BIN / "slnn-train"), *args, "data=iris_petal",
                           "train.epochs=40", f"tracking.uri=sqlite:///{folder}/mlflow.db"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with a two-cell sweep and a single run, and what the UI should show of them."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("ui")
    sweep_out = _train(folder, "-m", "optim.lr=0.1,1.0", f"hydra.sweep.dir={folder}/multirun")
    single_out = _train(folder, "update=kronecker", "optim.lr=0.5")
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("slnn")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`slnn.sweep` = 'true'")
    single_id = re.search(r"\(run ([0-9a-f]{32})\)", single_out).group(1)
    best_id = parent.data.tags["slnn.best_run"]
    sweep_url = re.search(r"\(the sweep: (\S+)\)$", sweep_out.strip()).group(1)
    return dict(folder=folder, uri=uri, client=client, exp=exp.experiment_id, parent=parent,
                single=client.get_run(single_id), best=client.get_run(best_id),
                sweep_url=sweep_url)


@pytest.fixture(scope="module")
def server(store):
    srv = start_mlflow_server(store["uri"], store["folder"] / "served", store["folder"] / "ui.log")
    yield srv
    stop_process(srv.proc)


@pytest.fixture(scope="module")
def browser(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context per test (no mode remembered from another page)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    yield pg
    context.close()


def _shot(pg, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _run_path(store, run) -> str:
    return f"/#/experiments/{store['exp']}/runs/{run.info.run_id}"


def _model_name(store, run) -> str:
    return store["client"].get_logged_model(run.data.tags["slnn.model_id"]).name


def test_a_run_page_lists_its_logged_model_by_name(store, server, page):
    from slnn.tracking.console import run_url

    run = store["single"]
    name = _model_name(store, run)
    assert name == "kronecker-sigmoid-iris_petal"
    # the URL slnn prints for a run, on this server
    page.goto(run_url(server.url, store["exp"], run.info.run_id))
    _logged_models_list(page, name)
    _shot(page, "ui_run_overview.png")


def _logged_models_list(page, name: str) -> None:
    """Wait for the run page's "Logged models (1)" table (MLflow 3 draws it for a run whose
    outputs hold models), check it names ``name``, and bring it into view."""
    title = page.get_by_text(re.compile(r"^Logged models \(1\)$"))
    title.wait_for()
    table = title.locator("xpath=ancestor::div[2]")  # the title's box holds the table
    table.get_by_text(name, exact=True).first.wait_for()
    title.scroll_into_view_if_needed()


def test_a_run_pages_first_charts_are_its_learning_curves(store, server, page):
    run = store["single"]
    page.goto(f"{server.url}{_run_path(store, run)}/model-metrics?workflowType=machine_learning")
    # one section per metric prefix, each headed by its name; the curves' comes first
    sections = ["curves", "final", "max", "min"]
    heads = {}
    for name in sections:
        head = page.get_by_text(name, exact=True).first
        head.wait_for(state="attached")
        heads[name] = head.bounding_box()["y"]
    assert sorted(sections, key=heads.get) == sections, heads
    # the six charts under it are the learning curves, drawn before the next section starts
    curves = ["grad_cosine", "train_error", "train_loss", "val_error", "val_loss", "weight_norm"]
    for c in curves:
        page.get_by_text(c, exact=True).first.wait_for()
    tops = {c: page.get_by_text(c, exact=True).first.bounding_box()["y"] for c in curves}
    assert all(heads["curves"] < y < heads["final"] for y in tops.values()), (tops, heads)
    # each is a line over the epochs (an SVG path per chart), not a single bar
    page.locator("svg path.js-line").first.wait_for(state="attached")
    page.screenshot(path=str(_artifacts() / "ui_run_model_metrics.png"))  # the first screen


def _artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def test_the_sweeps_best_run_lists_the_sweeps_model(store, server, page):
    best = store["best"]
    name = _model_name(store, best)
    assert name == "input-sigmoid-iris_petal"
    lm = store["client"].get_logged_model(best.data.tags["slnn.model_id"])
    assert lm.tags["slnn.best_of_sweep"] == store["parent"].info.run_id
    page.goto(f"{server.url}{_run_path(store, best)}?workflowType=machine_learning")
    _logged_models_list(page, name)
    _shot(page, "ui_best_run_overview.png")


def test_the_sweeps_url_shows_the_sweeps_runs(store, server, page):
    # what the sweep's last line printed, on this server's address
    url = re.sub(r"^http://127\.0\.0\.1:5000", server.url, store["sweep_url"])
    page.goto(url)
    parent = store["parent"]
    # the runs table searched for the sweep's children, grouped under the sweep's parent run
    page.get_by_text(re.compile(r"^\d+ matching runs$")).wait_for()
    page.get_by_text(parent.info.run_name, exact=True).first.wait_for()
    values = page.locator("input").evaluate_all("els => els.map(e => e.value)")
    assert any(parent.info.run_id in v for v in values), values  # the search box: the filter
    assert page.get_by_text(store["single"].info.run_name, exact=True).count() == 0
    # in the UI's model-training mode: its sidebar, not the GenAI one
    page.get_by_text("Model registry", exact=True).wait_for()
    assert page.get_by_text("Judges", exact=True).count() == 0
    _shot(page, "ui_sweep_runs.png")
