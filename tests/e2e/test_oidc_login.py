"""Signing in through a real OpenID Connect provider, in a real browser."""

import re

import requests
from playwright.sync_api import expect

from tests.support.browser import expect_shown_after_network_change, screenshot


def sign_in(page, stack, who, next_path=""):
    page.goto(f"{stack.url}/hub/login" + (f"?next={next_path}" if next_path else ""))
    button = page.get_by_role("button", name=re.compile("Sign in with your organisation"))
    expect(button).to_be_visible()
    button.click()
    page.wait_for_url(f"{stack.oidc_url}/oauth2/authorize*")
    page.get_by_role("button", name=f"Authorize as {who}").click()


def hub_api(page, stack, path):
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
    resp = page.request.get(f"{stack.url}/hub/api{path}", headers={"X-XSRFToken": xsrf})
    assert resp.ok, resp.text()
    return resp.json()


def test_student_signs_in_and_lands_in_their_own_lab(page, oidc_stack):
    page.goto(oidc_stack.url)
    page.wait_for_url("**/hub/login*")
    screenshot(page, "login-page")
    sign_in(page, oidc_stack, "ada")
    page.wait_for_url(f"{oidc_stack.url}/user/ada/lab*", timeout=180_000)
    expect_shown_after_network_change(page, page.locator("#jp-main-dock-panel"))
    screenshot(page, "lab-after-sign-in")

    me = hub_api(page, oidc_stack, "/user")
    assert me["name"] == "ada"
    assert sorted(me["groups"]) == ["g1", "students"]
    assert me["admin"] is False
    assert len(oidc_stack.user_containers("ada")) == 1


def test_outsider_gets_a_clear_403_and_no_container(page, oidc_stack):
    sign_in(page, oidc_stack, "eve")
    page.wait_for_url(f"{oidc_stack.url}/hub/oauth_callback*")
    expect(page.get_by_role("heading", name=re.compile("403 : Your account is not allowed"))).to_be_visible()
    screenshot(page, "outsider-403")
    assert oidc_stack.user_containers("eve") == []
    logs = oidc_stack.compose("logs", "--no-color", "hub").stdout
    assert "Refused sign-in of eve: not an allowed user nor in an allowed group" in logs


def test_admin_group_member_sees_the_admin_page(page, oidc_stack):
    sign_in(page, oidc_stack, "grace", next_path="/hub/admin")
    page.wait_for_url(f"{oidc_stack.url}/hub/admin*")
    expect(page.get_by_test_id("user-name-div-ada")).to_be_visible()
    screenshot(page, "admin-page")
    assert hub_api(page, oidc_stack, "/user")["admin"] is True


def test_logout_ends_the_hub_session_and_the_providers(page, oidc_stack):
    sign_in(page, oidc_stack, "ada", next_path="/hub/home")
    page.wait_for_url(f"{oidc_stack.url}/hub/home*")
    page.goto(f"{oidc_stack.url}/hub/logout")
    page.wait_for_url(f"{oidc_stack.oidc_url}/oauth2/end_session*")
    page.goto(f"{oidc_stack.url}/hub/home")
    page.wait_for_url("**/hub/login*")


def test_provider_refusal_shows_a_clear_page(page, oidc_stack):
    page.goto(f"{oidc_stack.url}/hub/login")
    page.get_by_role("button", name=re.compile("Sign in with your organisation")).click()
    page.get_by_role("button", name="Deny access").click()
    expect(
        page.get_by_role("heading", name=re.compile("403 : The sign-in service .* did not sign you in"))
    ).to_be_visible()
    assert requests.get(f"{oidc_stack.url}/hub/health", timeout=10).status_code == 200


def test_provider_down_shows_a_page_and_the_hub_keeps_running(page, oidc_stack):
    oidc_stack.compose("stop", "oidc")
    try:
        page.goto(f"{oidc_stack.url}/hub/login")
        page.get_by_role("button", name=re.compile("Sign in with your organisation")).click()
        expect(page.get_by_role("heading", name=re.compile("503 : The sign-in service"))).to_be_visible()
        screenshot(page, "provider-unreachable")
        assert requests.get(f"{oidc_stack.url}/hub/health", timeout=10).status_code == 200
    finally:
        oidc_stack.compose("start", "oidc")
