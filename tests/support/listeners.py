"""Listeners a test starts itself, to prove a block against (never someone else's address)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def host_listener(address: str) -> Iterator[int]:
    """A TCP listener of the test on the host, at ``address`` (the bridge's gateway)."""
    server = socket.create_server((address, 0))
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()
