"""The idle culler stops a server nobody uses and leaves an active one running."""

import threading
import time

import pytest

from spawner.hub.culling import check_interval
from tests.support.stack import LAB_IMAGE, Stack

IDLE_TIMEOUT = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(
        tmp_path_factory.mktemp("stack", numbered=True),
        overrides={
            "DSHUB_CULL_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
            "DSHUB_USER_IMAGE": LAB_IMAGE,
        },
    ).running() as stack:
        yield stack


def test_the_idle_server_is_culled_and_the_busy_one_is_not(stack):
    idle = stack.sign_up("idle", "idle-password")
    busy = stack.sign_up("busy", "busy-password")
    idle.start_server()
    busy.start_server()
    kernel = busy.kernel(busy.new_kernel())
    culled = threading.Event()

    def keep_idle_watched() -> None:
        deadline = time.monotonic() + IDLE_TIMEOUT * 4
        while time.monotonic() < deadline:
            if "" not in idle.api("GET", "/users/idle").json()["servers"]:
                culled.set()
                return
            time.sleep(1)

    watcher = threading.Thread(target=keep_idle_watched)
    watcher.start()
    try:
        # busy works in a notebook the whole time: a cell every few seconds.
        while watcher.is_alive():
            assert kernel.execute("sum(range(1000))") == "499500"
            time.sleep(check_interval(IDLE_TIMEOUT) / 2)
    finally:
        watcher.join()
        kernel.close()
    assert culled.is_set(), "the idle server was not culled within 4x the timeout"
    assert "" in busy.api("GET", "/users/busy").json()["servers"]
    assert busy.server_get("api/status").status_code == 200
    assert stack.user_containers("idle") == []
    # The admin sees why in the hub's log (make logs).
    logs = stack.compose("logs", "--no-color", "hub").stdout
    assert "Culling server idle (inactive for" in logs
    busy.stop_server()
