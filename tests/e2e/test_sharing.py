"""Sharing a running server with a classmate, through the hub's Sharing page, in a real browser."""

import re
import time

import pytest
import requests
from playwright.sync_api import Locator, Page, expect

from tests.support.browser import run_until_shown, screenshot, sign_in
from tests.support.hub import HubSession
from tests.support.stack import LAB_IMAGE, Stack


@pytest.fixture(scope="module")
def share_stack(tmp_path_factory):
    # The lean image keeps this test about sharing, not about the IDEs.
    stack = Stack(
        tmp_path_factory.mktemp("share-stack", numbered=True),
        overrides={"DSHUB_USER_IMAGE": LAB_IMAGE},
    )
    with stack.running():
        admin = HubSession(stack.url)
        admin.sign_in(stack.settings.admin_users[0], stack.admin_password())
        for name in ("ada", "bob"):
            assert admin.api("POST", f"/users/{name}").status_code == 201
            stack.first_sign_in(name, password(name))
        yield stack


def password(name: str) -> str:
    return f"{name}-password"


def share_with(owner: Page, url: str, name: str) -> None:
    owner.goto(f"{url}/hub/sharing")
    owner.get_by_label("name").fill(name)
    owner.get_by_role("button", name="Share").click()
    expect(owner.get_by_role("status")).to_have_text(f"Shared your server with user {name}.")
    expect(owner.locator("#share-table tbody tr")).to_have_count(1)


def accept_authorize(page: Page, url: str) -> None:
    """The hub asks a classmate once to let the owner's server know who they are."""
    page.wait_for_url(re.compile(rf"{url}/(user/ada/|hub/api/oauth2/authorize)"))
    if "/oauth2/authorize" in page.url:
        page.get_by_role("button", name=re.compile("Authorize")).click()
    page.wait_for_url(f"{url}/user/ada/lab**", timeout=120_000)


def test_share_open_run_and_revoke(browser, share_stack):
    url = share_stack.url
    ada = sign_in(browser, url, "ada", password("ada"), "/hub/spawn")
    ada.wait_for_url(f"{url}/user/ada/lab*", timeout=180_000)

    share_with(ada, url, "bob")
    # Before sharing, the page says what a share gives and what outlives it.
    grants = ada.locator("#share-grants")
    for said in ("as you", "All your files", "~/shared", "hub token", "kernels", "after the share ends"):
        expect(grants).to_contain_text(said)
    for place in ("~/.ipython/", "~/.bashrc", "~/.profile", "~/.jupyter/", "find ~ -newerct"):
        expect(ada.locator("#after-a-share")).to_contain_text(place)
    expect(ada.locator("#revoke-notice")).to_contain_text("Revoking restarts your server")
    # A student's server holds no more than a student's power: no confirmation asked.
    expect(ada.locator("#share-power")).to_have_count(0)
    expect(ada.locator("#share-confirm")).to_have_count(0)
    screenshot(ada, "sharing-page")

    bob = sign_in(browser, url, "bob", password("bob"), "/hub/home")
    bob.wait_for_url(f"{url}/hub/home*")
    shared = bob.get_by_role("link", name="ada's server")
    expect(shared).to_be_visible()
    screenshot(bob, "home-shared-with-you")
    shared.click()
    accept_authorize(bob, url)
    bob.locator(".jp-LauncherCard", has_text="Python 3").first.click()
    expect(bob.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible(timeout=120_000)
    cell = bob.locator(".jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    bob.keyboard.type("6 * 7")
    expect(cell).to_have_text("6 * 7")
    run_until_shown(bob, cell, bob.locator(".jp-Notebook").get_by_text("42", exact=True))
    screenshot(bob, "classmate-runs-a-cell")

    # Revoking asks once more, since it restarts the server; then says what happened.
    ada.get_by_role("button", name="Revoke user bob", exact=True).click()
    ada.get_by_role("button", name="Revoke user bob and restart my server", exact=True).click()
    status = ada.get_by_role("status")
    expect(status).to_contain_text("Revoked access of user bob. Your server restarted", timeout=120_000)
    expect(status).to_contain_text("find ~ -newerct")
    expect(ada.locator("#share-table tbody tr")).to_have_count(0)
    screenshot(ada, "sharing-revoked")

    # The restarted server knows no sign-in of bob's, and the hub refuses him a new one.
    assert bob.request.get(f"{url}/user/ada/api/contents", max_redirects=0).status in (302, 403)
    bob.goto(f"{url}/user/ada/lab")
    # Refused by the restarted server's sign-in at the hub (403), or by the hub itself
    # while the proxy does not route to the new server yet (404: no access).
    expect(bob.get_by_text(re.compile("403|404"))).to_be_visible()


NOTEBOOK = "together.ipynb"
# A notebook as a person leaves it: code and the output of a run. An empty notebook
# after reopening (the failure seen with an earlier setup) loses both.
FIRST_CELL = {
    "cell_type": "code",
    "execution_count": 1,
    "id": "first",
    "metadata": {},
    "outputs": [
        {"data": {"text/plain": ["1"]}, "execution_count": 1, "metadata": {}, "output_type": "execute_result"}
    ],
    "source": "existing = 1\nexisting",
}
PYTHON = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def saved_cell(owner: HubSession) -> dict:
    resp = requests.get(
        f"{owner.base_url}/user/ada/api/contents/{NOTEBOOK}",
        headers={"Authorization": f"token {owner.token}"},
        timeout=30,
    )
    resp.raise_for_status()
    (cell,) = resp.json()["content"]["cells"]
    return cell


def wait_saved(owner: HubSession, source: str, timeout: float = 30) -> dict:
    """The server saves a shared document itself, a moment after the last change."""
    deadline = time.monotonic() + timeout
    cell = saved_cell(owner)
    while cell["source"] != source and time.monotonic() < deadline:
        time.sleep(0.5)
        cell = saved_cell(owner)
    assert cell["source"] == source
    return cell


def first_cell(page: Page) -> Locator:
    # Only the notebook in front: the server's workspace may hold other notebooks' tabs.
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").first


def expect_source(page: Page, source: str) -> None:
    """The first cell shows exactly these lines (collaborators' cursor labels sit between them)."""
    cell = first_cell(page)
    expect(cell.locator(".cm-line")).to_have_count(source.count("\n") + 1, timeout=60_000)
    for line in source.splitlines():
        expect(cell.locator(".cm-content")).to_contain_text(line)


def append_line(page: Page, text: str) -> None:
    first_cell(page).locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type(f"\n{text}")


def test_classmates_edit_one_notebook_together(browser, share_stack):
    url = share_stack.url
    ada = sign_in(browser, url, "ada", password("ada"), "/hub/spawn")
    ada.wait_for_url(f"{url}/user/ada/lab**", timeout=180_000)
    share_with(ada, url, "bob")
    owner = HubSession(url)
    owner.sign_in("ada", "ada-password")
    made = requests.put(
        f"{url}/user/ada/api/contents/{NOTEBOOK}",
        headers={"Authorization": f"token {owner.token}"},
        json={
            "type": "notebook",
            "content": {"cells": [FIRST_CELL], "metadata": PYTHON, "nbformat": 4, "nbformat_minor": 5},
        },
        timeout=30,
    )
    assert made.status_code == 201, made.text

    # A fresh workspace (?reset): an earlier test's notebook tabs, whose kernels its
    # revoke ended, would each ask which kernel to start.
    ada.goto(f"{url}/user/ada/lab/tree/{NOTEBOOK}?reset")
    bob = sign_in(browser, url, "bob", password("bob"), "/hub/home")
    bob.wait_for_url(f"{url}/hub/home*")
    bob.goto(f"{url}/user/ada/lab/tree/{NOTEBOOK}?reset")
    accept_authorize(bob, url)
    cells = {page: first_cell(page).locator(".cm-content") for page in (ada, bob)}
    for cell in cells.values():
        expect(cell).to_contain_text("existing = 1", timeout=60_000)

    # Each one's typing shows on the other's page as it happens, without a reload.
    append_line(ada, "from_ada = 2")
    expect(cells[bob]).to_contain_text("from_ada = 2", timeout=15_000)
    append_line(bob, "from_bob = 3")
    expect(cells[ada]).to_contain_text("from_bob = 3", timeout=15_000)
    screenshot(ada, "coediting-a-notebook")
    source = "existing = 1\nexisting\nfrom_ada = 2\nfrom_bob = 3"
    saved = wait_saved(owner, source)
    assert saved["outputs"] == [
        {"data": {"text/plain": "1"}, "execution_count": 1, "metadata": {}, "output_type": "execute_result"}
    ]

    # The owner restarts the server, twice (a document reloaded from edit history
    # made in a restarted server is what came back empty with an earlier setup):
    # both find the notebook as it was each time, and go on editing.
    for typist, line in ((bob, "after_restart = 4"), (ada, "after_second_restart = 5")):
        owner.stop_server()
        owner.start_server()
        for page in (ada, bob):
            # The restarted server is a new OAuth client: bob authorizes it once more.
            page.reload()
            accept_authorize(page, url)
            expect_source(page, source)
            expect(first_cell(page).locator(".jp-OutputArea-output")).to_have_text("1")
        append_line(typist, line)
        for cell in cells.values():
            expect(cell).to_contain_text(line, timeout=15_000)
        source = f"{source}\n{line}"
        wait_saved(owner, source)


def test_instructors_and_admins_confirm_before_sharing(browser, share_stack):
    url = share_stack.url
    admin_name = share_stack.settings.admin_users[0]
    admin = HubSession(url)
    admin.sign_in(admin_name, share_stack.admin_password())
    instructors = share_stack.settings.instructors_group
    admin.api("POST", f"/groups/{instructors}")  # 201, or 409 when it exists
    assert admin.api("POST", "/users/cleo").status_code == 201
    share_stack.first_sign_in("cleo", "cleo-password")
    added = admin.api("POST", f"/groups/{instructors}/users", json={"users": ["cleo"]})
    assert added.status_code == 200, added.text

    cleo = sign_in(browser, url, "cleo", password("cleo"), "/hub/sharing")
    cleo.wait_for_url(f"{url}/hub/sharing")
    power = cleo.locator("#share-power")
    expect(power).to_contain_text("You are an instructor")
    expect(power).to_contain_text("~/shared")
    # Share is refused until the box is ticked: nothing is shared.
    cleo.get_by_label("name").fill("ada")
    cleo.get_by_role("button", name="Share").click()
    expect(cleo.get_by_role("status")).to_have_text("")
    assert admin.api("GET", "/shares/cleo/").json()["items"] == []
    screenshot(cleo, "sharing-confirm-instructor")
    cleo.get_by_label("I understand").check()
    cleo.get_by_role("button", name="Share").click()
    expect(cleo.get_by_role("status")).to_have_text("Shared your server with user ada.")
    assert [item["user"]["name"] for item in admin.api("GET", "/shares/cleo/").json()["items"]] == ["ada"]

    page = sign_in(browser, url, admin_name, share_stack.admin_password(), "/hub/sharing")
    page.wait_for_url(f"{url}/hub/sharing")
    expect(page.locator("#share-power")).to_contain_text("You are an admin")
    # Without per-user origins, the admin's server pages run on the hub's origin.
    expect(page.locator("#share-power")).to_contain_text("served from the hub's own address")
    expect(page.get_by_label("I understand")).to_be_visible()
