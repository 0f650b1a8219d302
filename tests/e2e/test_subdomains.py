"""Per-user origins (DSHUB_USER_SUBDOMAINS) in a real browser, and what a home cannot change.

The hub answers at hub.localhost:<port>, each user's servers at
<label>.hub.localhost:<port> (Chromium resolves every *.localhost name to
loopback; the test's own HTTP calls go to 127.0.0.1 with a Host header). A
classmate who opens a shared server runs its pages on the owner's origin, where
a script the owner planted cannot read the hub's pages or call its API as them.
Whatever the owner puts in their home (a labextension, server config, labconfig)
is not loaded by their server; the image's own extensions are. Over https (the
edge serving a wildcard certificate, DSHUB_TLS=files), the hub's and the
servers' cookies are __Host- cookies, which no other host can set.
"""

import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from spawner.hub.proxy import user_label
from spawner.spawn.docker import HOME
from tests.support.browser import (
    expect_shown_after_network_change,
    new_page,
    run_until_shown,
    screenshot,
    sign_in_first_time,
    wait_for_url_after_network_change,
)
from tests.support.certs import OwnCa
from tests.support.stack import LAB_IMAGE, Stack, docker, free_port

# Both names need escaping to be DNS labels: ada-2elovelace, bob-40uni-2eexample.
OWNER = "ada.lovelace"
VISITOR = "bob@uni.example"


def password(name: str) -> str:
    return f"{name}-password"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    port = free_port()
    # The default user image: JupyterLab with VS Code in its launcher.
    stack = Stack(
        tmp_path_factory.mktemp("origins-stack", numbered=True),
        port=port,
        overrides={"DSHUB_USER_SUBDOMAINS": "true", "DSHUB_PUBLIC_URL": f"http://hub.localhost:{port}"},
    )
    with stack.running():
        for name in (OWNER, VISITOR):
            assert stack.service_api("POST", f"/users/{name}").status_code == 201
        yield stack


def hub_url(stack: Stack) -> str:
    return stack.settings.subdomain_host


def origin(stack: Stack, name: str) -> str:
    hub = urlsplit(hub_url(stack))
    return f"{hub.scheme}://{user_label(name)}.{hub.netloc}"


def lab_url(stack: Stack, name: str) -> str:
    return f"{origin(stack, name)}/user/{name}/lab"


def first_sign_in(browser: Browser, stack: Stack, name: str, next_path: str) -> Page:
    """A new user signs in with the initial password; the form then asks for their own."""
    # The https stack's certificate comes from the test's own CA, which Chromium does not know.
    page = new_page(browser, ignore_https_errors=True)
    page.goto(f"{hub_url(stack)}/hub/login?next={quote(next_path, safe='')}")
    sign_in_first_time(page, name, stack.initial_password(name), password(name))
    return page


def open_lab(page: Page, stack: Stack, owner: str) -> None:
    """Wait for the owner's Lab, through the hub's question to a classmate if it asks."""
    arrived = re.compile(rf"({re.escape(origin(stack, owner))}/user/|.*/hub/api/oauth2/authorize)")
    # A container starting changes this host's interfaces (tests/support/browser.py): then on
    # from the Lab's address.
    wait_for_url_after_network_change(page, arrived, again=lab_url(stack, owner), timeout=60_000)
    if "/oauth2/authorize" in page.url:
        page.get_by_role("button", name=re.compile("Authorize")).click()
    page.wait_for_url(f"{lab_url(stack, owner)}**", timeout=180_000)
    # Lab's shell, whatever tabs an earlier visit left open in the owner's workspace.
    expect_shown_after_network_change(page, page.locator("#jp-main-dock-panel"))


@pytest.fixture(scope="module")
def owner_page(browser, stack) -> Iterator[Page]:
    page = first_sign_in(browser, stack, OWNER, "/hub/spawn")
    open_lab(page, stack, OWNER)
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def visitor_page(browser, stack) -> Iterator[Page]:
    page = first_sign_in(browser, stack, VISITOR, "/hub/home")
    page.wait_for_url(f"{hub_url(stack)}/hub/home*")
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def shared(stack, owner_page) -> None:
    """The owner shares their server with the visitor on the hub's Sharing page."""
    owner_page.goto(f"{hub_url(stack)}/hub/sharing")
    owner_page.get_by_label("name").fill(VISITOR)
    owner_page.get_by_role("button", name="Share").click()
    expect(owner_page.get_by_role("status")).to_have_text(f"Shared your server with user {VISITOR}.")
    owner_page.goto(lab_url(stack, OWNER))
    expect_shown_after_network_change(owner_page, owner_page.locator(".jp-Launcher"))


def test_each_users_lab_has_an_origin_of_its_own(stack, owner_page, visitor_page):
    assert owner_page.evaluate("location.origin") == origin(stack, OWNER)
    expect(owner_page.locator(".jp-LauncherCard", has_text="VS Code")).to_be_visible()
    screenshot(owner_page, "lab-on-its-own-origin")
    visitor_page.goto(f"{hub_url(stack)}/hub/spawn")
    open_lab(visitor_page, stack, VISITOR)
    assert visitor_page.evaluate("location.origin") == origin(stack, VISITOR) != origin(stack, OWNER)

    # The hub's pages are only on the hub's host: elsewhere they redirect there.
    owner_host = urlsplit(origin(stack, OWNER)).netloc
    elsewhere = requests.get(
        f"{stack.url}/hub/login?next=x", headers={"Host": owner_host}, allow_redirects=False, timeout=30
    )
    assert elsewhere.status_code == 302
    assert elsewhere.headers["Location"] == f"{hub_url(stack)}/hub/login?next=x"
    # And a server only on its owner's: on the hub's host its address leads to the hub.
    on_hub_host = requests.get(
        f"{stack.url}/user/{OWNER}/api/status", headers=stack.hub_host(), allow_redirects=False, timeout=30
    )
    assert on_hub_host.status_code == 302
    assert on_hub_host.headers["Location"].startswith(f"{hub_url(stack)}/hub/user/{OWNER}/")


def test_vscode_opens_from_the_launcher_on_the_owners_origin(stack, owner_page):
    with owner_page.context.expect_page() as opened:
        owner_page.locator(".jp-LauncherCard", has_text="VS Code").click()
    editor = opened.value
    editor.wait_for_url(f"{origin(stack, OWNER)}/user/{OWNER}/vscode/**", timeout=120_000)
    expect(editor.locator(".monaco-workbench")).to_be_visible(timeout=120_000)
    screenshot(editor, "vscode-on-its-own-origin")
    editor.close()


def test_a_classmate_works_in_a_shared_server_on_its_owners_origin(stack, shared, visitor_page):
    visitor_page.goto(f"{hub_url(stack)}/hub/home")
    visitor_page.get_by_role("link", name=f"{OWNER}'s server").click()
    open_lab(visitor_page, stack, OWNER)
    visitor_page.locator(".jp-LauncherCard", has_text="Python 3").first.click()
    expect(visitor_page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible(
        timeout=120_000
    )
    cell = visitor_page.locator(".jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    visitor_page.keyboard.type("6 * 7")
    run_until_shown(visitor_page, cell, visitor_page.locator(".jp-Notebook").get_by_text("42", exact=True))
    screenshot(visitor_page, "classmate-on-the-owners-origin")


# What a script the owner planted in their server would do in a classmate's
# browser: read a hub page for its xsrf token, then make a token of the classmate
# and ask the hub who they are. Each step's outcome: a status, a name, or
# "refused: <error>" when the browser gave the script nothing.
STEAL_TOKEN = """
async ({hub, name, note}) => {
  const out = {xsrf: false};
  let xsrf = null;
  const attempt = async (key, request) => {
    try {
      out[key] = await request();
    } catch (error) {
      out[key] = `refused: ${error.name}`;
    }
  };
  await attempt("home", async () => {
    const resp = await fetch(`${hub}/hub/home`, {credentials: "include"});
    const found = (await resp.text()).match(/xsrf_token: "([^"]+)"/);
    xsrf = found ? found[1] : null;
    out.xsrf = xsrf !== null;
    return resp.status;
  });
  const headers = xsrf ? {"X-XSRFToken": xsrf} : {};
  await attempt("created", async () => {
    const resp = await fetch(`${hub}/hub/api/users/${encodeURIComponent(name)}/tokens`, {
      method: "POST",
      credentials: "include",
      headers: {"Content-Type": "application/json", ...headers},
      body: JSON.stringify({note: note, expires_in: 600}),
    });
    if (resp.ok) out.token = (await resp.json()).token;
    return resp.status;
  });
  await attempt("me", async () => {
    const resp = await fetch(`${hub}/hub/api/user`, {credentials: "include", headers: headers});
    return resp.ok ? (await resp.json()).name : resp.status;
  });
  return out;
}
"""
FROM_SHARED = "made on the shared server's page"
FROM_HUB = "made on the hub's page"


def test_a_shared_servers_page_cannot_get_its_visitors_hub_token(stack, shared, visitor_page):
    visitor_page.goto(lab_url(stack, OWNER))
    open_lab(visitor_page, stack, OWNER)
    # The hub by its address, and by a path on the server's own origin (which the
    # edge redirects to the hub's host): the browser hands the script nothing.
    for hub in (hub_url(stack), ""):
        stolen = visitor_page.evaluate(STEAL_TOKEN, {"hub": hub, "name": VISITOR, "note": FROM_SHARED})
        assert stolen["xsrf"] is False, stolen
        assert "token" not in stolen, stolen
        assert stolen["created"] != 201 and stolen["me"] != VISITOR, stolen

    # Control: the same script on the hub's own origin gets a token of the visitor.
    on_hub = visitor_page.context.new_page()
    on_hub.goto(f"{hub_url(stack)}/hub/home")
    made = on_hub.evaluate(STEAL_TOKEN, {"hub": "", "name": VISITOR, "note": FROM_HUB})
    assert (made["xsrf"], made["created"], made["me"]) == (True, 201, VISITOR), made
    on_hub.close()
    tokens = requests.get(
        f"{stack.url}/hub/api/users/{VISITOR}/tokens",
        headers={"Authorization": f"token {made['token']}", **stack.hub_host()},
        timeout=30,
    )
    tokens.raise_for_status()
    notes = {token["note"] for token in tokens.json()["api_tokens"]}
    assert FROM_HUB in notes and FROM_SHARED not in notes, notes


# Run in the owner's container, as the owner: the home's Jupyter files a user could
# make. A prebuilt labextension that marks the page (window.dshubPlanted and a
# visible element), server config that leaves a file behind when run, and labconfig
# that turns off the image's launcher tiles. ~/.ipython exists after any kernel ran:
# with it, Jupyter tries to migrate config into its config dir at start.
PLANT = r"""
set -eu
ext="$HOME/.local/share/jupyter/labextensions/dshub-planted"
mkdir -p "$ext/static" "$HOME/.jupyter/labconfig" "$HOME/.ipython/profile_default"
cat > "$ext/package.json" <<'JSON'
{"name": "dshub-planted", "version": "0.0.1",
 "jupyterlab": {"_build": {"load": "static/remoteEntry.js", "extension": "./extension"}}}
JSON
cat > "$ext/static/remoteEntry.js" <<'JS'
window.dshubPlanted = true;
(window._JUPYTERLAB = window._JUPYTERLAB || {})["dshub-planted"] = {
  init: function () { return Promise.resolve(); },
  get: function () {
    return Promise.resolve(function () {
      return {__esModule: true, default: {
        id: "dshub-planted:plugin", autoStart: true, requires: [], optional: [],
        activate: function () {
          var marker = document.createElement("div");
          marker.id = "dshub-planted";
          marker.textContent = "planted by the server's owner";
          document.body.appendChild(marker);
        }
      }};
    });
  }
};
JS
cat > "$HOME/.jupyter/jupyter_server_config.py" <<'PY'
import pathlib
pathlib.Path.home().joinpath("planted-config-ran").write_text("the server ran the home's config\n")
PY
cat > "$HOME/.jupyter/labconfig/page_config.json" <<'JSON'
{"disabledExtensions": {"@jupyterhub/jupyter-server-proxy": true}}
JSON
"""
MARKER = f"{HOME}/planted-config-ran"
# Saves one of the user's JupyterLab settings through Lab's API, as its settings editor does.
SETTING = "notification"
SAVE_SETTING = """
async (setting) => {
  const config = JSON.parse(document.getElementById("jupyter-config-data").textContent);
  const xsrf = document.cookie.match(/_xsrf=([^;]+)/)[1];
  const resp = await fetch(`${config.baseUrl}lab/api/settings/@jupyterlab/apputils-extension:${setting}`, {
    method: "PUT",
    headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
    body: JSON.stringify({raw: '{"fetchNews": "false"}'}),
  });
  return resp.status;
}
"""


def wait_until(done: Callable[[], Any], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


def restart_server(stack: Stack, name: str) -> None:
    def servers() -> dict[str, Any]:
        return stack.service_api("GET", f"/users/{name}").json()["servers"]

    assert stack.service_api("DELETE", f"/users/{name}/server").status_code in (202, 204)
    wait_until(lambda: "" not in servers(), f"{name}'s server to stop")
    assert stack.service_api("POST", f"/users/{name}/server").status_code in (201, 202)
    wait_until(lambda: servers().get("", {}).get("ready"), f"{name}'s server to start")


def test_servers_ignore_configuration_and_extensions_from_the_home(stack, owner_page):
    container = stack.user_container(OWNER)
    docker("exec", "-i", container, "sh", stdin=PLANT)
    # Without dshub's environment for the server, Jupyter finds and uses all of it.
    plain = ["env", "-u", "JUPYTER_CONFIG_DIR", "-u", "JUPYTERHUB_DISABLE_USER_CONFIG"]
    listing = docker("exec", container, *plain, "jupyter", "labextension", "list")
    listed = listing.stdout + listing.stderr
    assert re.search(r"dshub-planted v0\.0\.1 .*enabled", listed), listed
    assert re.search(r"@jupyterhub/jupyter-server-proxy v\S+ .*disabled", listed), listed
    docker("exec", container, *plain, "jupyter", "server", "--show-config")
    docker("exec", container, "rm", MARKER)  # fails unless the config ran

    restart_server(stack, OWNER)
    # ?reset: a fresh workspace, so the launcher shows whatever tabs were open before.
    owner_page.goto(f"{lab_url(stack, OWNER)}?reset")
    expect_shown_after_network_change(owner_page, owner_page.locator(".jp-Launcher"))
    # The image's extensions load (the VS Code tile), the home's labconfig did not turn them off.
    expect(owner_page.locator(".jp-LauncherCard", has_text="VS Code")).to_be_visible()
    config = owner_page.evaluate("JSON.parse(document.getElementById('jupyter-config-data').textContent)")
    loaded = {extension["name"] for extension in config["federated_extensions"]}
    assert {"@jupyterhub/jupyter-server-proxy", "@jupyter/collaboration-extension"} <= loaded
    assert "dshub-planted" not in loaded
    assert "@jupyterhub/jupyter-server-proxy" not in config["disabledExtensions"]
    assert owner_page.evaluate("window.dshubPlanted") is None
    expect(owner_page.locator("#dshub-planted")).to_have_count(0)
    ran = docker("exec", stack.user_container(OWNER), "test", "-e", MARKER, check=False)
    assert ran.returncode == 1, "the server ran ~/.jupyter/jupyter_server_config.py"

    # The user's own JupyterLab settings are still theirs, kept in their home.
    assert owner_page.evaluate(SAVE_SETTING, SETTING) == 204
    saved = f"{HOME}/.jupyter/lab/user-settings/@jupyterlab/apputils-extension/{SETTING}.jupyterlab-settings"
    assert docker("exec", stack.user_container(OWNER), "test", "-f", saved, check=False).returncode == 0


@pytest.fixture(scope="module")
def https_stack(tmp_path_factory) -> Iterator[Stack]:
    """The edge serving https itself (DSHUB_TLS=files), a wildcard certificate for the users' hosts."""
    workdir = tmp_path_factory.mktemp("origins-https-stack", numbered=True)
    ca = OwnCa(workdir / "ca.pem")
    ca.issue(workdir / "config" / "tls", ["hub.localhost", "*.hub.localhost"])
    tls_port = free_port()
    # The lean image: this is about the cookies, not the IDEs.
    stack = Stack(
        workdir,
        https_port=tls_port,
        ca_bundle=ca.path,
        overrides={
            "DSHUB_TLS": "files",
            "DSHUB_USER_SUBDOMAINS": "true",
            "DSHUB_PUBLIC_URL": f"https://hub.localhost:{tls_port}",
            "DSHUB_USER_IMAGE": LAB_IMAGE,
        },
    )
    with stack.running():
        assert stack.service_api("POST", f"/users/{OWNER}").status_code == 201
        yield stack


def test_over_https_no_users_host_can_set_the_hubs_or_a_servers_cookies(browser, https_stack):
    page = first_sign_in(browser, https_stack, OWNER, "/hub/spawn")
    open_lab(page, https_stack, OWNER)
    assert page.evaluate("location.origin") == origin(https_stack, OWNER)
    signed_in = {
        cookie["name"]: cookie
        for cookie in page.context.cookies()
        if "jupyterhub-hub-login" in cookie["name"] or "jupyterhub-user-" in cookie["name"]
    }
    # The hub's sign-in cookie and the owner's server's: both __Host- cookies, each
    # only for its own host, so a server on another user's host cannot set or replace them.
    assert {cookie["domain"] for cookie in signed_in.values()} == {
        "hub.localhost",
        urlsplit(page.url).hostname,
    }
    for name, cookie in signed_in.items():
        assert name.startswith("__Host-") and cookie["secure"] and cookie["path"] == "/", cookie
