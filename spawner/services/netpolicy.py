"""The network policy of user containers, kept in the host's firewall by a service of the stack.

What a user container may reach:

* the hub's API port (``hub:8081``), and the DNS servers the engine forwards to;
* outside the host, as ``DSHUB_USER_EGRESS`` says: ``public`` (default: everything
  but private, shared, loopback, link-local and multicast ranges), ``all``,
  ``none``, or a comma-separated list of CIDRs;
* nothing else: not other users' containers, not Traefik (its API included), not
  the development identity provider, not the host or its gateway, not
  ``169.254.169.254``. Only the edge proxy and the hub open connections to a user
  server (and anywhere they need to).

How: every container of the deployment shares one bridge network, and packets a
container sends through it pass the host's firewall: ``FORWARD`` (to another
container or out of the host) and ``INPUT`` (to the host itself). Docker keeps the
``DOCKER-USER`` chain in front of its own rules and never flushes it, for exactly
this use; this service puts a jump to a chain of its own there (and in
``INPUT``) for the deployment's bridge, and rebuilds that chain whenever the
containers on the network change. The rules are one per trusted container plus
a fixed set, not one per user: their number does not grow with the class.

Why not one network per user: Docker's default address pools give about 31
bridge networks, and Traefik and the hub would have to join every one; and why
not ``enable_icc=false``: it also cuts the edge off from the users. Why a loop
(every ``INTERVAL`` s) and not only at start: a ``dockerd`` restart, a host
reboot or a recreated network (``make up``) must not leave the users open; each
round compares the live chains with the wanted ones and puts them back.

IPv4 only: the deployment's networks have no IPv6.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from spawner.config import settings as dshub_settings
from spawner.core.constants import HUB_API_PORT, HUB_ROLE, ROLE_LABEL
from spawner.services import heartbeat

log = logging.getLogger("dshub.netpolicy")

INTERVAL = 1.0
# Written after every successful round: the service's healthcheck, which the hub
# waits for, so no user container starts before the policy holds.
APPLIED = Path("/run/dshub-netpolicy-applied")
# Roles (the dshub.role label) whose containers may open connections anywhere.
TRUSTED_ROLES = frozenset({"hub", "proxy"})
# Not "the outside world": private, shared, loopback, link-local, multicast, reserved.
NOT_PUBLIC = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "168.63.129.16/32",  # Azure's host endpoint (WireServer, DNS): metadata by another name
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)


@dataclass(frozen=True)
class Network:
    """The deployment's bridge network as the firewall sees it."""

    bridge: str
    trusted: tuple[str, ...]  # addresses of the hub and the proxy
    hub: str | None


def chain_names(project: str) -> tuple[str, str]:
    # iptables chain names are at most 28 characters; project names up to 30.
    tag = hashlib.sha256(project.encode()).hexdigest()[:10]
    return f"DSHUB-FWD-{tag}", f"DSHUB-IN-{tag}"


def egress_rules(egress: tuple[str, ...]) -> list[str]:
    """What a user container may reach beyond the host, as rules that end the chain."""
    if egress == ("all",):
        return ["-j RETURN"]
    if egress == ("none",):
        return ["-j DROP"]
    if egress == ("public",):
        return [*(f"-d {cidr} -j DROP" for cidr in NOT_PUBLIC), "-j RETURN"]
    return [*(f"-d {cidr} -j RETURN" for cidr in egress), "-j DROP"]


def wanted_rules(
    network: Network, egress: tuple[str, ...], nameservers: tuple[str, ...]
) -> dict[str, list[str]]:
    """Rule specs (without ``-A chain``) of the forward and the input chain, in order,
    spelled as ``iptables -S`` prints them back, so the live chains compare equal."""
    common = ["-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    common += [f"-s {address}/32 -j RETURN" for address in network.trusted]
    forward = list(common)
    if network.hub:
        forward.append(f"-d {network.hub}/32 -p tcp -m tcp --dport {HUB_API_PORT} -j RETURN")
    # Anything else on the deployment's own bridge: other users, Traefik, the dev provider.
    forward.append(f"-o {network.bridge} -j DROP")
    for server in nameservers:
        forward += [f"-d {server}/32 -p {proto} -m {proto} --dport 53 -j RETURN" for proto in ("udp", "tcp")]
    forward += egress_rules(egress)
    return {"forward": forward, "input": [*common, "-j DROP"]}


def restore_text(chains: dict[str, str], rules: dict[str, list[str]]) -> str:
    """iptables-restore input that replaces both chains in one transaction."""
    lines = ["*filter"]
    lines += [f":{name} - [0:0]" for name in chains.values()]
    for kind, name in chains.items():
        lines += [f"-A {name} {rule}" for rule in rules[kind]]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """IPv4 resolvers of the host, where the engine forwards user containers' lookups."""
    found = []
    for line in resolv_conf.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback:
                found.append(str(address))
    return tuple(found)


def deployment_network(client: docker.DockerClient, name: str) -> Network | None:
    """The deployment's bridge and the addresses of its trusted containers, from the engine."""
    try:
        network = client.networks.get(name)
    except docker.errors.NotFound:
        return None
    info = network.attrs
    bridge = (info.get("Options") or {}).get("com.docker.network.bridge.name") or f"br-{info['Id'][:12]}"
    trusted, hub = [], None
    # The list's own entries (one call), not an inspect per container: a class's hundred
    # servers are on this network, and this runs every second.
    for container in client.api.containers(filters={"network": name}):
        role = (container.get("Labels") or {}).get(ROLE_LABEL, "")
        address = container["NetworkSettings"]["Networks"].get(name, {}).get("IPAddress")
        if address and role in TRUSTED_ROLES:
            trusted.append(address)
            if role == HUB_ROLE:
                hub = address
    return Network(bridge=bridge, trusted=tuple(sorted(trusted)), hub=hub)


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=check)


def filter_table() -> dict[str, list[str]]:
    """Every chain of the filter table with its rule specs as iptables prints them (no ``-A chain``).

    One process a round: each iptables command reads the whole ruleset from the
    kernel, and the round runs every second for the life of the stack.
    """
    saved = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True, check=True)
    return parse_saved(saved.stdout)


def parse_saved(saved: str) -> dict[str, list[str]]:
    """iptables-save's text of one table as its chains' rule specs."""
    chains: dict[str, list[str]] = {}
    for line in saved.splitlines():
        if line.startswith(":"):
            chains[line[1:].split()[0]] = []
        elif line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            chains.setdefault(chain, []).append(spec)
    return chains


def ensure_jump(table: dict[str, list[str]], parent: str, bridge: str, chain: str) -> bool:
    """A jump from ``parent`` to ``chain`` for ``bridge``'s packets, no stale one; whether it changed."""
    wanted = f"-i {bridge} -j {chain}"
    stale = [spec for spec in table[parent] if spec.endswith(f"-j {chain}") and spec != wanted]
    for spec in stale:
        iptables("-D", parent, *shlex.split(spec))  # as iptables prints it: a comment comes quoted
    if wanted in table[parent]:
        return bool(stale)
    iptables("-I", parent, "1", *wanted.split())
    log.info("Jump from %s to %s for %s", parent, chain, bridge)
    return True


def apply(project: str, network: Network, egress: tuple[str, ...], resolvers: tuple[str, ...]) -> bool:
    """Make the firewall hold the policy; whether anything had to change."""
    table = filter_table()
    if "DOCKER-USER" not in table:
        raise RuntimeError(
            "the firewall has no DOCKER-USER chain in the iptables (nf_tables) backend: the engine "
            "uses another firewall backend, so the policy cannot be kept and no user server should start"
        )
    forward, inbound = chain_names(project)
    chains = {"forward": forward, "input": inbound}
    rules = wanted_rules(network, egress, resolvers)
    changed = False
    if any(table.get(chains[kind]) != rules[kind] for kind in chains):
        restore = subprocess.run(
            ["iptables-restore", "-w", "--noflush"],
            input=restore_text(chains, rules),
            capture_output=True,
            text=True,
            check=False,
        )
        if restore.returncode:
            raise RuntimeError(f"iptables-restore failed: {restore.stderr.strip()}")
        changed = True
    changed |= ensure_jump(table, "DOCKER-USER", network.bridge, forward)
    changed |= ensure_jump(table, "INPUT", network.bridge, inbound)
    return changed


def remove(project: str) -> None:
    """Take the deployment's chains and their jumps out of the firewall."""
    for parent, chain in zip(("DOCKER-USER", "INPUT"), chain_names(project), strict=True):
        for line in iptables("-S", parent, check=False).stdout.splitlines():
            if line.endswith(f"-j {chain}"):
                iptables(*line.replace("-A", "-D", 1).split(), check=False)
        iptables("-F", chain, check=False)
        iptables("-X", chain, check=False)


def run(settings: dshub_settings.Settings, client: docker.DockerClient) -> None:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    log.info(
        "Network policy for %s: user egress %s; re-checked every %.0f s",
        settings.network,
        ",".join(settings.user_egress),
        INTERVAL,
    )
    while not stopping:
        try:
            network = deployment_network(client, settings.network)
            if network is not None:
                if apply(settings.project, network, settings.user_egress, nameservers()):
                    log.info(
                        "Applied the policy to %s: trusted %s", network.bridge, ", ".join(network.trusted)
                    )
                APPLIED.touch()
        except (OSError, RuntimeError, subprocess.SubprocessError, docker.errors.DockerException) as error:
            log.error("Could not apply the network policy (retrying): %s", error)
        time.sleep(INTERVAL)
    # Stopping (make down) leaves the rules: user servers keep running and stay isolated.


def keep(settings: dshub_settings.Settings) -> None:
    """The service's life: the policy held, or, with it off, none left behind."""
    if settings.network_policy:
        run(settings, docker.from_env())
        return
    log.warning("DSHUB_NETWORK_POLICY is off: user containers can reach each other and the host")
    remove(settings.project)
    while True:  # healthy: there is nothing to keep
        APPLIED.touch()
        time.sleep(INTERVAL)


def main(argv: list[str] | None = None) -> int:
    return heartbeat.service_main(
        "netpolicy",
        __doc__,
        {
            "run": lambda args: keep(dshub_settings.load()),
            "remove": lambda args: remove(args.project or dshub_settings.load().project),
        },
        argv,
        lambda parser: parser.add_argument(
            "--project", help="remove: the deployment whose rules go (default: DSHUB_PROJECT)"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
