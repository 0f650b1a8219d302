"""Runs inside a hub container (piped to `python3 -`): kernel execute round trips.

Arguments: JSON {"paths": {name: {"base": server http URL, "token": ...}}, "n": 200}.
Each path gets a kernel of its own (made through that path); executes of `1`
alternate between the paths, each timed from sending execute_request until the
kernel reports idle for it. Output: one JSON row per execute on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

WARMUP = 5


def execute_request(session: str) -> tuple[str, str]:
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "session": session, "username": "", "msg_type": "execute_request"}
    content = {"code": "1", "silent": False, "store_history": False, "user_expressions": {}}
    content |= {"allow_stdin": False, "stop_on_error": True}
    msg = {"header": header | {"version": "5.3"}, "parent_header": {}, "metadata": {}, "content": content}
    return msg_id, json.dumps(msg | {"channel": "shell", "buffers": []})


async def round_trip(ws: WebSocketClientConnection, session: str) -> float:
    msg_id, text = execute_request(session)
    started = time.perf_counter()
    await ws.write_message(text)
    while True:
        msg = json.loads(await ws.read_message())
        if (
            msg.get("parent_header", {}).get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            return time.perf_counter() - started


async def connect(base: str, token: str) -> WebSocketClientConnection:
    headers = {"Authorization": f"token {token}"}
    made = await AsyncHTTPClient().fetch(
        HTTPRequest(f"{base}/api/kernels", method="POST", headers=headers, body='{"name": "python3"}')
    )
    kernel = json.loads(made.body)["id"]
    ws_base = "ws" + base.removeprefix("http")
    ws = await websocket_connect(HTTPRequest(f"{ws_base}/api/kernels/{kernel}/channels", headers=headers))
    # As a browser and Traefik do: this client never holds a frame back (Nagle).
    ws.protocol.stream.set_nodelay(True)
    return ws


async def main(paths: dict[str, dict[str, str]], n: int) -> None:
    sockets = {name: await connect(path["base"], path["token"]) for name, path in paths.items()}
    session = uuid.uuid4().hex
    for _ in range(WARMUP):
        for ws in sockets.values():
            await round_trip(ws, session)
    for i in range(n):
        for name, ws in sockets.items():
            ms = (await round_trip(ws, session)) * 1000
            print(json.dumps({"path": name, "run": i, "ms": round(ms, 3)}), flush=True)


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    asyncio.run(main(args["paths"], args["n"]))
