"""The leaderboard in a real headless Chromium (Selenium, Debian's chromium and
chromium-driver): it loads from disk without console errors, shows a row per detector,
sorts by a click on a header, filters by typed text, and links to detector pages.

Skips when chromium or chromedriver is missing, unless DFJAX_REQUIRE_BROWSER=1 (CI),
then it fails."""

import os
import shutil
from pathlib import Path

import pytest

from tests.reporting.test_leaderboard import EPS, RESULTS, build_store

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (path.exists() or shutil.which(path.name)):
            return f"{path} is missing (apt-get install -y chromium chromium-driver)"
    return None


@pytest.fixture
def driver(tmp_path):
    reason = _missing()
    if reason:
        if os.environ.get("DFJAX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DFJAX_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver")
    browser = webdriver.Chrome(service=Service(executable_path=str(driver_path)),
                               options=options)
    yield browser
    browser.quit()


def _board_rows(driver):
    """(model, training, pgd cell text) of the first board's visible rows, top to bottom."""
    from selenium.webdriver.common.by import By

    table = driver.find_element(By.ID, "board-0")
    headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    pgd = headers.index("pgd")
    out = []
    for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
        if row.is_displayed():
            cells = row.find_elements(By.TAG_NAME, "td")
            out.append((cells[0].get_attribute("data-v"), cells[1].text, cells[pgd].text))
    return out


def test_leaderboard_sorts_filters_and_links_in_chromium(driver, tmp_path):
    from selenium.webdriver.common.by import By

    out = tmp_path / "results"
    with build_store(tmp_path / "store.sqlite") as store:
        from dfjax.reporting.report import write_report

        write_report(store, out)
    index = out / "leaderboard" / "index.html"
    driver.get(index.as_uri())
    assert driver.title == "dfjax leaderboard"
    logs = driver.get_log("browser")

    # one row per detector on the 8/255 board, ranked by worst case (highest first)
    rows = _board_rows(driver)
    assert len(rows) == len([d for d, by_eps in RESULTS.items() if EPS in by_eps])
    assert rows == [("cnn7", "pgd_at", "0.600"), ("cnn6", "standard", "0.400"),
                    ("meso4", "standard", "failed"), ("cnn7", "standard", "0.100")]

    # a click on the pgd header sorts ascending by pgd's robust accuracy (failed last),
    # a second click descending
    header = driver.find_element(By.XPATH, "//table[@id='board-0']//th[text()='pgd']")
    header.click()
    assert [r[2] for r in _board_rows(driver)] == ["0.100", "0.400", "0.600", "failed"]
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert [r[2] for r in _board_rows(driver)] == ["0.600", "0.400", "0.100", "failed"]

    # typing a filter hides the rows that do not contain the text
    box = driver.find_element(By.ID, "filter")
    box.send_keys("pgd_at")
    assert _board_rows(driver) == [("cnn7", "pgd_at", "0.600")]
    assert driver.find_element(By.ID, "board-0-count").text == "1 of 4"
    driver.save_screenshot(str(out / "leaderboard" / "screenshot.png"))
    assert (out / "leaderboard" / "screenshot.png").stat().st_size > 0

    # the row's link opens the detector's own page
    driver.find_element(By.CSS_SELECTOR, "#board-0 tbody tr:not([hidden]) a").click()
    heading = driver.find_element(By.TAG_NAME, "h1").text
    assert heading == "cnn7 · pgd_at · defence none on synthetic_faces"
    assert driver.title == heading
    assert driver.current_url.startswith((out / "leaderboard" / "detectors").as_uri())

    severe = [e for e in logs + driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
