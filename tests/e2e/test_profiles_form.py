"""Choosing a profile on the spawn form, in a real browser; the admin page sees the result."""

import json

import pytest
from playwright.sync_api import expect

from tests.support.browser import expect_shown_after_network_change, screenshot, sign_in
from tests.support.stack import LAB_IMAGE, Stack, docker

LAB = LAB_IMAGE
PROFILES = f"""
profiles:
  - name: small
    display_name: Small
    description: For the weekly exercises.
    image: {LAB}
    cpu: 0.5
    memory: 512M
    default: true
  - name: roomy
    display_name: Roomy
    description: For the term project.
    image: {LAB}
    cpu: 1
    memory: 1G
  - name: staff
    display_name: Staff only
    image: {LAB}
    groups: [staff]
"""


@pytest.fixture(scope="module")
def profile_stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("profile-stack", numbered=True), profiles=PROFILES).running() as stack:
        yield stack


# The window of the screenshots in docs/profiles.md.
VIEWPORT = {"width": 1280, "height": 900}


def test_choose_a_profile_and_land_in_the_lab(browser, profile_stack):
    stack = profile_stack
    stack.sign_up("ada", "ada-password")  # the admin adds ada; her first sign-in set the password
    ada = sign_in(browser, stack.url, "ada", "ada-password", "/hub/spawn", VIEWPORT)
    expect(ada.get_by_text("Choose a profile")).to_be_visible()
    expect(ada.get_by_label("Small")).to_be_checked()
    expect(ada.get_by_text("Staff only")).to_have_count(0)
    expect(ada.get_by_text("1 CPU, 1G memory")).to_be_visible()
    ada.get_by_label("Roomy").check()
    screenshot(ada, "spawn-form")
    ada.get_by_role("button", name="Start").click()
    ada.wait_for_url(f"{stack.url}/user/ada/lab*", timeout=180_000)

    (container,) = docker(
        "ps", "-q", "--filter", f"label=dshub.project={stack.project}", "--filter", "label=dshub.user=ada"
    ).stdout.split()
    inspected = json.loads(docker("inspect", container).stdout)[0]
    assert inspected["Config"]["Labels"]["dshub.profile"] == "roomy"
    assert inspected["HostConfig"]["Memory"] == 2**30

    admin = sign_in(
        browser, stack.url, stack.settings.admin_users[0], stack.admin_password(), "/hub/admin", VIEWPORT
    )
    row = admin.locator("tr", has_text="ada").first
    expect(row).to_be_visible()
    expect(row.get_by_role("button", name="Stop Server")).to_be_visible()
    expect(row).to_contain_text("roomy")  # the admin page shows each server's profile
    screenshot(admin, "admin-page")


def test_the_home_page_starts_a_stopped_server_with_the_last_choice(browser, profile_stack):
    """Its JupyterLab button shows the form again with the profile chosen last, then lands in Lab."""
    stack = profile_stack
    own_session = stack.sign_up("bert", "bert-password")
    bert = sign_in(browser, stack.url, "bert", "bert-password", "/hub/spawn", VIEWPORT)
    bert.get_by_label("Roomy").check()
    bert.get_by_role("button", name="Start").click()
    bert.wait_for_url(f"{stack.url}/user/bert/lab*", timeout=180_000)
    own_session.stop_server()

    bert.goto(f"{stack.url}/hub/home")
    bert.locator("#open-lab").click()
    expect(bert.get_by_label("Roomy")).to_be_checked()
    bert.get_by_role("button", name="Start").click()
    bert.wait_for_url(f"{stack.url}/user/bert/lab*", timeout=180_000)
    expect_shown_after_network_change(bert, bert.locator(".jp-Launcher"))
