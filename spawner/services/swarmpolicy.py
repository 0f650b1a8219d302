"""Swarm mode's network policy: each user server's own firewall, put in place by an agent on its node.

The policy is single-host mode's (:mod:`spawner.services.netpolicy`): a user's server
reaches the hub's API and, as ``DSHUB_USER_EGRESS`` says, the outside world;
never other users' servers, Traefik, or private addresses. On one host the
host's firewall sees every packet between containers; on a swarm it does not:
containers on an overlay network talk through VXLAN, inside namespaces of the
engine's own. So the policy is kept where every packet of a server passes, its
own network namespace, by the ``netpolicy`` agent, a global service of the
stack (one task on every node), before the server runs:

* ``OUTPUT``: loopback (the engine's DNS is there) and answers; TCP to the hub's
  API port on the users' network; nothing else on that network (other users,
  Traefik); the resolvers the engine forwards the server's lookups to; never the
  node itself (its addresses, its ``docker_gwbridge``), the nodes' networks
  (``DSHUB_SWARM_NODE_NETWORKS``) or the swarm's own ports, whatever the egress
  setting allows; then the egress rules. No IPv6 at all.
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
(iptables). It holds the namespace open and checks that it is the container's
before anything is written, so a pid the kernel hands to another process in
between cannot turn the rules on the node itself. The rules are put in place
once per server: the user cannot change them (no ``NET_ADMIN``), only root on
the node can. It runs in the host's network, to read the node's addresses.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from spawner.config import settings as dshub_settings
from spawner.core.constants import HUB_API_PORT, USER_SERVER_ROLE, project_filter
from spawner.services import heartbeat
from spawner.services.netpolicy import egress_rules, nameservers

log = logging.getLogger("dshub.swarmpolicy")

HOST_PROC = Path("/host/proc")
HOST_RESOLV_CONF = Path("/host/etc/resolv.conf")
# The mark the entrypoint waits for (images/lab/dshub-entrypoint).
# The mark the entrypoint gate waits for names this module's own version: an agent
# of another dshub version (an image left on a node) marks nothing the gate accepts.
POLICED_ALIAS = "dshub-policy-" + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
CHAIN_IN, CHAIN_OUT = "DSHUB-IN", "DSHUB-OUT"
# A full look at the node's servers this often, besides the engine's start events.
INTERVAL = 2.0
APPLIED = Path("/run/dshub-swarmpolicy-applied")


# The swarm's own ports: managers' API, gossip, VXLAN (raw overlay frames would
# pass every server's policy on arrival). Never a user's to send to.
SWARM_PORTS = (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789))
# Delivered to the node itself (or to everyone on a link), whatever the egress setting.
NEVER = ("255.255.255.255/32", "224.0.0.0/4")


@dataclass(frozen=True)
class NodeFacts:
    """What the agent knows of its node, for every server there."""

    # The node's own addresses and its docker_gwbridge subnet: a server's way to its host.
    host: tuple[str, ...]
    # DSHUB_SWARM_NODE_NETWORKS: the other nodes', the file server's.
    nodes: tuple[str, ...]


def server_rules(subnet: str, egress: tuple[str, ...], resolvers: tuple[str, ...], node: NodeFacts) -> str:
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
    # Whatever DSHUB_USER_EGRESS allows: never the node, the nodes, the swarm's ports.
    out += [f"-p {proto} -m {proto} --dport {port} -j DROP" for proto, port in SWARM_PORTS]
    out += [f"-d {network} -j DROP" for network in (*node.host, *node.nodes, *NEVER)]
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


# The deployment's networks have no IPv6: a server has none to use, in or out.
IPV6_RULES = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n" + (
    "-A INPUT -i lo -j ACCEPT\n-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n"
)
# One shell in the server's namespace: rules (v4, then v6), then the mark, or nothing.
# A kernel without IPv6 has no IPv6 to close.
APPLY = (
    'printf %s "$1" | iptables-restore -w '
    '&& { [ ! -d /proc/sys/net/ipv6 ] || printf %s "$2" | ip6tables-restore -w; } '
    f"&& ip link set lo alias {POLICED_ALIAS}"
)


def users_subnet(container: dict, network: str) -> str | None:
    """The users' network as the server sees it (its address and prefix there)."""
    attached = container["NetworkSettings"]["Networks"].get(network) or {}
    address, prefix = attached.get("IPAddress"), attached.get("IPPrefixLen")
    if not address or not prefix:
        return None
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


_EXT_SERVERS = re.compile(r"^# ExtServers: \[(.*)\]", re.MULTILINE)
_IPV4 = re.compile(r"(?<![0-9.])(\d{1,3}(?:\.\d{1,3}){3})(?![0-9.])")


def container_resolvers(resolv_conf: str) -> tuple[str, ...] | None:
    """The servers the engine's DNS forwards a container's lookups to from its namespace.

    None: its resolv.conf does not say (engines before 25). ``host(...)`` entries
    are asked from the node's own namespace, so they need no rule here.
    """
    found = _EXT_SERVERS.search(resolv_conf)
    if found is None:
        return None
    in_namespace = re.sub(r"host\([^)]*\)", " ", found[1])
    addresses = []
    for candidate in _IPV4.findall(in_namespace):
        try:
            address = ipaddress.IPv4Address(candidate)
        except ValueError:
            continue
        if not address.is_loopback:
            addresses.append(str(address))
    return tuple(dict.fromkeys(addresses))


def open_namespace(container: dict) -> tuple[int, int]:
    """The server's network namespace, held open, checked to be its and not the node's.

    Held as a descriptor from here on, a pid the kernel reuses between the
    engine's answer and our use can point nowhere else. Returns (fd, pid).
    """
    pid = container["State"]["Pid"]
    if not pid:
        raise RuntimeError("it has no process")
    proc = HOST_PROC / str(pid)
    fd = os.open(proc / "ns" / "net", os.O_RDONLY)
    try:
        if container["Id"] not in (proc / "cgroup").read_text():
            raise RuntimeError(f"pid {pid} is no longer its process")
        if os.fstat(fd).st_ino == os.stat("/proc/self/ns/net").st_ino:
            raise RuntimeError(f"pid {pid} is in the node's own network namespace")
    except BaseException:
        os.close(fd)
        raise
    return fd, pid


def police(container: dict, settings: dshub_settings.Settings, node: NodeFacts) -> None:
    """Put the policy in the server's namespace, then mark it so the server may start."""
    subnet = users_subnet(container, settings.network)
    if subnet is None:
        raise RuntimeError(f"it has no address on {settings.network}")
    fd, pid = open_namespace(container)
    try:
        resolv = HOST_PROC / str(pid) / "root" / "etc" / "resolv.conf"
        resolvers = container_resolvers(resolv.read_text())
        if resolvers is None:
            resolvers = nameservers(HOST_RESOLV_CONF)
        rules = server_rules(subnet, settings.user_egress, resolvers, node)
        done = subprocess.run(
            ["nsenter", f"--net=/proc/self/fd/{fd}", "--", "sh", "-c", APPLY, "apply", rules, IPV6_RULES],
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.close(fd)
    if done.returncode:
        raise RuntimeError(done.stderr.strip() or f"exit {done.returncode}")


def host_networks(client: docker.DockerClient) -> tuple[str, ...]:
    """This node's own addresses (and their broadcast ones) and its docker_gwbridge subnet.

    The agent is in the host's network, so ``ip`` shows the node's.
    """
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True)
    found = list(own_addresses(shown.stdout))
    try:
        bridge = client.api.inspect_network("docker_gwbridge")
        found += [c["Subnet"] for c in bridge.get("IPAM", {}).get("Config") or [] if ":" not in c["Subnet"]]
    except docker.errors.NotFound:
        pass
    return tuple(dict.fromkeys(found))


def own_addresses(ip_addr_output: str) -> tuple[str, ...]:
    """Addresses and broadcast addresses in `ip -4 -o addr show` output, as /32s; not loopback."""
    found = []
    for line in ip_addr_output.splitlines():
        words = line.split()
        if "inet" not in words:
            continue
        found.append(words[words.index("inet") + 1].split("/")[0])
        if "brd" in words:
            found.append(words[words.index("brd") + 1])
    return tuple(dict.fromkeys(f"{a}/32" for a in found if not ipaddress.ip_address(a).is_loopback))


_NFS_SERVER = re.compile(r"\baddr=(\d{1,3}(?:\.\d{1,3}){3})\b")


def nfs_servers(mountinfo: str) -> list[str]:
    """The servers of the NFS mounts in a /proc/<pid>/mountinfo."""
    return _NFS_SERVER.findall(mountinfo)


def swarm_and_pool_hosts(client: docker.DockerClient, network: str, mountinfo: str) -> tuple[str, ...]:
    """The other nodes and the pool's file server, as far as this node can tell.

    The managers this node talks to, the nodes on the users' overlay, and every
    NFS server this node mounts from: besides DSHUB_SWARM_NODE_NETWORKS, so a
    server never reaches them even when the operator named none.
    """
    found = [
        m.get("Addr", "").rsplit(":", 1)[0]
        for m in client.info().get("Swarm", {}).get("RemoteManagers") or []
    ]
    try:
        found += [
            peer.get("IP", "")
            for peer in client.api.inspect_network(network, verbose=True).get("Peers") or []
        ]
    except docker.errors.NotFound:
        pass  # no server on the overlay here yet
    found += nfs_servers(mountinfo)
    hosts = []
    for candidate in found:
        try:
            hosts.append(f"{ipaddress.IPv4Address(candidate)}/32")
        except ValueError:
            continue
    return tuple(dict.fromkeys(hosts))


class Agent:
    """Polices every user server of the deployment that starts on this node."""

    def __init__(self, settings: dshub_settings.Settings, client: docker.DockerClient) -> None:
        self.settings = settings
        self.client = client
        self.policed: set[str] = set()
        self.node = NodeFacts((), ())
        self.wake = threading.Event()
        self.labels = project_filter(settings.project, USER_SERVER_ROLE)

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
        mountinfo = (HOST_PROC / "1" / "mountinfo").read_text()
        others = swarm_and_pool_hosts(self.client, self.settings.network, mountinfo)
        node = NodeFacts(host_networks(self.client), (*self.settings.swarm_node_networks, *others))
        if node != self.node:
            # A new address of the node, a new node: every server's rules again (each
            # table is replaced at once, so they never stand open in between).
            self.node, self.policed = node, set()
        running = self.client.api.containers(filters={"label": self.labels, "status": "running"})
        ids = {c["Id"] for c in running}
        self.policed &= ids
        for container_id in sorted(ids - self.policed):
            try:
                container = self.client.api.inspect_container(container_id)
                police(container, self.settings, node)
            except docker.errors.NotFound:
                continue  # gone since the list
            except (OSError, RuntimeError) as error:
                log.error("Could not police %s (retrying): %s", container_id[:12], error)
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


def police_this_node() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Agent(dshub_settings.load(), docker.from_env()).run()


def main(argv: list[str] | None = None) -> int:
    return heartbeat.service_main("swarmpolicy", __doc__, {"run": lambda args: police_this_node()}, argv)


if __name__ == "__main__":
    sys.exit(main())
