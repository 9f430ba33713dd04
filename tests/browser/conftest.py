"""Browser tests: the real pages in Debian's headless Chromium through Playwright (SPEC D5).

Never `playwright install`: Playwright drives /usr/bin/chromium (`.ci/run` installs it). The
tests talk to pytest-django's live server; Playwright's sync API runs an event loop in this
thread, so Django must be told that database calls from it are fine.
"""

import os
import shutil
from pathlib import Path

import pytest

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct horse battery staple"
# Record every Content-Security-Policy violation the page reports, before any page script runs.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(
    e.violatedDirective + " " + e.blockedURI + " at " + e.sourceFile + ":" + e.columnNumber
  );
});
"""


def pytest_collection_modifyitems(config, items):
    if shutil.which(CHROMIUM) is None:
        skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
        for item in items:
            if "tests/browser/" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def problems():
    """Console errors, failed requests and CSP violations of the test's pages."""
    return []


@pytest.fixture
def page(page, problems):
    """Playwright's page, watched: the test fails on any console error or CSP violation."""
    page.set_default_timeout(15_000)
    page.add_init_script(WATCH_CSP)
    page.on(
        "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 500 else None,
    )
    yield page
    try:
        violations = page.evaluate("window.__cspViolations || []")
    except Exception:  # the page is gone (closed or navigating): nothing more to read
        violations = []
    problems.extend(f"CSP: {v}" for v in violations)
    assert problems == []


@pytest.fixture
def shot(page):
    """Save a full-page screenshot of the current page into test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(name: str) -> None:
        page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar belongs at the top
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return take


@pytest.fixture
def log_in(page, live_server):
    def log_in(user) -> None:
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_login", user.email)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/app/**")

    return log_in
