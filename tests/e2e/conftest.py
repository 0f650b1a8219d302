import shutil
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

from tests.support.stack import REPO, dev_oidc_stack, require_images, sweep_test_leftovers

SCREENSHOTS = REPO / "build" / "screenshots"
# Flags for a headless Chromium on a machine with no outside network (see .library env notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    # Every container started or stopped next to the browser adds or removes an
    # interface on this host, and Chromium then ends all its HTTP/2 sessions with
    # ERR_NETWORK_CHANGED, streams in flight included (the https stacks' page loads).
    # A person's browser on another machine never sees those interfaces: HTTP/1.1
    # here, whose requests under way are left alone.
    "--disable-http2",
]


@pytest.fixture(scope="session")
def browser():
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("Chromium is missing: `make test` installs it (scripts/browser.sh)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def run_until_shown(page, cell, result) -> None:
    """Run a cell (Ctrl+Enter) until its result shows.

    A run pressed while the kernel connection is still settling is dropped, as in
    a person's browser: press again.
    """
    for _ in range(12):
        cell.click()
        page.keyboard.press("Control+Enter")
        try:
            expect(result).to_be_visible(timeout=10_000)
            break
        except AssertionError:
            continue
    expect(result).to_be_visible()


def goto_after_network_change(page, url: str) -> None:
    """Navigate, again if Chromium saw the host's interfaces change meanwhile.

    A container starting or stopping adds or removes an interface on this host,
    where the browser runs too; Chromium may then drop a connection it is still
    opening with ERR_NETWORK_CHANGED (see CHROMIUM_ARGS). A person's browser on
    another machine never sees that.
    """
    for _ in range(3):
        try:
            page.goto(url)
            return
        except PlaywrightError as error:
            if "ERR_NETWORK_CHANGED" not in str(error):
                raise
    page.goto(url)


def wait_for_url_after_network_change(page, url, again: str, timeout: float = 180_000) -> None:
    """page.wait_for_url; after ERR_NETWORK_CHANGED (see goto_after_network_change), from ``again``."""
    for _ in range(3):
        try:
            page.wait_for_url(url, timeout=timeout)
            return
        except PlaywrightError as error:
            if "ERR_NETWORK_CHANGED" not in str(error):
                raise
            goto_after_network_change(page, again)
    page.wait_for_url(url, timeout=timeout)


def wait_for_settled_interfaces(timeout: float = 15) -> None:
    """Until no address of this host is still tentative (IPv6 duplicate address detection).

    A container that just started gave this host a new interface whose address
    turns final a moment later, and Chromium takes that for a network change too
    (see CHROMIUM_ARGS). Without iproute2 there is nothing to wait on.
    """
    ip = shutil.which("ip")
    if ip is None:
        return
    deadline = time.monotonic() + timeout
    while subprocess.run(
        [ip, "-6", "addr", "show", "tentative"], capture_output=True, text=True
    ).stdout.strip():
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@pytest.fixture(scope="session", autouse=True)
def _images():
    require_images("hub", "proxy", "netpolicy", "lab", "datascience", "oidc-dev", "pebble")
    sweep_test_leftovers()
    yield
    sweep_test_leftovers()


@pytest.fixture(scope="module")
def oidc_stack(tmp_path_factory):
    """The hub signing in through the dev OpenID Connect provider, reached two ways."""
    stack = dev_oidc_stack(
        tmp_path_factory.mktemp("oidc-stack", numbered=True),
        DSHUB_OAUTH_ADMIN_GROUPS="staff",
        DSHUB_OAUTH_LOGOUT_URL="idp",
    )
    try:
        stack.up()
        yield stack
    finally:
        stack.destroy()
