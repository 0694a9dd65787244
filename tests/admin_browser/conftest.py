"""The admin in a real headless Chromium (Debian's chromium + chromedriver) driven by Selenium, against
pytest-django's live server on the test PostgreSQL. Run with ``make test-admin`` (``-m browser``).

``ADMIN_SCREENSHOTS=1`` writes a screenshot of each page into docs/admin/.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "docs" / "admin"
WIDTH, HEIGHT = 1400, 900
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    f"--window-size={WIDTH},{HEIGHT}",
)
PASSWORD = "operator-pw-123"


def _binary(env: str, *names: str) -> str:
    for candidate in (os.environ.get(env), *names):
        if candidate and (path := shutil.which(candidate)):
            return path
    pytest.fail(f"{names[0]} not found: `make test-admin` installs Debian's chromium and chromium-driver")


@pytest.fixture(scope="session")
def chrome() -> WebDriver:
    """One headless Chromium for the session, with its own fresh profile directory."""
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
    profile = tempfile.mkdtemp(prefix="admin-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("CHROMIUM_BIN", "chromium", "chromium-browser")
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(_binary("CHROMEDRIVER_BIN", "chromedriver")))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Browser:
    driver: WebDriver
    base_url: str

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self) -> str:
        return self.find("body").text

    def wait_for(self, css: str, timeout: float = 10):
        return WebDriverWait(self.driver, timeout).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        )

    def click_and_confirm(self, css: str) -> None:
        """Click a button that asks ``confirm()`` first, and accept."""
        old = self.find("html")
        self.find(css).click()
        WebDriverWait(self.driver, 5).until(expected_conditions.alert_is_present()).accept()
        WebDriverWait(self.driver, 15).until(expected_conditions.staleness_of(old))

    def click_and_wait(self, css: str) -> None:
        old = self.find("html")
        self.find(css).click()
        WebDriverWait(self.driver, 15).until(expected_conditions.staleness_of(old))

    def screenshot(self, name: str) -> None:
        """docs/admin/<name>.png of the whole page, only when ADMIN_SCREENSHOTS=1 (CI does not churn files)."""
        if os.environ.get("ADMIN_SCREENSHOTS") != "1":
            return
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(WIDTH, min(max(HEIGHT, height + 120), 2400))
        try:
            self.driver.save_screenshot(str(SCREENSHOT_DIR / f"{name}.png"))
        finally:
            self.driver.set_window_size(WIDTH, HEIGHT)

    def session_cookies(self) -> dict[str, str]:
        return {cookie["name"]: cookie["value"] for cookie in self.driver.get_cookies()}


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("operator", "ops@example.com", PASSWORD)


@pytest.fixture
def browser(chrome, live_server, operator, settings, monkeypatch) -> Browser:
    """The browser, logged in to the admin through its login form."""
    # The live server serves each keep-alive browser connection in its own thread: without persistent database
    # connections, each request's is closed at its end, and none is left open when the test database is dropped.
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "CONN_MAX_AGE", 0)
    # The live server speaks plain http: cookies must not be HTTPS-only (they are in production).
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    browser = Browser(driver=chrome, base_url=live_server.url)
    browser.open("/admin/login/")
    chrome.delete_all_cookies()
    browser.open("/admin/login/")
    browser.find("#id_username").send_keys("operator")
    browser.find("#id_password").send_keys(PASSWORD)
    browser.click_and_wait("input[type=submit]")
    assert "Site administration" in browser.text(), browser.text()
    # The navigation sidebar folded (the admin's own « toggle, kept in localStorage): room for the columns.
    chrome.execute_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    return browser
