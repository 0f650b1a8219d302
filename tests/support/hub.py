"""A person's session with the hub, through the edge proxy only (127.0.0.1)."""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from typing import Any

import requests
import websocket
from requests.adapters import HTTPAdapter

from spawner.auth.localauth import BUSY


class SignInRefused(AssertionError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def sign_in_patiently(
    base_url: str, name: str, password: str, new_password: str | None = None, tries: int = 60
) -> tuple[HubSession, int]:
    """A person's sign-in, and how often they were told to wait.

    Told "Too Many Requests" (429) by the edge's sign-in rate limit or that the hub is
    busy (its hashing queue, its limit per address), a person tries again a moment
    later; so does this, 1-2 s later.
    """
    for waited in range(tries):
        person = HubSession(base_url)
        try:
            person.sign_in(name, password, new_password=new_password)
            return person, waited
        except SignInRefused as refused:
            if refused.status != 429 and BUSY not in str(refused):
                raise
            time.sleep(1 + random.random())
    raise AssertionError(f"{name} was told to wait {tries} times")


class KernelDied(RuntimeError):
    """The kernel went away while running the code (e.g. killed at the memory limit)."""


class ServerNameAdapter(HTTPAdapter):
    """https to 127.0.0.1, the certificate checked for the hub's name (SNI too).

    The hub's public name (e.g. hub.dshub.test) is unknown to this machine's
    resolver; the tests reach the edge on its published loopback port.
    """

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(server_hostname=self.server_name, assert_hostname=self.server_name)
        super().init_poolmanager(*args, **kwargs)


def edge_session(ca_bundle: str | None = None, server_name: str | None = None) -> requests.Session:
    """A requests session for the edge; with ``ca_bundle``, https checked against it."""
    session = requests.Session()
    if ca_bundle:
        session.verify = ca_bundle
        # Else REQUESTS_CA_BUNDLE from the environment wins over session.verify.
        session.trust_env = False
    if server_name:
        session.mount("https://", ServerNameAdapter(server_name))
    return session


def login_xsrf(login_page: str) -> str:
    """The _xsrf field of the hub's login form, which its POST must carry back."""
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', login_page)
    assert xsrf, "the login form carries an _xsrf field"
    return xsrf[1]


class HubSession:
    def __init__(self, base_url: str, ca_bundle: str | None = None, server_name: str | None = None) -> None:
        """``ca_bundle``: the CA file an https edge's certificate is checked against, for ``server_name``."""
        self.base_url = base_url
        self.http = edge_session(ca_bundle, server_name)
        # Calls with a token only, without the browser session's cookies.
        self.bare = edge_session(ca_bundle, server_name)
        self.sslopt = {"ca_certs": ca_bundle} if ca_bundle else {}
        if server_name:
            self.sslopt["server_hostname"] = server_name
        self.token: str | None = None
        self.name: str | None = None

    def sign_in(self, name: str, password: str, new_password: str | None = None) -> None:
        """Sign in; with ``new_password``, a first sign-in with a one-time initial password."""
        page = self.http.get(f"{self.base_url}/hub/login", timeout=30)
        if page.status_code == 429:  # the edge's sign-in rate limit
            raise SignInRefused(f"the login page for {name!r} refused (status 429): Too Many Requests", 429)
        page.raise_for_status()
        # next=/hub/home: the default landing would start the server (tests start it themselves).
        form = {"username": name, "password": password, "_xsrf": login_xsrf(page.text)}
        if new_password is not None:
            form["new_password"] = new_password
        resp = self.http.post(f"{self.base_url}/hub/login?next=%2Fhub%2Fhome", data=form, timeout=60)
        if "jupyterhub-session-id" not in self.http.cookies or "/hub/login" in resp.url:
            error = re.search(r'<p class="login_error">(.*?)</p>', resp.text, re.S)
            reason = error[1].strip() if error else ""
            raise SignInRefused(
                f"sign-in of {name!r} refused (status {resp.status_code}): {reason}", resp.status_code
            )
        self.name = name
        # A token for API calls, made with the browser session (cookie + xsrf header).
        made = self.http.post(
            f"{self.base_url}/hub/api/users/{name}/tokens",
            json={"note": "dshub tests", "expires_in": 3600},
            headers={"X-XSRFToken": self.http.cookies.get("_xsrf", path="/hub/")},
            timeout=30,
        )
        made.raise_for_status()
        self.token = made.json()["token"]

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.bare.request(
            method,
            f"{self.base_url}/hub/api{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
            **kwargs,
        )

    def start_server(
        self, server: str = "", options: dict[str, Any] | None = None, timeout: float = 180
    ) -> float:
        """Start the default (or a named) server; return seconds until it is ready."""
        started = time.monotonic()
        resp = self.api("POST", f"/users/{self.name}/servers/{server}", json=options or {})
        assert resp.status_code in (201, 202), resp.text
        return self.wait_ready(server, started, timeout)

    def wait_ready(self, server: str, started: float, timeout: float = 180) -> float:
        """Wait for a requested server; return seconds from ``started`` until it is ready."""
        while time.monotonic() - started < timeout:
            state = self.api("GET", f"/users/{self.name}").json()["servers"].get(server, {})
            if state.get("ready"):
                return time.monotonic() - started
            if not state.get("pending") and time.monotonic() - started > 5:
                raise RuntimeError(f"server {self.name}/{server} failed to start: {self.progress_of(server)}")
            time.sleep(0.25)
        raise TimeoutError(f"server {self.name}/{server} not ready within {timeout}s")

    def progress_of(self, server: str = "") -> list[str]:
        """The spawn's progress messages, as the hub's spawn-pending page shows them."""
        path = f"servers/{server}" if server else "server"  # servers//progress is no route
        resp = self.api("GET", f"/users/{self.name}/{path}/progress", stream=True)
        if resp.status_code != 200:
            return []  # no spawn under way (yet)
        return [
            json.loads(line[len("data:") :])["message"]
            for line in resp.iter_lines(decode_unicode=True)
            if line and line.startswith("data:")
        ]

    def stop_server(self, server: str = "") -> None:
        resp = self.api("DELETE", f"/users/{self.name}/servers/{server}")
        assert resp.status_code in (202, 204), resp.text
        for _ in range(240):
            if server not in self.api("GET", f"/users/{self.name}").json()["servers"]:
                return
            time.sleep(0.25)
        raise TimeoutError(f"server {self.name}/{server} did not stop")

    def server_get(self, path: str, server: str = "", **kwargs: Any) -> requests.Response:
        return self.bare.get(
            f"{self.base_url}{self._server_url(server)}{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
            **kwargs,
        )

    def _server_url(self, server: str) -> str:
        return f"/user/{self.name}/{server}/" if server else f"/user/{self.name}/"

    def new_kernel(self, server: str = "") -> str:
        resp = self.bare.post(
            f"{self.base_url}{self._server_url(server)}api/kernels",
            headers={"Authorization": f"token {self.token}"},
            json={"name": "python3"},
            timeout=60,
        )
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    def run(self, code: str, server: str = "") -> str:
        """Execute code in a fresh Python kernel of the user's own (default or named) server."""
        kernel = self.kernel(self.new_kernel(server), server)
        try:
            return kernel.execute(code)
        finally:
            kernel.close()

    def vscode_websocket(self, owner: str | None = None) -> websocket.WebSocket:
        """Open code-server's websocket through the edge, as the workbench does first."""
        owner = owner or self.name
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies if c.path.startswith("/user/"))
        return websocket.create_connection(
            f"{self.base_url.replace('http', 'ws', 1)}/user/{owner}/vscode/"
            f"?reconnectionToken={uuid.uuid4()}&reconnection=false&skipWebSocketFrames=false",
            header=[f"Cookie: {cookies}"],
            timeout=30,
            sslopt=self.sslopt,
        )

    def kernel(self, kernel_id: str, server: str = "") -> Kernel:
        ws_url = self.base_url.replace("http", "ws", 1)  # https: wss
        return Kernel(
            f"{ws_url}{self._server_url(server)}api/kernels/{kernel_id}/channels",
            headers=[f"Authorization: token {self.token}"],
            sslopt=self.sslopt,
        )


class Kernel:
    """A kernel's websocket (Jupyter messaging over JSON), opened through the proxy."""

    def __init__(self, url: str, headers: list[str], sslopt: dict[str, str] | None = None) -> None:
        self.ws = websocket.create_connection(url, header=headers, timeout=60, sslopt=sslopt or {})
        self.session = uuid.uuid4().hex

    def execute(self, code: str, timeout: float = 60) -> str:
        """Run code; return its result's text/plain (or stdout); raise on error."""
        msg_id = uuid.uuid4().hex
        self.ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "session": self.session,
                        "username": "",
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        output = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._next_message(deadline)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] in ("restarting", "dead"):
                # The server's own notice, with no parent: the kernel process is gone.
                raise KernelDied(f"kernel {msg['content']['execution_state']} while running {code[:60]!r}")
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind in ("execute_result", "display_data"):
                # IRkernel shows results as display_data; IPython as execute_result.
                output.append(content["data"].get("text/plain", ""))
            elif kind == "stream":
                output.append(content["text"])
            elif kind == "error":
                raise RuntimeError(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(output)
        raise TimeoutError(f"no reply to {code!r} within {timeout}s")

    def _next_message(self, deadline: float) -> dict[str, Any]:
        """The next Jupyter message, within the deadline.

        The server pings the websocket; websocket-client answers pings inside recv()
        and starts its socket timeout again, so a plain recv() on a connection that
        only pings would wait forever. Control frames come back here instead.
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message from the kernel before the deadline")
            self.ws.settimeout(remaining)
            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                return json.loads(data)

    def close(self) -> None:
        self.ws.close()
