"""The e2e tests' browser: Chromium launched one way, a person's page, signing in, waits, screenshots.

The fixtures that hold a browser and a page for a test are in tests/e2e/conftest.py;
everything a test does with them is here, once.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import pytest
from playwright.sync_api import Browser, BrowserType, Locator, Page, Request, ViewportSize, expect
from playwright.sync_api import Error as PlaywrightError

from tests.support.stack import REPO

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
# The window of a person's page, unless a test says otherwise.
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}
# What went wrong on each page new_page made, since it last loaded a document: loads that
# failed ("url: reason") and the page's uncaught errors.
_TROUBLE: WeakKeyDictionary[Page, list[str]] = WeakKeyDictionary()


def launch(browser_type: BrowserType, *extra_args: str, **options: Any) -> Browser:
    """This machine's Chromium, headless, with CHROMIUM_ARGS and ``extra_args``."""
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("Chromium is missing: `make test` installs it (scripts/browser.sh)")
    return browser_type.launch(executable_path=chromium, args=[*CHROMIUM_ARGS, *extra_args], **options)


def new_page(browser: Browser, viewport: ViewportSize = VIEWPORT, **context: Any) -> Page:
    """A page in a browser context of its own (one person's cookies); each step waits up to 60 s."""
    page = browser.new_context(viewport=viewport, **context).new_page()
    page.set_default_timeout(60_000)
    trouble: list[str] = []
    page.on("requestfailed", lambda request: trouble.append(f"{request.url}: {request.failure}"))
    page.on("pageerror", lambda error: trouble.append(f"uncaught: {error}"))
    # A new document only: Lab changes its own URL as it starts, with no request.
    page.on("request", lambda request: forget_on_new_document(request, page, trouble))
    _TROUBLE[page] = trouble
    return page


def forget_on_new_document(request: Request, page: Page, trouble: list[str]) -> None:
    if request.is_navigation_request() and request.frame == page.main_frame:
        trouble.clear()


def sign_in(
    browser: Browser,
    hub_url: str,
    name: str,
    password: str,
    next_path: str | None = None,
    viewport: ViewportSize = VIEWPORT,
) -> Page:
    """A person signs in with their password on the hub's login page, in a page of their own."""
    page = new_page(browser, viewport)
    page.goto(f"{hub_url}/hub/login" + (f"?next={next_path}" if next_path else ""))
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    return page


def sign_in_first_time(page: Page, name: str, initial: str, password: str) -> None:
    """On the login page open in ``page``: a new user's one-time initial password, then their own."""
    page.get_by_label("Username").fill(name)
    page.locator("#password_input").fill(initial)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#new_password_input").fill(password)
    page.locator("#password_input").fill(initial)
    page.get_by_role("button", name="Sign in").click()


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


def expect_shown_after_network_change(page: Page, locator: Locator, timeout: float = 120_000) -> None:
    """expect(locator).to_be_visible; a page that lost a load to ERR_NETWORK_CHANGED loads again.

    A page whose script was dropped that way (see goto_after_network_change) never
    shows its app; a person would reload it. If it never shows, the failure says
    which loads failed and what the page threw.
    """
    trouble = _TROUBLE[page]
    deadline = time.monotonic() + timeout / 1000
    reloads = 0
    while True:
        try:
            expect(locator).to_be_visible(timeout=10_000)
            return
        except AssertionError as error:
            if time.monotonic() > deadline:
                seen = trouble or "nothing seen"
                raise AssertionError(f"{error}\nwhat went wrong on {page.url}: {seen}") from error
            if reloads < 2 and any("ERR_NETWORK_CHANGED" in seen for seen in trouble):
                reloads += 1
                goto_after_network_change(page, page.url)


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
