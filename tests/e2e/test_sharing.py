"""Sharing a running server with a classmate, through the hub's Sharing page, in a real browser."""

import re
import time

import pytest
from playwright.sync_api import expect

from spawner import settings as dshub_settings
from tests.e2e.conftest import screenshot
from tests.support.hub import HubSession
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def share_stack(tmp_path_factory):
    # The lean image keeps this test about sharing, not about the IDEs.
    stack = Stack(
        tmp_path_factory.mktemp("share-stack", numbered=True),
        overrides={"DSHUB_USER_IMAGE": f"dshub/lab:{dshub_settings.VERSION}"},
    )
    try:
        stack.up()
        admin = HubSession(stack.url)
        admin.sign_in(stack.settings.admin_users[0], stack.admin_password())
        for name in ("ada", "bob"):
            assert admin.api("POST", f"/users/{name}").status_code == 201
        yield stack
    finally:
        stack.destroy()


def sign_in(browser, stack, name, next_path="/hub/home"):
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{stack.url}/hub/login?next={next_path}")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(f"{name}-password")
    page.get_by_role("button", name="Sign in").click()
    return page


def test_share_open_run_and_revoke(browser, share_stack):
    url = share_stack.url
    ada = sign_in(browser, share_stack, "ada", next_path="/hub/spawn")
    ada.wait_for_url(f"{url}/user/ada/lab*", timeout=180_000)

    ada.goto(f"{url}/hub/sharing")
    ada.get_by_label("name").fill("bob")
    ada.get_by_role("button", name="Share").click()
    expect(ada.get_by_role("status")).to_have_text("Shared your server with user bob.")
    expect(ada.locator("#share-table tbody tr")).to_have_count(1)
    screenshot(ada, "sharing-page")

    bob = sign_in(browser, share_stack, "bob")
    bob.wait_for_url(f"{url}/hub/home*")
    shared = bob.get_by_role("link", name="ada's server")
    expect(shared).to_be_visible()
    screenshot(bob, "home-shared-with-you")
    shared.click()
    bob.wait_for_url(re.compile(rf"{url}/(user/ada/|hub/api/oauth2/authorize)"))
    if "/oauth2/authorize" in bob.url:
        bob.get_by_role("button", name=re.compile("Authorize")).click()
    bob.wait_for_url(f"{url}/user/ada/lab*", timeout=120_000)
    bob.locator(".jp-LauncherCard", has_text="Python 3").first.click()
    expect(bob.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible(timeout=120_000)
    cell = bob.locator(".jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    bob.keyboard.type("6 * 7")
    expect(cell).to_have_text("6 * 7")
    # Run (Ctrl+Enter) until the result shows: a run pressed while the kernel
    # connection is still settling is dropped, as in a person's browser.
    result = bob.locator(".jp-Notebook").get_by_text("42", exact=True)
    for _ in range(12):
        cell.click()
        bob.keyboard.press("Control+Enter")
        try:
            expect(result).to_be_visible(timeout=10_000)
            break
        except AssertionError:
            continue
    expect(result).to_be_visible()
    screenshot(bob, "classmate-runs-a-cell")

    ada.get_by_role("button", name="Revoke user bob").click()
    expect(ada.get_by_role("status")).to_have_text("Revoked access of user bob.")
    expect(ada.locator("#share-table tbody tr")).to_have_count(0)

    # The server caches the hub's answer for 10 s: within a bounded wait, bob is refused.
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        status = bob.request.get(f"{url}/user/ada/api/contents", max_redirects=0).status
        if status in (302, 403):
            break
        time.sleep(1)
    assert status in (302, 403)
    bob.goto(f"{url}/user/ada/lab")
    expect(bob.get_by_text(re.compile("403"))).to_be_visible()
