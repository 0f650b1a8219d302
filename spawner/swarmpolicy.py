"""Swarm mode's network policy: each user server's own firewall, put in place by an agent on its node.

The policy is single-host mode's (:mod:`spawner.netpolicy`): a user's server
reaches the hub's API and, as ``DSHUB_USER_EGRESS`` says, the outside world;
never other users' servers, Traefik, or private addresses. On one host the
host's firewall sees every packet between containers; on a swarm it does not:
containers on an overlay network talk through VXLAN, inside namespaces of the
engine's own. So the policy is kept where every packet of a server passes, its
own network namespace, by the ``netpolicy`` agent, a global service of the
stack (one task on every node), before the server runs:

* ``OUTPUT``: loopback (the engine's DNS is there) and answers; TCP to the hub's
  API port on the users' network; nothing else on that network (other users,
  Traefik); the resolvers the engine forwards lookups to; then the egress rules.
* ``INPUT``: no connection to the hub's API port from outside the server, so on
  the users' network only the hub answers on that port and the ``OUTPUT`` rule
  for it cannot reach another user's listener.

The user cannot change the rules (no ``NET_ADMIN``, no privilege gain), and
cannot run anything before they hold: in swarm mode the spawner makes the
image's entrypoint wait until the agent has marked the namespace (an alias of
its loopback interface, which anyone in it can read and only ``NET_ADMIN`` can
set). A node without a running agent starts no user server: the entrypoint
gives up after ``DSHUB_POLICY_WAIT`` seconds and says why.

The agent enters a server's namespace through ``/proc/<pid>/ns/net`` of the
host (mounted at ``/host/proc``): hence ``SYS_ADMIN`` (setns), ``SYS_PTRACE``
(a namespace of another uid's process) and ``NET_ADMIN``/``NET_RAW``
(iptables). It has no network of its own.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker

from . import heartbeat
from . import settings as dshub_settings
from .netpolicy import HUB_API_PORT, egress_rules, nameservers

log = logging.getLogger("dshub.swarmpolicy")

HOST_PROC = Path("/host/proc")
HOST_RESOLV_CONF = Path("/host/etc/resolv.conf")
# The mark the entrypoint waits for (images/lab/dshub-entrypoint).
POLICED_ALIAS = "dshub-policy"
CHAIN_IN, CHAIN_OUT = "DSHUB-IN", "DSHUB-OUT"
# A full look at the node's servers this often, besides the engine's start events.
INTERVAL = 2.0
APPLIED = Path("/run/dshub-swarmpolicy-applied")


def server_rules(subnet: str, egress: tuple[str, ...], resolvers: tuple[str, ...]) -> str:
    """iptables-restore input for a server's namespace: the two chains and the jumps to them.

    The namespace's filter table is the engine's to leave empty (it keeps its
    DNS redirect in ``nat`` and its service marks in ``mangle``), so it is
    replaced whole: applying it twice gives the same table.
    """
    out = [
        "-o lo -j RETURN",
        "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-d {subnet} -p tcp -m tcp --dport {HUB_API_PORT} -j RETURN",
        f"-d {subnet} -j DROP",
    ]
    for server in resolvers:
        out += [f"-d {server}/32 -p {proto} -m {proto} --dport 53 -j RETURN" for proto in ("udp", "tcp")]
    out += egress_rules(egress)
    inbound = [f"! -i lo -p tcp -m tcp --dport {HUB_API_PORT} -j DROP"]
    lines = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        f":{CHAIN_IN} - [0:0]",
        f":{CHAIN_OUT} - [0:0]",
        f"-A INPUT -j {CHAIN_IN}",
        f"-A OUTPUT -j {CHAIN_OUT}",
        *(f"-A {CHAIN_IN} {rule}" for rule in inbound),
        *(f"-A {CHAIN_OUT} {rule}" for rule in out),
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"


def users_subnet(container: dict, network: str) -> str | None:
    """The users' network as the server sees it (its address and prefix there)."""
    attached = container["NetworkSettings"]["Networks"].get(network) or {}
    address, prefix = attached.get("IPAddress"), attached.get("IPPrefixLen")
    if not address or not prefix:
        return None
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def in_namespace(pid: int, *command: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        ["nsenter", f"--net={HOST_PROC}/{pid}/ns/net", "--", *command],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{command[0]} in the namespace of pid {pid}: {done.stderr.strip()}")


def police(container: dict, settings: dshub_settings.Settings, resolvers: tuple[str, ...]) -> None:
    """Put the policy in the server's namespace, then mark it so the server may start."""
    pid = container["State"]["Pid"]
    subnet = users_subnet(container, settings.network)
    if not pid or subnet is None:
        name = container["Name"].lstrip("/")
        raise RuntimeError(f"{name} has no process or no address on {settings.network}")
    in_namespace(pid, "iptables-restore", "-w", stdin=server_rules(subnet, settings.user_egress, resolvers))
    in_namespace(pid, "ip", "link", "set", "lo", "alias", POLICED_ALIAS)


class Agent:
    """Polices every user server of the deployment that starts on this node."""

    def __init__(self, settings: dshub_settings.Settings, client: docker.DockerClient) -> None:
        self.settings = settings
        self.client = client
        self.policed: set[str] = set()
        self.wake = threading.Event()
        self.labels = [f"dshub.project={settings.project}", "dshub.role=user-server"]

    def watch_starts(self) -> None:
        """Wake the loop at once when a server's container starts: its user is waiting."""
        while True:
            try:
                for _ in self.client.events(
                    decode=True, filters={"type": "container", "event": "start", "label": self.labels}
                ):
                    self.wake.set()
            except docker.errors.DockerException as error:
                log.warning("Engine events interrupted (%s); watching again", error)
                time.sleep(1)

    def round(self) -> None:
        resolvers = nameservers(HOST_RESOLV_CONF)
        running = self.client.api.containers(filters={"label": self.labels, "status": "running"})
        ids = {c["Id"] for c in running}
        self.policed &= ids
        for container_id in sorted(ids - self.policed):
            container = self.client.api.inspect_container(container_id)
            try:
                police(container, self.settings, resolvers)
            except RuntimeError as error:
                log.error("Could not police %s (retrying): %s", container["Name"], error)
                continue
            self.policed.add(container_id)
            log.info("Policed %s", container["Name"].lstrip("/"))

    def run(self) -> None:
        threading.Thread(target=self.watch_starts, daemon=True, name="events").start()
        while True:
            try:
                self.round()
                APPLIED.touch()
            except (OSError, docker.errors.DockerException) as error:
                log.error("Could not look at this node's servers (retrying): %s", error)
            self.wake.wait(INTERVAL)
            self.wake.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.swarmpolicy", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["run", "healthy"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s swarmpolicy: %(message)s")
    if args.command == "healthy":
        return 0 if heartbeat.healthy(APPLIED) else 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Agent(dshub_settings.load(), docker.from_env()).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
