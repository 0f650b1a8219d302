"""Swarm mode on a single-node swarm: the whole user flow, and starts the swarm refuses.

The swarm is this engine's own: made here (`docker swarm init` on loopback only)
when the engine is in none, and left again at the end; an engine already in a
swarm is used as it is (only this test's labelled stack and services are made
and removed).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.listeners import host_listener
from tests.support.stack import LAB_IMAGE, SwarmStack, docker
from tests.support.swarmnodes import local_swarm

# The lean image for the flow; the data-science image for VS Code from the launcher.
NOWHERE = "node.labels.dshub-test-nowhere == true"


@pytest.fixture(scope="module")
def swarm_engine() -> Iterator[None]:
    with local_swarm():
        yield


@pytest.fixture(scope="module")
def broken_image() -> Iterator[str]:
    """A user image whose entrypoint does not exist: its task fails on the node."""
    tag = f"dshub/test-broken-entrypoint:{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "--label", "dshub.project=dshubt-images", "-"],
        input=f'FROM {LAB_IMAGE}\nENTRYPOINT ["/no/such/entrypoint"]\nCMD ["jupyterhub-singleuser"]\n',
        text=True,
        check=True,
        capture_output=True,
    )
    yield tag
    docker("image", "rm", "-f", tag, check=False)


@pytest.fixture(scope="module")
def swarm_stack(swarm_engine, broken_image, tmp_path_factory) -> Iterator[SwarmStack]:
    profiles = f"""
profiles:
  - name: lab
    image: {LAB_IMAGE}
    default: true
  - name: datascience
    image: dshub/datascience:{LAB_IMAGE.rsplit(":", 1)[1]}
  - name: broken
    image: {broken_image}
  - name: nowhere
    image: {LAB_IMAGE}
    placement: ["{NOWHERE}"]
"""
    stack = SwarmStack(tmp_path_factory.mktemp("swarm-stack", numbered=True), profiles=profiles)
    with stack.running():
        yield stack


def task_of(service: str) -> dict:
    tasks = docker("service", "ps", "-q", "--no-trunc", service).stdout.split()
    return json.loads(docker("inspect", tasks[0]).stdout)[0]


def test_whole_user_flow_on_the_swarm(swarm_stack):
    ada = swarm_stack.sign_up("ada", "ada-password")
    bob = swarm_stack.sign_up("bob", "bob-password")
    ada.start_server()

    # A swarm service, not a container the hub made: one task, on this node, as ada's uid.
    (service,) = [s for s in swarm_stack.services() if "ada" in docker("service", "inspect", s).stdout]
    spec = json.loads(docker("service", "inspect", service).stdout)[0]["Spec"]
    container_spec = spec["TaskTemplate"]["ContainerSpec"]
    assert spec["Labels"]["dshub.user"] == "ada"
    assert container_spec["CapabilityDrop"] == ["ALL"]
    assert spec["TaskTemplate"]["Resources"]["Limits"]["Pids"] == 512
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"

    # Lab's kernel through Traefik, with the hardening the single-host container has.
    status = ada.run(
        "import os\n"
        "fields = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines())\n"
        # cgroup v1 (as on this test machine) or v2: the server's own pids limit.
        "pids = next(p for p in ('/sys/fs/cgroup/pids/pids.max', '/sys/fs/cgroup/pids.max')\n"
        "            if os.path.exists(p))\n"
        "print(os.getuid(), fields['NoNewPrivs'], fields['CapEff'], fields['CapBnd'],\n"
        "      open(pids).read().strip())\n"
        "_ = open(os.path.expanduser('~/from-the-swarm.txt'), 'w').write('hello')"
    )
    uid, no_new_privs, cap_eff, cap_bnd, pids_max = status.split()
    assert (no_new_privs, cap_eff, cap_bnd, pids_max) == ("1", "0" * 16, "0" * 16, "512")

    # The file is in the pool, owned by ada's own uid.
    written = swarm_stack.pool / "users" / "ada" / "from-the-swarm.txt"
    assert written.read_text() == "hello"
    assert written.stat().st_uid == int(uid) != 0

    # Sharing: bob opens ada's server once she shares it.
    shared = ada.api("POST", "/shares/ada/", json={"user": "bob"})
    assert shared.status_code == 200, shared.text
    opened = bob.bare.get(
        f"{bob.base_url}/user/ada/api/contents", headers={"Authorization": f"token {bob.token}"}, timeout=60
    )
    assert opened.status_code == 200, opened.text

    ada.stop_server()
    assert swarm_stack.services() == []


LISTEN = """
import socket, threading
def serve(port):
    server = socket.create_server(("0.0.0.0", port))
    while True:
        conn, _ = server.accept()
        conn.sendall(b"finn")
        conn.close()
for port in (9999, 8081):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
print(socket.gethostbyname(socket.gethostname()))
"""

REACH = """
import socket, urllib.request
def reach(host, port):
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            return "open"
    except OSError as e:
        return type(e).__name__
hub = urllib.request.urlopen("http://hub:8081/hub/api", timeout=10).status
print(hub, reach("{finn}", 9999), reach("{finn}", 8081), reach("proxy", 8000), reach("{node}", {node_port}))
"""


def gwbridge_gateway() -> str:
    """The node's own address on docker_gwbridge: the way out of a swarm server, to its host."""
    (info,) = json.loads(docker("network", "inspect", "docker_gwbridge").stdout)
    return info["IPAM"]["Config"][0]["Gateway"]


def test_users_servers_cannot_reach_each_other_or_the_node_on_the_swarm(swarm_stack):
    erin = swarm_stack.sign_up("erin", "erin-password")
    finn = swarm_stack.sign_up("finn", "finn-password")
    erin.start_server()
    finn.start_server()
    node = gwbridge_gateway()
    try:
        with host_listener(node) as node_port:
            # The test's own listener on the node answers the node itself.
            socket.create_connection((node, node_port), timeout=3).close()
            # Listeners of finn's own, on a port of his choosing and on the hub's API port.
            kernel = finn.kernel(finn.new_kernel())
            try:
                finn_address = kernel.execute(LISTEN).strip()
                reach = REACH.format(finn=finn_address, node=node, node_port=node_port)
                # From inside his own server they answer: they are up.
                assert "open open" in kernel.execute(reach)
                seen = erin.run(reach).split()
            finally:
                kernel.close()
        hub_status, to_finn, to_finns_8081, to_proxy, to_node = seen
        assert hub_status == "200"  # the hub's API: allowed
        assert to_finn != "open"  # another user's listener: dropped
        assert to_finns_8081 != "open"  # ... also on the hub's port
        assert to_proxy != "open"  # Traefik: dropped
        assert to_node != "open"  # the node itself, whatever DSHUB_USER_EGRESS says
    finally:
        erin.stop_server()
        finn.stop_server()


def test_vscode_from_the_launcher_on_the_swarm(swarm_stack):
    cleo = swarm_stack.sign_up("cleo", "cleo-password")
    cleo.start_server(options={"profile": "datascience"})
    try:
        info = cleo.server_get("server-proxy/servers-info").json()
        assert "vscode" in {server["name"] for server in info["server_processes"]}
        page = cleo.http.get(f"{cleo.base_url}/user/cleo/vscode/", timeout=120)
        assert page.status_code == 200
        ws = cleo.vscode_websocket()
        try:
            assert ws.connected
        finally:
            ws.close()
    finally:
        cleo.stop_server()


def failed_start(person, options: dict) -> str:
    """What the hub tells the person about a start that fails (at once, or while they wait)."""
    resp = person.api("POST", f"/users/{person.name}/servers/", json=options)
    if resp.status_code >= 400:
        return resp.json()["message"]
    assert resp.status_code == 202, resp.text
    # The spawn page's view: the default server's progress stream, which ends with the failure.
    stream = person.api("GET", f"/users/{person.name}/server/progress", stream=True)
    return "\n".join(line for line in stream.iter_lines(decode_unicode=True) if line)


@pytest.mark.parametrize(
    ("profile", "said"),
    [
        ("broken", "could not start on the swarm"),
        ("nowhere", "No node of the swarm can run your server"),
    ],
)
def test_a_start_the_swarm_refuses_is_reported_and_cleaned_up(swarm_stack, profile, said):
    name = f"dora{profile}"
    dora = swarm_stack.sign_up(name, f"{name}-password")
    assert said in failed_start(dora, {"profile": profile})
    # The hub removes the service once the failed start has ended.
    deadline = time.monotonic() + 30
    while [s for s in swarm_stack.services() if name in docker("service", "inspect", s).stdout]:
        assert time.monotonic() < deadline, "the failed server's service was not removed"
        time.sleep(0.5)
    # Nothing is left in the way: the next start with a good profile works.
    dora.start_server(options={"profile": "lab"})
    dora.stop_server()


def test_swarm_mode_refuses_the_single_host_command(swarm_stack):
    # `make up` on swarm settings stops with the command to use.
    env = {**os.environ, **swarm_stack.settings.as_env()}
    done = subprocess.run(
        ["make", "-s", "up", f"SETTINGS={swarm_stack.settings_file}"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "make swarm-up" in done.stdout + done.stderr
