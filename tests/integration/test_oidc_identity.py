"""Who is this user, really: OpenID Connect sign-ins with hostile claims, through the real stack.

The development provider (oidc-provider-mock) lets a test give any subject any
claims (``PUT /users/<sub>``) and sign in as it (its authorize form takes a
``sub``). Each hostile ``preferred_username`` is refused with the rule named and
makes no user; a second account of the provider under a name already bound to
another is refused; spellings of one name are that one user.
"""

from __future__ import annotations

import pytest
import requests

from tests.support.hostile import REFUSED
from tests.support.stack import LAB_IMAGE, dev_oidc_stack, require_images


@pytest.fixture(scope="module")
def oidc(tmp_path_factory):
    require_images("oidc-dev")
    stack = dev_oidc_stack(
        tmp_path_factory.mktemp("oidc-identity", numbered=True),
        DSHUB_USER_IMAGE=LAB_IMAGE,
    )
    with stack.running() as running:
        yield running


def sign_in_as(stack, sub: str, username: str) -> requests.Response:
    """The provider's account ``sub`` with this preferred_username signs in to the hub."""
    claims = {"preferred_username": username, "groups": ["students"]}
    assert requests.put(f"{stack.oidc_url}/users/{sub}", json=claims, timeout=30).status_code == 204
    http = requests.Session()
    form = http.get(f"{stack.url}/hub/oauth_login?next=%2Fhub%2Fhome", timeout=30)
    assert form.url.startswith(f"{stack.oidc_url}/oauth2/authorize"), form.url
    return http.post(form.url, data={"sub": sub}, timeout=60)


def user_names(stack) -> set[str]:
    return {u["name"] for u in stack.service_api("GET", "/users").json()}


def test_each_hostile_username_claim_is_refused_with_the_rule(oidc):
    for i, name in enumerate(REFUSED):
        if "\x00" in name:
            continue  # JSON carries it, but the provider's storage does not
        resp = sign_in_as(oidc, f"hostile-{i}", name)
        assert resp.status_code == 403, (name, resp.status_code, resp.url)
        assert "a username is 1 to 64 characters" in resp.text, name
        assert "<script>alert(1)</script>" not in resp.text, "the refused name comes back escaped"
    assert user_names(oidc) == set()


def test_a_second_account_under_a_bound_name_is_refused(oidc):
    first = sign_in_as(oidc, "ada-at-the-provider", "ada")
    assert first.status_code == 200 and first.url.endswith("/hub/home"), first.url
    # Another account of the provider whose user could edit their preferred_username.
    for spelling in ("ada", "ADA", "\uff41\uff44\uff41"):
        second = sign_in_as(oidc, "mallory-at-the-provider", spelling)
        assert second.status_code == 403, (spelling, second.status_code)
        assert "already belongs to another account" in second.text
    again = sign_in_as(oidc, "ada-at-the-provider", "ADA")
    assert again.status_code == 200 and again.url.endswith("/hub/home")
    assert user_names(oidc) == {"ada"}
    logs = oidc.compose("logs", "--no-color", "hub").stdout
    assert "mallory-at-the-provider" in logs
