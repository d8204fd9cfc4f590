"""The merchandiser page in headless Chromium (Debian's chromium + chromium-driver).

`make test` installs them first when missing (the `browser` target); without them this
test is skipped, saying what to install.
"""
import shutil
import threading

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common import exceptions  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from service import create_app  # noqa: E402
from shoprecs.demo import free_port  # noqa: E402

pytestmark = pytest.mark.browser
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ADMIN = "merch-admin-key"


@pytest.fixture
def base_url(published):
    from cheroot.wsgi import Server

    app = create_app({"SETTINGS": published.replace(admin_api_keys=ADMIN)})
    server = Server(("127.0.0.1", free_port()), app, numthreads=4)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.bind_addr[1]}"
    server.stop()


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver on PATH "
                    "(apt-get install chromium chromium-driver, or `make browser` as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def product_heading(browser, starts: str) -> str:
    """Wait for the page that a click loads: its product heading starting with `starts`."""
    def shown(driver):
        text = driver.find_element(By.ID, "product").text
        return text if text.startswith(starts) else None

    return WebDriverWait(browser, 15, ignored_exceptions=(
        exceptions.NoSuchElementException, exceptions.StaleElementReferenceException)).until(shown)


def test_product_search_shows_its_rules_and_neighbours(base_url, browser):
    browser.get(f"{base_url}/merch")
    assert browser.find_element(By.ID, "version").text == "v1"
    box = browser.find_element(By.ID, "q")
    box.send_keys("mug")
    browser.find_element(By.ID, "search").click()
    assert product_heading(browser, "100") == "100 — Mug"
    rows = browser.find_elements(By.CSS_SELECTOR, "#rules tr")[1:]
    cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    assert cells == [["101 Saucer", "0.800", "4.00", "0.2000"],
                     ["102 Spoon", "0.500", "6.00", "0.1000"]]
    assert "Saucer" in browser.find_element(By.ID, "similar").text
    # a rule's consequent links to that product's own page
    browser.find_element(By.LINK_TEXT, "101").click()
    assert product_heading(browser, "101") == "101 — Saucer"
    assert "Mug" in browser.find_element(By.ID, "rules").text  # 101 -> 100


def wait_text(browser, element_id: str, contains: str) -> str:
    def shown(driver):
        text = driver.find_element(By.ID, element_id).text
        return text if contains in text else None

    return WebDriverWait(browser, 15, ignored_exceptions=(
        exceptions.NoSuchElementException, exceptions.StaleElementReferenceException)).until(shown)


def test_merchandisers_edit_the_blacklist(base_url, browser):
    from tests.conftest import SHOPPER

    recs = f"{base_url}/merch?phone={SHOPPER}"
    browser.get(recs)
    assert "101" in browser.find_element(By.ID, "recs").text
    # a wrong key is refused, saying why
    browser.find_element(By.ID, "admin-key").send_keys("wrong")
    browser.find_element(By.ID, "bl-show").click()
    assert "no valid admin API key" in wait_text(browser, "bl-status", "Error")
    key = browser.find_element(By.ID, "admin-key")
    key.clear()
    key.send_keys(ADMIN)
    browser.find_element(By.ID, "bl-goods").send_keys("101")
    browser.find_element(By.ID, "bl-reason").send_keys("recalled by the maker")
    browser.find_element(By.ID, "bl-add").click()
    assert wait_text(browser, "bl-status", "1 goods blacklisted")
    row = browser.find_element(By.CSS_SELECTOR, '#blacklist tr[data-goods="101"]')
    assert "Saucer" in row.text and "recalled by the maker" in row.text and "key:" in row.text
    browser.get(recs)  # the key stays for the session; the shopper no longer sees 101
    assert "101" not in browser.find_element(By.ID, "recs").text
    browser.find_element(By.ID, "bl-show").click()
    wait_text(browser, "bl-status", "1 goods blacklisted")
    browser.find_element(By.CSS_SELECTOR, '#blacklist tr[data-goods="101"] .bl-remove').click()
    assert wait_text(browser, "bl-status", "0 goods blacklisted")
    browser.get(recs)
    assert "101" in browser.find_element(By.ID, "recs").text


def attribution_report(root):
    """A night's attribution report as experiments/attribution.py assembles it, from aggregates:
    arm b sold more, over three days."""
    import datetime as dt

    from experiments.attribution import _experiments, _write

    arms = [{"experiment": "exp1", "arm": "a", "variant": "model", "shoppers": 1000,
             "converted": 100, "revenue": 500.0, "revenue_squares": 5000.0},
            {"experiment": "exp1", "arm": "b", "variant": "popular", "shoppers": 1000,
             "converted": 160, "revenue": 800.0, "revenue_squares": 8000.0}]
    routes = [{"experiment": "exp1", "arm": a, "route": "recommendations", "impressions": 3000,
               "shoppers": 1000, "clicked": 300, "carted": 30, "bought": b, "revenue": r}
              for a, b, r in (("a", 100, 500.0), ("b", 160, 800.0))]
    daily = [{**r, "day": f"2026-12-0{d}", "bought": r["bought"] // 3 + d,
              "impressions": 1000} for r in routes for d in (1, 2, 3)]
    report = {"date": "2026-12-03", "first_day": "2026-11-06", "window_hours": 24.0,
              "impressions": 6000, "experiments": _experiments(arms, routes, {"exp1": "a"}),
              "routes": [], "daily": daily}
    _write(root, dt.date(2026, 12, 3), report)


def test_merchandisers_see_whether_the_recommendations_sell(base_url, browser, published):
    attribution_report(published.root)
    browser.get(f"{base_url}/merch")
    section = browser.find_element(By.ID, "experiments")
    assert section.text == "Did the recommendations sell?"
    verdicts = [v.text for v in browser.find_elements(By.CSS_SELECTOR, "td.verdict")]
    assert verdicts == ["significant"]
    assert "b − a" in browser.find_element(By.CSS_SELECTOR, "table.comparisons").text
    lines = browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline.arm")
    assert sorted(line.get_attribute("data-arm") for line in lines) == ["a", "b"]
    for line in lines:  # one point per day, drawn inside the chart
        points = line.get_attribute("points").split()
        assert len(points) == 3 and line.size["width"] > 100
