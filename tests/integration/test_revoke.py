"""Revoking a share ends the classmate's access: open websockets, their processes, tokens they read.

The classmate (bob) reaches the owner's (ada's) server with his own API token,
which holds the share's ``access:servers!server=ada/`` while the share lasts. The
owner revokes the way the Sharing page does: ``POST /hub/sharing/revoke/ada/``
with her browser session.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import websocket

from tests.support.hub import HubSession, Kernel
from tests.support.stack import LAB_IMAGE, Stack, docker

# What bob starts, detached from the kernel and the terminal (setsid), as a person
# hiding a process would: found in the container by these arguments.
KERNEL_MARKER = "sleep 4242"
TERMINAL_MARKER = "sleep 4343"
# The Sharing page's promise: access ends within this many seconds of the revoke.
WITHIN = 10


@pytest.fixture(scope="module")
def classroom(tmp_path_factory) -> Iterator[tuple[Stack, HubSession, HubSession]]:
    # The lean image keeps this test about sharing, not about the IDEs.
    stack = Stack(
        tmp_path_factory.mktemp("revoke-stack", numbered=True),
        overrides={"DSHUB_USER_IMAGE": LAB_IMAGE},
    )
    with stack.running():
        ada = stack.sign_up("ada", "ada-password")
        bob = stack.sign_up("bob", "bob-password")
        ada.start_server()
        yield stack, ada, bob


def share(owner: HubSession, body: dict[str, str]) -> None:
    resp = owner.api("POST", f"/shares/{owner.name}/", json=body)
    assert resp.status_code == 200, resp.text


def revoke_as_the_page_does(owner: HubSession, body: dict[str, str]) -> requests.Response:
    """The Sharing page's Revoke: the owner's browser session (cookie and XSRF header)."""
    return owner.http.post(
        f"{owner.base_url}/hub/sharing/revoke/{owner.name}/",
        json=body,
        headers={"X-XSRFToken": owner.http.cookies.get("_xsrf", path="/hub/")},
        timeout=120,
    )


def in_adas_server(base_url: str, token: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{base_url}/user/ada/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=30,
        **kwargs,
    )


def websocket_to(base_url: str, token: str, path: str) -> websocket.WebSocket:
    return websocket.create_connection(
        f"{base_url.replace('http://', 'ws://', 1)}/user/ada/{path}",
        header=[f"Authorization: token {token}"],
        timeout=30,
    )


def wait_for_access(base_url: str, token: str, timeout: float = 30) -> None:
    """A share shows in the server once its 10 s cache of the hub's answer for the token expires."""
    deadline = time.monotonic() + timeout
    while (status := in_adas_server(base_url, token, "GET", "api/contents").status_code) != 200:
        assert time.monotonic() < deadline, f"no access to ada's server: {status}"
        time.sleep(1)


def kernel_in_adas_server(base_url: str, token: str) -> Kernel:
    made = in_adas_server(base_url, token, "POST", "api/kernels", json={"name": "python3"})
    assert made.status_code == 201, made.text
    return Kernel(
        f"{base_url.replace('http://', 'ws://', 1)}/user/ada/api/kernels/{made.json()['id']}/channels",
        headers=[f"Authorization: token {token}"],
    )


def kernel_info_request() -> str:
    header = {
        "msg_id": uuid.uuid4().hex,
        "session": uuid.uuid4().hex,
        "username": "",
        "msg_type": "kernel_info_request",
        "version": "5.3",
    }
    return json.dumps(
        {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": {},
            "channel": "shell",
            "buffers": [],
        }
    )


def still_open(ws: websocket.WebSocket, message: str) -> bool:
    """Send a message; whether the connection carried it (reading everything that came back)."""
    try:
        ws.send(message)
        ws.settimeout(0.3)
        while True:
            if ws.recv() == "":  # the server's close frame
                return False
    except websocket.WebSocketTimeoutException:
        return True  # open; all answers read
    except (websocket.WebSocketException, OSError):
        return False


def processes(container: str) -> str:
    """The command lines running in a container, read from the host (the image has no ps)."""
    return docker("top", container, "-eo", "pid,args").stdout


def wait_for(marker: str, container: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while marker not in processes(container):
        assert time.monotonic() < deadline, f"{marker!r} never ran in {container}:\n{processes(container)}"
        time.sleep(0.25)


def test_revoke_closes_open_websockets_kills_processes_and_refuses_requests(classroom):
    stack, ada, bob = classroom
    url = stack.url
    share(ada, {"user": "bob"})
    container = stack.user_container("ada")

    # What the share gives bob: ada's files, a kernel and a terminal running as ada.
    wait_for_access(url, bob.token)
    kernel = kernel_in_adas_server(url, bob.token)
    kernel.execute(
        "import subprocess\n"
        f"subprocess.Popen({KERNEL_MARKER.split()!r}, start_new_session=True, stdin=subprocess.DEVNULL,"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"
    )
    # ... and the server's own token, read from its environment, opens the server too.
    server_token = kernel.execute("import os; print(os.environ['JUPYTERHUB_API_TOKEN'], end='')")
    assert in_adas_server(url, server_token, "GET", "api/contents").status_code == 200
    terminal_name = in_adas_server(url, bob.token, "POST", "api/terminals").json()["name"]
    terminal = websocket_to(url, bob.token, f"terminals/websocket/{terminal_name}")
    terminal.send(json.dumps(["stdin", f"setsid nohup {TERMINAL_MARKER} >/dev/null 2>&1 &\r"]))
    wait_for(KERNEL_MARKER, container)
    wait_for(TERMINAL_MARKER, container)
    connections = {
        "kernel": (kernel.ws, kernel_info_request()),
        "terminal": (terminal, json.dumps(["stdin", "\r"])),
    }
    assert all(still_open(ws, probe) for ws, probe in connections.values())

    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        revoking = pool.submit(revoke_as_the_page_does, ada, {"user": "bob"})
        closed_after: dict[str, float] = {}
        while len(closed_after) < len(connections) and time.monotonic() - started < WITHIN + 20:
            for name, (ws, probe) in connections.items():
                if name not in closed_after and not still_open(ws, probe):
                    closed_after[name] = time.monotonic() - started
            time.sleep(0.2)
        revoked = revoking.result(timeout=180)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"server": "restarted"}
    assert set(closed_after) == set(connections), f"still open: {set(connections) - set(closed_after)}"
    assert max(closed_after.values()) <= WITHIN, closed_after

    # The container bob's processes ran in is gone (the engine removes it a moment
    # after it stopped); ada's new one runs none of them.
    deadline = time.monotonic() + WITHIN
    while docker("inspect", container, check=False).returncode == 0:
        assert time.monotonic() < deadline, f"{container} still there:\n{processes(container)}"
        time.sleep(0.25)
    for current in stack.user_containers("ada"):
        assert current != container
        running = processes(current)
        assert KERNEL_MARKER not in running and TERMINAL_MARKER not in running, running
    # Bob's new requests are refused, with his token and with the server's old one;
    # ada's server works for ada.
    assert in_adas_server(url, bob.token, "GET", "api/contents").status_code == 403
    assert in_adas_server(url, server_token, "GET", "api/contents").status_code in (401, 403)
    assert ada.server_get("api/contents").status_code == 200


def test_a_rest_api_revoke_refuses_new_requests_but_leaves_open_connections(classroom):
    """Why Revoke restarts the server: JupyterHub's own revoke (as docs/datapool.md says)."""
    stack, ada, bob = classroom
    share(ada, {"user": "bob"})
    wait_for_access(stack.url, bob.token)
    kernel = kernel_in_adas_server(stack.url, bob.token)
    try:
        assert ada.api("PATCH", "/shares/ada/", json={"user": "bob"}).status_code == 200
        # Past the server's 10 s cache of the hub's answers: new requests are refused ...
        deadline = time.monotonic() + 30
        while in_adas_server(stack.url, bob.token, "GET", "api/contents").status_code != 403:
            assert time.monotonic() < deadline, "bob's new requests were not refused"
            time.sleep(1)
        # ... but the kernel connection bob holds still runs his code as ada.
        assert kernel.execute("6 * 7") == "42"
    finally:
        kernel.close()
        ada.stop_server()
        ada.start_server()


def test_revoke_only_by_who_may_restart_the_server_and_only_an_existing_share(classroom):
    stack, ada, bob = classroom
    share(ada, {"user": "bob"})
    url = f"{stack.url}/hub/sharing/revoke/ada/"
    # Bob may use ada's server, not end shares of it or restart it.
    as_bob = requests.post(
        url, json={"user": "bob"}, headers={"Authorization": f"token {bob.token}"}, timeout=30
    )
    assert as_bob.status_code in (403, 404), as_bob.text
    assert len(ada.api("GET", "/shares/ada/").json()["items"]) == 1
    # Names one user or one group, and a share that exists.
    for body in ({}, {"user": "bob", "group": "x"}, {"user": ""}, {"scopes": []}, {"user": 7}):
        assert revoke_as_the_page_does(ada, body).status_code == 400, body
    assert revoke_as_the_page_does(ada, {"user": "nobody"}).status_code == 404
    assert revoke_as_the_page_does(ada, {"group": "nogroup"}).status_code == 404
    # A stopped server has nothing open to end: revoked (a group's share too), not started.
    assert stack.service_api("POST", "/groups/team", json={"users": ["bob"]}).status_code == 201
    share(ada, {"group": "team"})
    ada.stop_server()
    by_page = revoke_as_the_page_does(ada, {"user": "bob"})
    # With an API token too, sent as docs/datapool.md's curl example sends it.
    by_token = requests.post(
        url,
        data=json.dumps({"group": "team"}),
        headers={
            "Authorization": f"token {ada.token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=30,
    )
    for resp in (by_page, by_token):
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"server": "not running"}
    assert ada.api("GET", "/shares/ada/").json()["items"] == []
    assert "" not in ada.api("GET", "/users/ada").json()["servers"]
