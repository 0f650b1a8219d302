"""Choosing a profile on the spawn form, in a real browser; the admin page sees the result."""

import json

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
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


def sign_in(browser, stack, name, password, next_path):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{stack.url}/hub/login?next={next_path}")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    return page


def test_choose_a_profile_and_land_in_the_lab(browser, profile_stack):
    stack = profile_stack
    stack.sign_up("ada", "ada-password")  # the admin adds ada; her first sign-in set the password
    ada = sign_in(browser, stack, "ada", "ada-password", "/hub/spawn")
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

    admin = sign_in(browser, stack, stack.settings.admin_users[0], stack.admin_password(), "/hub/admin")
    row = admin.locator("tr", has_text="ada").first
    expect(row).to_be_visible()
    expect(row.get_by_role("button", name="Stop Server")).to_be_visible()
    expect(row).to_contain_text("roomy")  # the admin page shows each server's profile
    screenshot(admin, "admin-page")
