"""The report in a real browser: Debian's Chromium, headless, driven by Playwright.

Renders the report of a real sweep at a laptop's viewport, checks every image decoded, the
summary table and the verdict are there and the console stayed clean, and keeps a full-page
screenshot in ``test-artifacts/`` (``SLNN_TEST_ARTIFACTS`` to move it) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_report import FAST, parent_of, run_sweep, sqlite_uri

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("SLNN_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent
                                / "test-artifacts"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium; "
                                                ".ci/run installs it)"),
]


@pytest.fixture(scope="module")
def report_html(tmp_path_factory, slnn_train):
    from slnn.report import report_for_parent

    folder = tmp_path_factory.mktemp("browser_sweep")
    # both rules, 3 activations x 2 learning rates, 2 seeds, and iris where kronecker cannot run
    run_sweep(slnn_train, folder, "update=input,kronecker", "model.activation=sigmoid,tanh,relu",
              "optim.lr=0.1,1.0", "seed=0,1", "data=iris_petal,iris", "train.epochs=8", *FAST)
    uri = sqlite_uri(folder)
    out = report_for_parent(uri, parent_of(uri), out=folder / "report")
    return out / "report.html"


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module: Playwright's sync API cannot start inside another's loop."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(report_html, browser):
    pg = browser.new_page(viewport={"width": 1366, "height": 768})
    messages, failures = [], []
    pg.on("console", lambda m: messages.append((m.type, m.text)))
    pg.on("pageerror", lambda e: failures.append(str(e)))
    pg.on("requestfailed", lambda r: failures.append(f"{r.url[:80]}: {r.failure}"))
    pg.goto(report_html.as_uri(), wait_until="load")
    pg.messages, pg.failures = messages, failures
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "report_full_page.png"), full_page=True)
    yield pg
    pg.close()


def test_it_renders_with_a_title_and_the_sections(page):
    assert page.title().strip()
    text = page.inner_text("body")
    for heading in ("Verdict", "Summary"):
        assert heading.lower() in text.lower(), heading


def test_every_image_loaded(page):
    sizes = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight, e.alt])")
    assert len(sizes) >= 5
    for complete, width, height, alt in sizes:
        assert complete and width > 200 and height > 100, (alt, width, height)
    # the images are embedded: nothing was fetched from anywhere
    assert page.eval_on_selector_all("img", "els => els.every(e => e.src.startsWith('data:image/png'))")


def test_the_summary_table_is_there_with_both_rules(page):
    tables = page.eval_on_selector_all("table", "els => els.map(e => e.innerText)")
    summary = [t for t in tables if "input" in t and "kronecker" in t]
    assert summary, tables[:1]
    rows = page.eval_on_selector_all("table tr", "els => els.length")
    assert rows > 8  # 3 activations x 2 lrs x 2 rules on iris_petal, plus iris


def test_the_console_shows_no_errors(page):
    errors = [t for kind, t in page.messages if kind == "error"]
    assert errors == [] and page.failures == []


def test_the_page_fits_a_laptop_screen_without_sideways_scrolling(page):
    # a figure or table wider than the window would make the reader scroll sideways
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    assert (ARTIFACTS / "report_full_page.png").stat().st_size > 50_000


COMMITTED = sorted(p for p in (Path(__file__).resolve().parent.parent / "reports").glob(
    "*/report.html"))


@pytest.mark.parametrize("report", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_the_first_screen_of_a_committed_report_shows_the_answer(report, browser):
    """At 1440 x 900, without scrolling: the answer sentence, the whole answer figure and the
    start of the answer table (its header and first row)."""
    pg = browser.new_page(viewport={"width": 1440, "height": 900})
    try:
        pg.goto(report.as_uri(), wait_until="load")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"first_screen_{report.parent.name}.png"))
        box = pg.evaluate("""() => {
            const r = e => e ? e.getBoundingClientRect() : null;
            const head = r(document.querySelector('p.headline'));
            const img = r(document.querySelector('img'));
            const row = r(document.querySelector('table tbody tr'));
            return {head: head && head.bottom, img: img && img.bottom,
                    imgAlt: document.querySelector('img').alt,
                    row: row && row.bottom, h: window.innerHeight,
                    text: document.querySelector('p.headline').innerText};
        }""")
    finally:
        pg.close()
    assert box["text"].strip() and len(box["text"].split()) <= 60, box["text"]
    assert "best cell" in box["imgAlt"]  # the first image is the answer figure
    assert box["head"] < box["img"] <= box["h"], box
    assert box["row"] is not None and box["row"] <= box["h"], box
