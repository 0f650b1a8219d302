"""A person's session with the hub, through the edge proxy only (127.0.0.1)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import requests
import websocket


class SignInRefused(AssertionError):
    pass


class HubSession:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.token: str | None = None
        self.name: str | None = None

    def sign_in(self, name: str, password: str) -> None:
        page = self.http.get(f"{self.base_url}/hub/login", timeout=30)
        page.raise_for_status()
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, "the login form carries an _xsrf field"
        # next=/hub/home: the default landing would start the server (tests start it themselves).
        resp = self.http.post(
            f"{self.base_url}/hub/login?next=%2Fhub%2Fhome",
            data={"username": name, "password": password, "_xsrf": xsrf[1]},
            timeout=60,
        )
        if "jupyterhub-session-id" not in self.http.cookies or "/hub/login" in resp.url:
            raise SignInRefused(f"sign-in of {name!r} refused (status {resp.status_code})")
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
        return requests.request(
            method,
            f"{self.base_url}/hub/api{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
            **kwargs,
        )

    def start_server(self, timeout: float = 180) -> float:
        """Start the default server; return seconds until it is ready."""
        started = time.monotonic()
        resp = self.api("POST", f"/users/{self.name}/server")
        assert resp.status_code in (201, 202), resp.text
        while time.monotonic() - started < timeout:
            server = self.api("GET", f"/users/{self.name}").json()["servers"].get("", {})
            if server.get("ready"):
                return time.monotonic() - started
            time.sleep(0.25)
        raise TimeoutError(f"server of {self.name} not ready within {timeout}s")

    def stop_server(self) -> None:
        resp = self.api("DELETE", f"/users/{self.name}/server")
        assert resp.status_code in (202, 204), resp.text
        for _ in range(240):
            if not self.api("GET", f"/users/{self.name}").json()["servers"]:
                return
            time.sleep(0.25)
        raise TimeoutError(f"server of {self.name} did not stop")

    def server_get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(
            f"{self.base_url}/user/{self.name}/{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
            **kwargs,
        )

    def new_kernel(self) -> str:
        resp = requests.post(
            f"{self.base_url}/user/{self.name}/api/kernels",
            headers={"Authorization": f"token {self.token}"},
            json={"name": "python3"},
            timeout=60,
        )
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    def run(self, code: str) -> str:
        """Execute code in a fresh Python kernel of the user's own server."""
        kernel = self.kernel(self.new_kernel())
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
        )

    def kernel(self, kernel_id: str) -> Kernel:
        ws_url = self.base_url.replace("http://", "ws://", 1)
        return Kernel(
            f"{ws_url}/user/{self.name}/api/kernels/{kernel_id}/channels",
            headers=[f"Authorization: token {self.token}"],
        )


class Kernel:
    """A kernel's websocket (Jupyter messaging over JSON), opened through the proxy."""

    def __init__(self, url: str, headers: list[str]) -> None:
        self.ws = websocket.create_connection(url, header=headers, timeout=60)
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
            msg = json.loads(self.ws.recv())
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

    def close(self) -> None:
        self.ws.close()
