"""Several nodes: three engines of the test's own joined into one swarm.

Twelve users spread over the nodes; a node drained while its user is away, and
their next start elsewhere with their files; a profile bound to a labelled node.
Not in `make test` (about 5 minutes): `make test-nodes` runs it. The nodes are
Debian's engine in containers of the test (tests/support/swarmnodes.py),
the pool one host folder mounted into each at the same path (NFS's part on real
nodes). The overlay networks run unencrypted here: this machine's kernel has no
IPsec ESP (CONFIG_INET_ESP), which encrypted overlays between nodes need.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.hub import HubSession
from tests.support.stack import LAB_IMAGE, SwarmStack
from tests.support.swarmnodes import SwarmNodes, swarm_cluster

COURSE = "node.labels.course == ds101"
USERS = [f"student{i:02d}" for i in range(1, 13)]


PROFILES = """
profiles:
  - name: lab
    image: {image}
    default: true
  - name: course
    display_name: DS 101 (course nodes)
    image: {image}
    placement: ["{course}"]
  - name: on-node3
    image: {image}
    placement: ["node.id == {node3}"]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[SwarmStack, SwarmNodes]]:
    workdir = tmp_path_factory.mktemp("swarm-nodes", numbered=True)
    profiles = PROFILES.format(image=LAB_IMAGE, course=COURSE, node3="none")
    with swarm_cluster(workdir, profiles, project=None) as up:
        yield up


def placed(stack: SwarmStack, nodes: SwarmNodes, name: str) -> str:
    """The node a user's running server is on."""
    out = nodes.docker(
        1,
        "service",
        "ps",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}}",
        f"{stack.project}-user-{name}",
    ).stdout.split()
    assert len(out) == 1, out
    return out[0]


def start_all(people: list[HubSession], options: dict | None = None) -> None:
    with ThreadPoolExecutor(len(people)) as pool:
        list(pool.map(lambda person: person.start_server(options=options), people))


@pytest.fixture(scope="module")
def students(cluster) -> dict[str, HubSession]:
    stack, _ = cluster
    return {name: stack.sign_up(name, f"{name}-password") for name in USERS}


def test_twelve_users_spread_over_the_nodes(cluster, students):
    stack, nodes = cluster
    start_all(list(students.values()))
    where = {name: placed(stack, nodes, name) for name in students}
    assert set(where.values()) == {"node1", "node2", "node3"}, Counter(where.values())
    # Each answers through the one edge, wherever it runs, as its own uid in the pool.
    for name, person in students.items():
        assert person.server_get("api/status").status_code == 200, name
    away = next(name for name, node in where.items() if node == "node3")
    uid = students[away].run("import os; open('notes.txt', 'w').write('kept'); print(os.getuid())").strip()
    assert (stack.pool / "users" / away / "notes.txt").stat().st_uid == int(uid)
    for person in students.values():
        person.stop_server()


def test_a_drained_nodes_user_starts_elsewhere_with_their_files(cluster, students):
    stack, nodes = cluster
    node3 = next(node_id for node_id, host in nodes.node_ids().items() if host == "node3")
    # A profile that puts servers on node3 (the hub reads the edited file at the next start).
    (stack.config_dir / "profiles.yaml").write_text(
        PROFILES.format(image=LAB_IMAGE, course=COURSE, node3=node3)
    )
    away, working = students["student01"], students["student02"]
    start_all([away, working], {"profile": "on-node3"})
    assert placed(stack, nodes, away.name) == placed(stack, nodes, working.name) == "node3"
    away.run("open('draft.ipynb', 'w').write('{}')")
    away.stop_server()

    nodes.docker(1, "node", "update", "--availability", "drain", node3)
    try:
        # The one still working on node3 is reported stopped (the hub's poll, every 30 s).
        deadline = time.monotonic() + 120
        while working.api("GET", f"/users/{working.name}").json()["servers"]:
            assert time.monotonic() < deadline, "the drained node's server is still reported running"
            time.sleep(2)
        # The one who was away starts again: elsewhere, with their files.
        away.start_server(options={"profile": "lab"})
        assert placed(stack, nodes, away.name) in {"node1", "node2"}
        assert away.run("print(open('draft.ipynb').read())").strip() == "{}"
        away.stop_server()
    finally:
        nodes.docker(1, "node", "update", "--availability", "active", node3)


def test_a_course_profile_lands_only_on_its_labelled_node(cluster, students):
    stack, nodes = cluster
    node2 = next(node_id for node_id, host in nodes.node_ids().items() if host == "node2")
    nodes.docker(1, "node", "update", "--label-add", "course=ds101", node2)
    course = [students[name] for name in USERS[2:6]]
    start_all(course, {"profile": "course"})
    assert {placed(stack, nodes, person.name) for person in course} == {"node2"}
    for person in course:
        person.stop_server()
