"""The interactive leaderboard page, loaded in a real headless browser (Chromium + chromedriver, Selenium).

Builds the page from a fabricated MLflow store (``test_leaderboard.FakeStore``), opens it from
``file://`` with the network off, and checks: no console error, no horizontal scroll at 1400 px,
the headline answers "best at each rate and who ties", a column sorts, the heatmap switches, the
per-method view and the plot legend respond; a screenshot is saved under ``tmp_path``.  Skipped,
with the reason, where Selenium, Chromium or chromedriver is not installed (``.ci/run`` installs
them: ``apt-get install chromium chromium-driver``, ``pip install -e .[dev]``).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from mlflow.entities import Metric
from rich.console import Console
from test_leaderboard import FakeStore, _grid

from benchmark.summary import build_leaderboards, render_summary

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the page itself is still checked without a browser (test_page_payload)
    webdriver = None

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
DRIVERS = ("chromedriver", "chromium-driver")


def _missing() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install -e .[dev])"
    if not any(shutil.which(b) for b in BROWSERS):
        return "no Chromium binary on PATH (apt-get install chromium)"
    if not any(shutil.which(d) for d in DRIVERS):
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="module")
def built_store(tmp_path_factory):
    """A 3-method, 3-rate, 3-seed store with an oracle and per-epoch histories, built once."""
    root = Path(tempfile.mkdtemp(prefix="page-test-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    store = FakeStore(root / "store")
    _grid(store)
    for run in store.client.search_runs([store.experiment("synthetic")], max_results=1000):
        if run.data.tags.get("method") == "bayes_oracle":
            continue
        auc = run.data.metrics.get("test_auc", 0.7)
        history = [Metric("val_auc", auc - 0.02 * (4 - e), store.clock, e) for e in range(5)]
        history += [Metric("train_loss", 0.7 - 0.1 * e, store.clock, e) for e in range(5)]
        history.append(Metric("best_epoch", 4.0, store.clock, 0))
        store.client.log_batch(run.info.run_id, metrics=history)
    out = tmp_path_factory.mktemp("page")
    build_leaderboards(store.uri, out, ["synthetic"])
    yield store, out
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def page(built_store) -> Path:
    return built_store[1] / "synthetic" / "leaderboard.html"


def test_terminal_summary_fits_100_columns(built_store):
    console = Console(record=True, width=200, file=io.StringIO())
    render_summary(built_store[0].uri, "synthetic", console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "Late fusion" in text and "rate 0.7: best Late fusion" in text and "gap to Bayes" in text
    assert "Test AUC by missing rate" not in text  # the full tables are in the files


def test_page_payload(page):
    """Without a browser: the page is self-contained and embeds the data the script renders."""
    text = page.read_text()
    assert "<script src" not in text and 'src="http' not in text and "<link" not in text and "@import" not in text
    blob = text.split('<script type="application/json" id="leaderboard-data">')[1].split("</script>")[0]
    data = json.loads(blob)
    (ds,) = data["datasets"]
    (sec,) = ds["sections"]
    assert sec["rate_labels"] == ["0", "0.3", "0.7"] and len(sec["verdicts"]) == 3
    assert sec["rows"][0]["method"] == "late_fusion"  # the strongest signal ranks first
    assert sec["ranking"][0]["gap"] < 0 and sec["bayes"]["m"] > sec["ranking"][0]["avg"]["m"]
    lf = sec["rows"][0]["id"]
    runs = sec["runs"][lf][0]
    assert [r["seed"] for r in runs] == [0, 1, 2] and all(r["epoch"] == 4 for r in runs)
    assert sec["curves"][runs[0]["run"]]["train_loss"][0] == [0, 0.7]
    assert sec["calibration"][lf][0]["n"] == 3 * 120 and sec["evidence"] is None
    assert set(sec["cells"]) == {"test", "full", "image_missing", "tabular_missing"}


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(f"browser test skipped: {reason}")
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no telemetry, no download
    os.environ.setdefault("SE_OFFLINE", "true")
    opts = Options()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    binary = next(shutil.which(b) for b in BROWSERS if shutil.which(b))
    opts.binary_location = binary
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chromedriver = next(shutil.which(d) for d in DRIVERS if shutil.which(d))
    try:
        drv = webdriver.Chrome(options=opts, service=Service(chromedriver))
    except WebDriverException as exc:
        pytest.skip(f"browser test skipped: Chromium did not start ({str(exc).splitlines()[0]})")
    yield drv
    drv.quit()


def _texts(drv, css: str) -> list[str]:
    return [e.text for e in drv.find_elements(By.CSS_SELECTOR, css)]


def test_page_in_a_real_browser(page, driver, tmp_path):
    driver.get(page.as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe
    # Fits a 1,400 px window: no horizontal scroll at the top level.
    width, client = driver.execute_script("return [document.documentElement.scrollWidth, "
                                          "document.documentElement.clientWidth]")
    assert width <= client, (width, client)
    # The first screen answers "best at each rate, and who ties with it".
    ranking = _texts(driver, "#ranking tbody tr td:nth-child(2)")
    assert ranking[0] == "Late fusion" and ranking[-1] == "Bayes oracle"
    verdicts = _texts(driver, "#verdicts li")
    assert len(verdicts) == 3 and all(v.startswith("rate ") for v in verdicts)
    best = driver.find_element(By.CSS_SELECTOR, "#verdicts li .chip.best")
    assert best.is_displayed() and best.location["y"] < 900
    # Sort the table by AUC: descending on the first click, ascending on the second.
    header = driver.find_element(By.CSS_SELECTOR, "#cells th[data-col='6']")
    for expected in ("descending", "ascending"):
        header.click()
        header = driver.find_element(By.CSS_SELECTOR, "#cells th[data-col='6']")
        assert header.get_attribute("aria-sort") == expected
        values = [float(e.get_attribute("data-value"))
                  for e in driver.find_elements(By.CSS_SELECTOR, "#cells tbody tr.data td:nth-child(7)")
                  if e.get_attribute("data-value")]
        assert len(values) >= 9 and values == sorted(values, reverse=expected == "descending")
    # A row opens its full statistics.
    driver.find_element(By.CSS_SELECTOR, "#cells tbody tr.data").click()
    assert "AUC:" in driver.find_element(By.CSS_SELECTOR, "#cells tr.detail").text
    # Switch the heatmap to another scenario: the numbers change.
    before = _texts(driver, "#heatmap td.hc")
    Select(driver.find_element(By.ID, "pick-scenario")).select_by_value("image_missing")
    after = _texts(driver, "#heatmap td.hc")
    assert len(after) == len(before) == 4 * 3 and after != before
    Select(driver.find_element(By.ID, "pick-colour")).select_by_index(1)  # Δ vs best at the rate
    # Toggle a method off in the robustness plot.
    item = driver.find_element(By.CSS_SELECTOR, "#plot-legend span")
    item.click()
    assert "off" in driver.find_element(By.CSS_SELECTOR, "#plot-legend span").get_attribute("class")
    # The per-method view: per-seed run ids, training curves, calibration.
    driver.find_elements(By.CSS_SELECTOR, "#ranking tbody tr.data")[1].click()
    body = driver.find_element(By.ID, "method-body").text
    assert "seed 2" in body and "val_auc by epoch" in body and "ECE" in body
    assert len(driver.find_elements(By.CSS_SELECTOR, "#method-body svg.plot")) == 3
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe
    driver.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "leaderboard.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_page_with_gaps_two_sections_and_tuned_rows(driver, tmp_path):
    """Failed and missing cells (nulls in the payload), a tuned row, a method without predictions and
    two patterns: the page still renders without an error, and the section and filters switch."""
    root = Path(tempfile.mkdtemp(prefix="page-gaps-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        store = FakeStore(root / "store")
        for pattern in ("mixed", "image"):
            for rate in (0.0, 0.5):
                for seed in (0, 1):
                    store.log("synthetic", "late_fusion", rate, seed, 1.2, pattern=pattern,
                              status="FAILED" if (pattern, rate, seed) == ("image", 0.5, 1) else "FINISHED")
                    store.log("synthetic", "late_fusion", rate, seed, 1.4, pattern=pattern,
                              tags={"tuned": "true", "tuning_trials": "8"})
                    if rate == 0.0:  # early_fusion never ran at 0.5: its AVG is undefined
                        store.log("synthetic", "early_fusion", rate, seed, 1.0, pattern=pattern, predictions=False)
                    store.log("synthetic", "bayes_oracle", rate, seed, 2.0, pattern=pattern, display="Bayes oracle")
        out = tmp_path / "results"
        build_leaderboards(store.uri, out, ["synthetic"])
        driver.get((out / "index.html").as_uri())
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert [e.text for e in Select(driver.find_element(By.ID, "pick-section")).options] == \
            ["image / both", "mixed / both"]
        assert _texts(driver, "#ranking tbody tr td:nth-child(2)")[0] == "Late fusion (tuned (8 trials))"
        Select(driver.find_element(By.ID, "pick-section")).select_by_index(1)
        assert len(_texts(driver, "#verdicts li")) == 2
        Select(driver.find_element(By.ID, "f-training")).select_by_visible_text("tuned (8 trials)")
        trainings = _texts(driver, "#cells tbody tr.data td:nth-child(2)")
        assert trainings and set(trainings) == {"tuned (8 trials)"}
        Select(driver.find_element(By.ID, "pick-method")).select_by_index(2)
        Select(driver.find_element(By.ID, "pick-colour")).select_by_index(2)
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], severe
    finally:
        shutil.rmtree(root, ignore_errors=True)
