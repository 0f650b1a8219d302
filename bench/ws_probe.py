"""Runs inside a hub container (piped to `python3 -`): kernel execute round trips.

Arguments: JSON {"paths": {"edge": ws-url, "direct": ws-url}, "token": ..., "n": 200}.
Each path has its own kernel; executes of `1` alternate between the paths, each
timed from sending execute_request until the kernel reports idle for it.
Output: one JSON row per execute on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

from tornado.httpclient import HTTPRequest
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


async def main(paths: dict[str, str], token: str, n: int) -> None:
    sockets = {}
    for name, url in paths.items():
        ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
        # As a browser and Traefik do: without it Nagle's algorithm holds each small
        # frame for the peer's delayed ACK (~40 ms) on the direct path.
        ws.protocol.stream.set_nodelay(True)
        sockets[name] = ws
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
    asyncio.run(main(args["paths"], args["token"], args["n"]))
