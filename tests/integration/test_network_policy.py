"""Network isolation of user containers, from real user containers, against listeners the test made.

Every destination probed is one this test created: a user's own server, a
socket on the host side of the deployment's bridge, and a network namespace of
the test (its veth on the host) holding a link-local, a private and a public
(documentation range) address. Nothing else is ever contacted. A probe is
"blocked" when the connection attempt times out (dropped by the firewall), and
each listener is first shown to answer a trusted peer, so the block is the
policy's and not a missing listener.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.listeners import host_listener
from tests.support.stack import LAB_IMAGE, REPO, Stack, docker, free_port

PORT = 8765
# Addresses of the test's own namespace: /30 each, the host's side is .2.
NAMESPACE_ADDRESSES = {"link-local": "169.254.77.1", "private": "10.213.77.1", "public": "203.0.113.1"}
PROBE = """
import json, socket, sys
results = {}
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        results[f"{host}:{port}"] = "open"
    except socket.timeout:
        results[f"{host}:{port}"] = "blocked"
    except OSError as error:
        results[f"{host}:{port}"] = type(error).__name__
print(json.dumps(results))
"""


def reach(container: str, *targets: tuple[str, int]) -> dict[str, str]:
    """From inside a container: for each host:port, open, blocked (dropped) or the error."""
    out = docker("exec", "-i", container, "python3", "-", json.dumps(targets), stdin=PROBE).stdout
    return json.loads(out.strip().splitlines()[-1])


@contextmanager
def namespace_listeners() -> Iterator[None]:
    """A network namespace of the test, routed from the host, listening on PORT at each address."""
    tag = uuid.uuid4().hex[:6]
    ns, host_end, ns_end = f"dshubt{tag}", f"dsh{tag}h", f"dsh{tag}n"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", ns)
    listener = None
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        ip("link", "set", ns_end, "netns", ns)
        for address in NAMESPACE_ADDRESSES.values():
            prefix = address.rsplit(".", 1)[0]
            ip("addr", "add", f"{prefix}.2/30", "dev", host_end)
            ip("-n", ns, "addr", "add", f"{address}/30", "dev", ns_end)
        ip("link", "set", host_end, "up")
        ip("-n", ns, "link", "set", ns_end, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "route", "add", "default", "via", "169.254.77.2")
        listener = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", str(PORT), "--bind", "0.0.0.0"],  # noqa: S104 -- in the test's own namespace
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for address in NAMESPACE_ADDRESSES.values():  # from the host: the listener answers
            for _ in range(50):
                try:
                    socket.create_connection((address, PORT), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise RuntimeError(f"the test's listener at {address} does not answer")
        yield
    finally:
        if listener:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    lab = Stack(
        tmp_path_factory.mktemp("netpolicy-stack", numbered=True),
        overrides={"DSHUB_USER_IMAGE": LAB_IMAGE},
        # The development identity provider runs on the users' network too: out of their reach.
        extra_files=("dev-oidc.yaml",),
        extra_env={"dshub_oidc_port": str(free_port())},
    )
    with lab.running() as running:
        yield running


@pytest.fixture(scope="module")
def people(stack):
    ada, bob = stack.sign_up("ada", "ada-password"), stack.sign_up("bob", "bob-password")
    for person in (ada, bob):
        person.start_server()
    return ada, bob


def serve_from_home(stack, name: str) -> str:
    """What a student might run: http.server on 0.0.0.0 in their home. Returns the container's address."""
    (container,) = stack.user_containers(name)
    docker("exec", "-d", container, "python3", "-m", "http.server", str(PORT), "--bind", "0.0.0.0")  # noqa: S104
    (info,) = json.loads(docker("inspect", container).stdout)
    return info["NetworkSettings"]["Networks"][stack.settings.network]["IPAddress"]


def hub_container(stack) -> str:
    (hub,) = stack.containers("hub")
    return hub


def gateway(stack) -> str:
    """The host's address on the deployment's bridge."""
    (info,) = json.loads(docker("network", "inspect", stack.settings.network).stdout)
    return info["IPAM"]["Config"][0]["Gateway"]


def test_a_users_server_answers_only_the_edge_and_the_hub(stack, people):
    address = serve_from_home(stack, "ada")
    (bob,) = stack.user_containers("bob")
    time.sleep(1)  # http.server binds
    assert reach(hub_container(stack), (address, PORT), (address, 8888)) == {
        f"{address}:{PORT}": "open",
        f"{address}:8888": "open",
    }
    assert reach(bob, (address, PORT), (address, 8888)) == {
        f"{address}:{PORT}": "blocked",
        f"{address}:8888": "blocked",
    }


def test_the_hub_api_is_reachable_and_the_rest_of_the_stack_is_not(stack, people):
    (bob,) = stack.user_containers("bob")
    assert reach(bob, ("hub", 8081), ("proxy", 8000), ("proxy", 8099), ("oidc", 9400)) == {
        "hub:8081": "open",
        "proxy:8000": "blocked",
        "proxy:8099": "blocked",
        "oidc:9400": "blocked",
    }
    # Traefik's API listens only on the control network, which user containers are not on.
    assert reach(bob, ("proxy-api", 8099)) == {"proxy-api:8099": "gaierror"}
    assert reach(hub_container(stack), ("proxy", 8099), ("proxy-api", 8099)) == {
        "proxy:8099": "ConnectionRefusedError",
        "proxy-api:8099": "open",
    }


def test_host_link_local_and_private_destinations_are_blocked(stack, people):
    (bob,) = stack.user_containers("bob")
    hub = hub_container(stack)
    ns = NAMESPACE_ADDRESSES
    with host_listener(gateway(stack)) as port, namespace_listeners():
        targets = [(gateway(stack), port), *((address, PORT) for address in ns.values())]
        assert set(reach(hub, *targets).values()) == {"open"}
        seen = reach(bob, *targets)
    assert seen == {
        f"{gateway(stack)}:{port}": "blocked",
        f"{ns['link-local']}:{PORT}": "blocked",
        f"{ns['private']}:{PORT}": "blocked",
        f"{ns['public']}:{PORT}": "open",  # DSHUB_USER_EGRESS=public: the outside world
    }


def test_egress_follows_the_setting_after_make_up_again(stack, people):
    (bob,) = stack.user_containers("bob")
    ns = NAMESPACE_ADDRESSES
    try:
        for egress, public in (("none", "blocked"), (f"{ns['link-local']}/32", "blocked")):
            # `up` returns once the recreated policy service has applied the new setting (healthcheck).
            stack.reconfigure(DSHUB_USER_EGRESS=egress)
            with namespace_listeners():
                seen = reach(bob, *((address, PORT) for address in ns.values()), ("hub", 8081))
            expected_link_local = "open" if egress.startswith(ns["link-local"]) else "blocked"
            assert seen == {
                f"{ns['link-local']}:{PORT}": expected_link_local,
                f"{ns['private']}:{PORT}": "blocked",
                f"{ns['public']}:{PORT}": public,
                "hub:8081": "open",
            }, egress
    finally:
        stack.reconfigure(DSHUB_USER_EGRESS="public")


def restart_engine() -> None:
    """Stop dockerd and start it again the way `make test` does (scripts/engine.sh)."""
    pid = int(open("/var/run/docker.pid").read())
    os.kill(pid, 15)
    for _ in range(300):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    subprocess.run([str(REPO / "scripts" / "engine.sh")], check=True, capture_output=True)


def test_the_policy_holds_after_dockerd_restarts(stack, people):
    ada, bob = people
    restart_engine()
    stack.wait_healthy(timeout=180)
    for person in (ada, bob):
        person.stop_server()  # the engine's restart ended the containers; the hub notices
        person.start_server()
    address = serve_from_home(stack, "ada")
    (bob_container,) = stack.user_containers("bob")
    time.sleep(1)
    with host_listener(gateway(stack)) as port:
        seen = reach(bob_container, (address, PORT), (gateway(stack), port), ("hub", 8081), ("proxy", 8099))
    assert seen == {
        f"{address}:{PORT}": "blocked",
        f"{gateway(stack)}:{port}": "blocked",
        "hub:8081": "open",
        "proxy:8099": "blocked",
    }
