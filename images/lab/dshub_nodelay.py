"""Kernel messages leave the server at once, not after the client's delayed ACK.

A cell's execution answers with several small websocket frames (busy, the input,
the result, idle), each its own write. Tornado leaves Nagle's algorithm on for
websockets, so every frame after the first waited until the peer acknowledged
the one before, and peers (browsers, Traefik) delay an ACK by up to 40 ms: about
every second cell stalled ~40 ms, directly and through the edge alike
(BENCHMARKS.md, Proxy overhead). Set as ``ServerApp.kernel_websocket_connection_class``
in jupyter_server_config.json.
"""

from __future__ import annotations

import asyncio

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class NoDelayKernelConnection(ZMQChannelsWebsocketConnection):
    def connect(self) -> asyncio.Future[None] | None:
        self.websocket_handler.set_nodelay(True)
        return super().connect()
