"""From the JupyterLab launcher to VS Code and RStudio, in a real browser."""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.support.browser import expect_shown_after_network_change, screenshot, sign_in
from tests.support.hub import HubSession
from tests.support.stack import Stack, docker

NAME, PASSWORD = "cleo", "cleo-password"
# Signs in to the home page only: their server is started from there.
HOME_NAME, HOME_PASSWORD = "dora", "dora-password"


@pytest.fixture(scope="module")
def lab_stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("ide-stack", numbered=True)).running() as stack:
        admin = HubSession(stack.url)
        admin.sign_in(stack.settings.admin_users[0], stack.admin_password())
        assert admin.api("POST", f"/users/{NAME}").status_code == 201
        stack.first_sign_in(NAME, PASSWORD)
        yield stack


@pytest.fixture(scope="module")
def lab_page(browser, lab_stack):
    page = sign_in(browser, lab_stack.url, NAME, PASSWORD)
    page.wait_for_url(f"{lab_stack.url}/user/{NAME}/lab*", timeout=180_000)
    expect_shown_after_network_change(page, page.locator(".jp-Launcher"))
    yield page
    page.context.close()


def test_launcher_shows_the_ides(lab_stack, lab_page):
    expect(lab_page.locator(".jp-LauncherCard", has_text="VS Code")).to_be_visible()
    rstudio_tiles = lab_page.locator(".jp-LauncherCard", has_text="RStudio")
    expect(rstudio_tiles).to_have_count(1 if lab_stack.has_rserver() else 0)
    screenshot(lab_page, "launcher-with-ides")


def test_vscode_opens_on_the_users_files(lab_stack, lab_page):
    docker("exec", lab_stack.user_container(NAME), "sh", "-c", "echo hello > /home/jovyan/from-the-pool.txt")
    with lab_page.context.expect_page() as opened:
        lab_page.locator(".jp-LauncherCard", has_text="VS Code").click()
    editor = opened.value
    editor.wait_for_url(re.compile(rf"{lab_stack.url}/user/{NAME}/vscode/"), timeout=120_000)
    expect(editor.locator(".monaco-workbench")).to_be_visible(timeout=120_000)
    expect(editor.get_by_role("treeitem", name="from-the-pool.txt")).to_be_visible(timeout=60_000)
    screenshot(editor, "vscode-from-launcher")


def test_rstudio_evaluates_in_its_console(lab_stack, lab_page):
    if not lab_stack.has_rserver():
        pytest.skip(
            f"RStudio Server is not in the image; its build recorded: {lab_stack.rstudio_build_record()} "
            "(see images/datascience/README.md)"
        )
    with lab_page.context.expect_page() as opened:
        lab_page.locator(".jp-LauncherCard", has_text="RStudio").click()
    rstudio = opened.value
    rstudio.wait_for_url(re.compile(rf"{lab_stack.url}/user/{NAME}/rstudio/"), timeout=120_000)
    console = rstudio.locator("#rstudio_console_input")
    expect(console).to_be_visible(timeout=120_000)
    console.click()
    rstudio.keyboard.type("1+1")
    rstudio.keyboard.press("Enter")
    expect(rstudio.locator("#rstudio_console_output")).to_contain_text("[1] 2")
    screenshot(rstudio, "rstudio-from-launcher")


def home_with_tools(page, hub_url: str) -> None:
    """The home page, once the hub has looked at the user image's tools (it does at its start)."""
    for _ in range(60):
        page.goto(f"{hub_url}/hub/home")
        if page.locator("#open-vscode").count():
            return
        time.sleep(1)
    expect(page.locator("#open-vscode")).to_be_visible()


def test_the_home_page_opens_vscode_clean_starting_the_server(browser, lab_stack):
    """A stopped server starts from the home page's VS Code button and lands in a class-clean workbench."""
    lab_stack.sign_up(HOME_NAME, HOME_PASSWORD)
    page = sign_in(browser, lab_stack.url, HOME_NAME, HOME_PASSWORD, "/hub/home")
    page.wait_for_url(f"{lab_stack.url}/hub/home")
    home_with_tools(page, lab_stack.url)
    expect(page.locator("#open-lab")).to_be_visible()
    expect(page.locator("#open-rstudio")).to_have_count(1 if lab_stack.has_rserver() else 0)
    assert not lab_stack.user_containers(HOME_NAME), "the server was not running"
    screenshot(page, "home-tools")

    page.locator("#open-vscode").click()
    # Through the spawn-pending page, which goes on to the tool once the server is up.
    expect(page.locator(".monaco-workbench")).to_be_visible(timeout=180_000)
    assert page.evaluate("location.pathname") == f"/user/{HOME_NAME}/vscode/"
    expect(page.get_by_role("treeitem").first).to_be_visible(timeout=60_000)
    # For a class (DSHUB_VSCODE_AI=false): no welcome page, and no chat beside the editor,
    # where code-server opens it on a first start otherwise.
    expect(page.get_by_role("tab", name=re.compile("Welcome"))).to_have_count(0)
    expect(page.get_by_role("tab", name="Chat")).to_have_count(0)
    expect(page.locator(".part.auxiliarybar")).to_be_hidden()
    screenshot(page, "vscode-from-home")

    page.goto(f"{lab_stack.url}/hub/home")
    page.locator("#open-lab").click()
    page.wait_for_url(re.compile(rf"{lab_stack.url}/user/{HOME_NAME}/lab"), timeout=60_000)
    expect_shown_after_network_change(page, page.locator(".jp-Launcher"))
    page.context.close()
