"""The usage dashboard in a real headless browser (Debian's chromium): it logs in to the admin,
opens the dashboard and checks that every chart is drawn, with the seeded data."""

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum

from analytics.aggregation import usage_aggregate
from analytics.models import RequestLog
from inference.seeding import usage_seed

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,2000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_the_dashboard_draws_every_chart_with_data(browser, live_server, committed_demo_models, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    seeded = usage_seed(rows=3000, days=6, seed=5)  # inside the 7 calendar days shown
    usage_aggregate(since=seeded.start)
    get_user_model().objects.create_superuser("operator", password="a long enough password 1")

    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys("a long enough password 1")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda driver: driver.find_elements(By.ID, "usage-dashboard-link"))
    browser.find_element(By.ID, "usage-dashboard-link").click()
    browser.get(f"{live_server.url}/admin/analytics/dashboard/?days=7")

    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    titles = [c.get_attribute("aria-label") for c in charts]
    assert titles == [
        "Requests per day",
        "Error rate per day (4xx and 5xx)",
        "p95 latency per day",
        "Tokens per day",
        "Estimated cost per day (USD)",
        "Top users (requests)",
        "Top API keys (requests)",
        "Top API keys (estimated cost, USD)",
        "Predictions per model",
    ]
    for chart in charts:
        marks = chart.find_elements(By.CSS_SELECTOR, ".bar, .point")
        drawn = [m for m in marks if float(m.get_attribute("data-value")) > 0]
        assert drawn, f"{chart.get_attribute('aria-label')} has nothing drawn"
        # Really laid out by the browser, not just present in the markup.
        assert all(m.rect["width"] > 0 and m.rect["height"] > 0 for m in drawn)
        assert not chart.find_elements(By.CSS_SELECTOR, ".empty")

    requests_per_day = charts[0].find_elements(By.CSS_SELECTOR, ".bar")
    assert len(requests_per_day) == 7
    total = int(browser.find_element(By.ID, "total-requests").text)
    assert sum(int(float(bar.get_attribute("data-value"))) for bar in requests_per_day) == total
    assert total >= 3000
    # the cost the generation rows were recorded with, day by day and in all
    cost_per_day = charts[4].find_elements(By.CSS_SELECTOR, ".bar")
    recorded = RequestLog.objects.aggregate(cost=Sum("cost"))["cost"]
    assert recorded > 0
    assert sum(float(bar.get_attribute("data-value")) for bar in cost_per_day) == pytest.approx(recorded, abs=1e-6)
    assert browser.find_element(By.ID, "total-cost").text == f"{recorded:.2f} USD"

    screenshot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if target := os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copy(screenshot, target)


def test_the_dashboard_compares_a_rollouts_versions(browser, live_server, committed_demo_models, client_for):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    from inference import shadow
    from inference.rollouts import rollout_set
    from tests.inference.helpers import IRIS_ROW, register_tree

    canary, shadowing = register_tree(), register_tree()
    rollout_set(
        name="iris",
        canary_version=canary.version,
        canary_percent=50,
        shadow_version=shadowing.version,
        by=None,
        via="api",
    )
    operator = get_user_model().objects.create_superuser("operator", password="a long enough password 1")
    client = client_for(operator)
    for _ in range(20):
        assert client.post("/api/v1/predictions/", {"features": IRIS_ROW}, format="json").status_code == 201
    assert shadow.runner.wait_until_idle(timeout=60)

    browser.get(f"{live_server.url}/admin/login/?next=/admin/analytics/dashboard/?days=1")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys("a long enough password 1")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # A click does not wait for the page it leads to: wait for the dashboard's charts.
    WebDriverWait(browser, 30).until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "svg.chart"))
    charts = {c.get_attribute("aria-label"): c for c in browser.find_elements(By.CSS_SELECTOR, "svg.chart")}
    requests = charts["iris roll-out: requests per version"].find_elements(By.CSS_SELECTOR, ".bar")
    assert [float(bar.get_attribute("data-value")) for bar in requests] == [10, 10]  # half each, exactly
    assert all(bar.rect["width"] > 0 for bar in requests)
    latency = charts["iris roll-out: p95 latency per version"].find_elements(By.CSS_SELECTOR, ".bar")
    assert len(latency) == 2 and all(float(bar.get_attribute("data-value")) > 0 for bar in latency)
    (agreement,) = charts["iris roll-out: shadow agreement with the answer"].find_elements(By.CSS_SELECTOR, ".bar")
    assert 0 < float(agreement.get_attribute("data-value")) <= 100
