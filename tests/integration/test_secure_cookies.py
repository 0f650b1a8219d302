"""Behind TLS (an https DSHUB_PUBLIC_URL) every cookie of the hub and of user servers is Secure.

The stack itself serves plain http on 127.0.0.1 here, as it would behind an
operator's TLS terminator: the browser-facing URL, not the wire, decides.
"""

import json
import time

import pytest
import requests

from tests.support.hub import login_xsrf
from tests.support.stack import LAB_IMAGE, Stack, docker, free_port


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory):
    port = free_port()
    stack = Stack(
        tmp_path_factory.mktemp("tls-stack", numbered=True),
        overrides={
            "DSHUB_USER_IMAGE": LAB_IMAGE,
            "DSHUB_PUBLIC_URL": f"https://127.0.0.1:{port}",
        },
        port=port,
    )
    with stack.running() as running:
        yield running


def cookies_set(resp: requests.Response) -> dict[str, str]:
    """Each Set-Cookie of a response: name -> its attributes."""
    found = {}
    for header in resp.raw.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        found[name] = rest
    return found


def test_hub_and_server_cookies_are_secure(tls_stack):
    page = requests.get(f"{tls_stack.url}/hub/login", timeout=30)
    set_on_page = cookies_set(page)
    assert "_xsrf" in set_on_page and "Secure" in set_on_page["_xsrf"]

    admin = tls_stack.settings.admin_users[0]
    xsrf = login_xsrf(page.text)
    form = {"username": admin, "password": tls_stack.initial_password(admin), "_xsrf": xsrf}
    form["new_password"] = "a password of my own"
    # The browser would send the Secure cookie back over https only; the test sends it by hand.
    cookie = "_xsrf=" + set_on_page["_xsrf"].split(";", 1)[0]
    signed_in = requests.post(
        f"{tls_stack.url}/hub/login", data=form, headers={"Cookie": cookie}, timeout=60, allow_redirects=False
    )
    assert signed_in.status_code == 302, signed_in.text
    set_at_login = cookies_set(signed_in)
    assert {"jupyterhub-hub-login", "jupyterhub-session-id"} <= set(set_at_login)
    assert all("Secure" in attributes for attributes in set_at_login.values()), set_at_login

    assert tls_stack.service_api("POST", "/users", json={"usernames": ["ada"]}).status_code == 201
    assert tls_stack.service_api("POST", "/users/ada/server").status_code in (201, 202)
    for _ in range(240):
        if tls_stack.service_api("GET", "/users/ada").json()["servers"].get("", {}).get("ready"):
            break
        time.sleep(0.5)
    # Unauthenticated, the server starts its OAuth dance with the hub: its state cookie is Secure.
    lab = requests.get(f"{tls_stack.url}/user/ada/lab", timeout=30, allow_redirects=False)
    assert lab.status_code == 302
    state = {name: attrs for name, attrs in cookies_set(lab).items() if name.endswith("-oauth-state")}
    assert state and all("Secure" in attrs for attrs in state.values()), cookies_set(lab)
    (container,) = tls_stack.user_containers("ada")
    args = json.loads(docker("inspect", "--format", "{{json .Config.Cmd}}", container).stdout)
    assert "--HubOAuth.cookie_options=secure=True" in args
