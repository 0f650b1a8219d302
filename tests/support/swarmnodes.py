"""Test hosts for the multi-node swarm tests: Debian's Docker engine in a container per node.

Each node is a container of ``dshub/swarm-node`` (images/swarm-node) on a bridge
network of the test's own, with its engine's socket in a folder of the test, so
the test drives each node's engine as ``docker -H unix://<folder>/docker.sock``.
The nodes are not ``--privileged``: that asks for every capability, and the
sandbox this runs in may hold fewer (here: no ``CAP_SYS_RESOURCE``); they get all
capabilities the host has and neither seccomp nor masked paths, which is what an
engine inside needs.

The data pool and the config folder are the same host folders bind-mounted at
the same paths into every node: what NFS gives real nodes (docs/scale-out.md).
Images reach the nodes by ``docker save | docker load``, as there.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from spawner.core.constants import VERSION
from spawner.hub.edge import PROXY_IMAGE
from tests.support.stack import LAB_IMAGE, SwarmStack, docker

NODE_IMAGE = f"dshub/swarm-node:{VERSION}"
HOST_CAPABILITIES = ("--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE")
UNCONFINED = ("seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined")


@dataclass
class SwarmNodes:
    """``count`` engines joined into one swarm; node 1 is its manager and the edge."""

    workdir: Path
    project: str
    shared: tuple[Path, ...]  # host folders every node sees at the same path
    published_port: int  # node 1's, on the host's 127.0.0.1, at the same port inside
    count: int = 3
    names: list[str] = field(default_factory=list)

    def socket(self, index: int) -> str:
        return f"unix://{self.workdir / f'node{index}' / 'docker.sock'}"

    def docker(self, index: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return docker(*args, check=check, host=self.socket(index))

    @property
    def network(self) -> str:
        return f"{self.project}-nodes"

    def start(self) -> None:
        docker("network", "create", "--label", f"dshub.project={self.project}", self.network)
        for index in range(1, self.count + 1):
            name = f"{self.project}-node{index}"
            (self.workdir / f"node{index}").mkdir(parents=True, exist_ok=True)
            publish = ["-p", f"127.0.0.1:{self.published_port}:{self.published_port}"] if index == 1 else []
            docker("volume", "create", "--label", f"dshub.project={self.project}", f"{name}-engine")
            docker(
                "run", "-d", "--name", name, "--hostname", f"node{index}", "--network", self.network,
                *HOST_CAPABILITIES, *(a for opt in UNCONFINED for a in ("--security-opt", opt)),
                "--label", f"dshub.project={self.project}", "--label", "dshub.role=test-node",
                "-v", f"{name}-engine:/var/lib/docker",
                "-v", f"{self.workdir / f'node{index}'}:/run/node",
                *(a for path in self.shared for a in ("-v", f"{path}:{path}")),
                *publish, NODE_IMAGE,
            )  # fmt: skip
            self.names.append(name)
        for index in range(1, self.count + 1):
            self._wait_for_engine(index)

    def _wait_for_engine(self, index: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.docker(index, "version", check=False).returncode:
            if time.monotonic() > deadline:
                logs = docker("logs", "--tail", "30", self.names[index - 1], check=False)
                raise RuntimeError(f"node{index}'s engine did not start:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.5)

    def address(self, index: int) -> str:
        (info,) = json.loads(docker("inspect", self.names[index - 1]).stdout)
        return info["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def join(self) -> None:
        manager = self.address(1)
        self.docker(1, "swarm", "init", "--advertise-addr", manager)
        token = self.docker(1, "swarm", "join-token", "-q", "worker").stdout.strip()
        for index in range(2, self.count + 1):
            self.docker(index, "swarm", "join", "--token", token, f"{manager}:2377")

    def load(self, images: dict[int, tuple[str, ...]]) -> None:
        """docker save | docker load, per node, of the images it needs."""
        for index, names in images.items():
            save = subprocess.Popen(["docker", "save", *names], stdout=subprocess.PIPE)
            load = subprocess.run(
                ["docker", "-H", self.socket(index), "load", "-q"],
                stdin=save.stdout,
                capture_output=True,
                check=False,
            )
            assert save.stdout is not None
            save.stdout.close()
            if save.wait() or load.returncode:
                raise RuntimeError(f"loading {names} into node{index} failed: {load.stderr.decode()}")

    def node_ids(self) -> dict[str, str]:
        """Node id → hostname (node1, node2, ...)."""
        out = self.docker(1, "node", "ls", "--format", "{{.ID}} {{.Hostname}}").stdout
        return dict(line.split() for line in out.splitlines())

    def destroy(self) -> None:
        for name in self.names:
            docker("rm", "-f", "-v", name, check=False)
            docker("volume", "rm", f"{name}-engine", check=False)
        docker("network", "rm", self.network, check=False)


@contextmanager
def swarm_cluster(
    workdir: Path, profiles: str | None, project: str | None, count: int = 3
) -> Iterator[tuple[SwarmStack, SwarmNodes]]:
    """dshub in swarm mode on ``count`` test nodes: node 1 the manager and the edge.

    The edge is published on the host's 127.0.0.1 (https, self-signed) from node 1;
    the overlay networks unencrypted, since this machine's kernel has no IPsec ESP.
    """
    stack = SwarmStack(workdir, profiles=profiles, **({"project": project} if project else {}))
    stack.pool.mkdir()
    nodes = SwarmNodes(
        workdir / "nodes",
        stack.project,
        shared=(stack.pool, stack.config_dir),
        published_port=stack.https_port,
    )
    try:
        nodes.start()
        nodes.join()
        everywhere = (f"dshub/netpolicy:{VERSION}", LAB_IMAGE)
        nodes.load(
            {1: (f"dshub/hub:{VERSION}", PROXY_IMAGE, *everywhere)}
            | {i: everywhere for i in range(2, count + 1)}
        )
        (info,) = json.loads(docker("network", "inspect", nodes.network).stdout)
        stack.engine = nodes.socket(1)
        stack.render(
            DSHUB_USER_IMAGE=LAB_IMAGE,
            DSHUB_BIND_ADDRESS="0.0.0.0",  # noqa: S104 -- node 1's, published on the host's 127.0.0.1
            DSHUB_TLS="self-signed",
            DSHUB_PUBLIC_URL=f"https://127.0.0.1:{stack.https_port}",
            DSHUB_SWARM_ENCRYPT="false",
            DSHUB_SWARM_NODE_NETWORKS=info["IPAM"]["Config"][0]["Subnet"],
        )
        with stack.running():
            yield stack, nodes
    finally:
        nodes.destroy()


@contextmanager
def local_swarm() -> Iterator[None]:
    """This engine as a one-node swarm: made (on loopback only) and left again, or used as it is."""
    state = json.loads(docker("info", "--format", "{{json .Swarm}}").stdout)
    made_here = state.get("LocalNodeState") != "active"
    if made_here:
        # Loopback only: no port of the swarm's is opened on the machine's network.
        docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377")
    elif not state.get("ControlAvailable"):
        raise RuntimeError("this engine is a swarm worker: swarm mode needs a manager (or no swarm)")
    try:
        yield
    finally:
        if made_here:
            docker("swarm", "leave", "--force", check=False)
