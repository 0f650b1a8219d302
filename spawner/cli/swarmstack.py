"""`make swarm-up` / `make swarm-down`: dshub on Docker Swarm (DSHUB_MODE=swarm).

The hub and Traefik run as the services of one stack (``docker stack deploy``)
on the manager where this runs; users' servers are services the hub creates
(:class:`spawner.spawn.docker.SwarmDataPoolSpawner`), placed by the swarm on any node.
The stack is derived from compose/compose.yaml itself (``compose config``), so
the images, settings, volumes, capabilities, healthchecks and labels are the
single-host ones; what swarm mode changes is said where it is changed:

* networks are overlays, attachable so the forwarder (below) can join;
* the hub and Traefik are pinned to this node (a node label), since they share
  node-local volumes (Traefik's rules, its certificates, the hub's database);
  the hub moves to another manager with its state (docs/scale-out.md);
* services are reached by their task's own address (``endpoint_mode: dnsrr``):
  Traefik binds its API port to its address on the control network by name;
* ``no-new-privileges``, which swarm services cannot ask of engine 20.10, is set
  by ``setpriv --no-new-privs`` in front of each image's entrypoint;
* swarm publishes a port on all of a node's addresses or none: with a loopback
  DSHUB_BIND_ADDRESS a forwarder container outside the swarm publishes the edge
  on loopback and passes connections to Traefik with the PROXY protocol
  (:func:`spawner.hub.edge.forwarder_config`).

Runs on the host with the compose command line make uses, after `make build`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from spawner.config import settings as dshub_settings
from spawner.core.constants import HUB_ROLE, PROJECT_LABEL, ROLE_LABEL, USER_SERVER_ROLE, project_filter
from spawner.hub.edge import (
    CONTAINER_HTTP_PORT,
    CONTAINER_HTTPS_PORT,
    FORWARDER_CONFIG_FILE,
    PROXY_IMAGE,
    forwarder_address,
)
from spawner.services import swarmpolicy

# The stack's services (compose/compose.yaml); Prometheus with DSHUB_MONITORING.
STACK_SERVICES = ("proxy", "hub")
# What a compose service keeps in the stack, as compose config writes it.
KEPT_KEYS = (
    "image",
    "cap_add",
    "cap_drop",
    "environment",
    "healthcheck",
    "labels",
    "logging",
    "read_only",
    "tmpfs",
    "user",
    "working_dir",
)
STACK_FILE_VERSION = "3.9"
# The settings the policy agent reads (spawner/services/swarmpolicy.py), and no others.
AGENT_SETTINGS = (
    "DSHUB_PROJECT",
    "DSHUB_MODE",
    "DSHUB_NETWORK_POLICY",
    "DSHUB_USER_EGRESS",
    "DSHUB_SWARM_NODE_NETWORKS",
    "DSHUB_LOG_LEVEL",
)
HUB_HEALTHY_TIMEOUT = 180.0


class SwarmError(RuntimeError):
    """What stopped the deployment, and what to do."""


def docker(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, input=stdin, check=False)
    if check and done.returncode:
        raise SwarmError(f"docker {' '.join(args[:3])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def edge_node_label(project: str) -> str:
    """The node label that pins the hub and Traefik (and their volumes) to one node."""
    return f"dshub.edge.{project}"


def forwarder_name(project: str) -> str:
    return f"{project}-edge-forwarder"


def edge_network(project: str) -> str:
    return f"{project}-edge"


def this_manager() -> str:
    """This engine's node id; stops with the instruction if it is not a swarm manager."""
    info = json.loads(docker("info", "--format", "{{json .Swarm}}").stdout)
    if info.get("LocalNodeState") != "active":
        raise SwarmError(
            "this engine is not in a swarm: start one here with `docker swarm init` (add "
            "`--advertise-addr <this node's address on the nodes' network>` if it has several), "
            "then run make swarm-up again (docs/scale-out.md)."
        )
    if not info.get("ControlAvailable"):
        raise SwarmError("this engine is a swarm worker: run make swarm-up on a manager (docker node ls).")
    return str(info["NodeID"])


def image_entrypoint(image: str) -> tuple[list[str], list[str]]:
    """The image's entrypoint and command."""
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    return list(config.get("Entrypoint") or []), list(config.get("Cmd") or [])


def _volume(mount: dict[str, Any]) -> dict[str, Any]:
    """A compose config mount in the stack file's long syntax (which knows fewer keys)."""
    kept = {k: mount[k] for k in ("type", "source", "target", "read_only") if k in mount}
    if mount.get("type") == "bind":
        kept["bind"] = {"propagation": mount.get("bind", {}).get("propagation", "rprivate")}
    return kept


def stack_service(
    name: str,
    service: dict[str, Any],
    settings: dshub_settings.Settings,
    entrypoint: tuple[list[str], list[str]],
) -> dict[str, Any]:
    """One compose service as a swarm service, pinned to the edge node."""
    out = {k: service[k] for k in KEPT_KEYS if service.get(k) not in (None, [], {})}
    image_entry, image_cmd = entrypoint
    out["entrypoint"] = ["setpriv", "--no-new-privs", "--", *(service.get("entrypoint") or image_entry)]
    command = service.get("command") or image_cmd
    if command:
        out["command"] = command
    out["volumes"] = [_volume(m) for m in service.get("volumes", [])]
    networks = dict(service.get("networks") or {})
    if name == "proxy" and settings.swarm_forwarder:
        networks["edge"] = None
    out["networks"] = networks
    if name == "proxy" and not settings.swarm_forwarder:
        # Published on the node Traefik runs on (host mode: the swarm's routing mesh
        # would hide the browser's address behind its own).
        out["ports"] = [
            {"target": inner, "published": published, "protocol": "tcp", "mode": "host"}
            for inner, published in (
                (CONTAINER_HTTP_PORT, settings.http_port),
                (CONTAINER_HTTPS_PORT, settings.https_port),
            )
        ]
    out["deploy"] = {
        "endpoint_mode": "dnsrr",
        "labels": dict(service.get("labels") or {}),
        "placement": {"constraints": [f"node.labels.{edge_node_label(settings.project)} == true"]},
        "restart_policy": {"condition": "any", "delay": "2s"},
        # Two hubs on one database, or two Traefiks on one port, never run at once.
        "update_config": {"order": "stop-first", "failure_action": "rollback"},
    }
    return out


def policy_agent(service: dict[str, Any]) -> dict[str, Any]:
    """The netpolicy service as swarm mode's agent (spawner/services/swarmpolicy.py): one task on every node.

    In the host's network, as in single-host mode, but it never touches the
    host's firewall: it enters users' servers' namespaces through the host's
    /proc, which is why it holds SYS_ADMIN (setns) and SYS_PTRACE.
    """
    out = {k: service[k] for k in ("image", "labels", "logging") if service.get(k)}
    # Only what it reads: its spec is on every node, readable there by anyone with the engine.
    environment = service.get("environment") or {}
    out["environment"] = {k: environment[k] for k in AGENT_SETTINGS if k in environment}
    out.update(
        entrypoint=[
            "setpriv",
            "--no-new-privs",
            "--",
            "tini",
            "--",
            "python3",
            "-m",
            "spawner.services.swarmpolicy",
        ],
        command=["run"],
        cap_drop=["ALL"],
        cap_add=["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"],
        read_only=True,
        tmpfs=["/run"],  # iptables' lock file, the heartbeat
        volumes=[
            {"type": "bind", "source": source, "target": target, "read_only": True}
            for source, target in (
                ("/var/run/docker.sock", "/var/run/docker.sock"),
                ("/proc", "/host/proc"),
                ("/etc/resolv.conf", "/host/etc/resolv.conf"),
            )
        ],
        networks={"host": None},
        healthcheck={
            "test": ["CMD", "python3", "-m", "spawner.services.heartbeat", str(swarmpolicy.APPLIED)],
            "interval": "2s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "30s",
        },
        deploy={
            "mode": "global",
            "labels": dict(service.get("labels") or {}),
            "restart_policy": {"condition": "any", "delay": "2s"},
        },
    )
    return out


def stack_file(
    compose_config: dict[str, Any],
    settings: dshub_settings.Settings,
    entrypoints: dict[str, tuple[list[str], list[str]]],
) -> dict[str, Any]:
    """The stack for ``docker stack deploy``, from the compose file's own services."""
    names = [*STACK_SERVICES, *(["prometheus"] if settings.monitoring else [])]
    services = {
        name: stack_service(name, compose_config["services"][name], settings, entrypoints[name])
        for name in names
    }
    if settings.network_policy:
        services["netpolicy"] = policy_agent(compose_config["services"]["netpolicy"])
    used_networks = {n for s in services.values() for n in s["networks"]}
    networks: dict[str, Any] = {}
    if "host" in used_networks:
        networks["host"] = {"external": True, "name": "host"}
    # Plain http between the edge and servers on other nodes: encrypted unless the
    # operator says the nodes' network is theirs alone (DSHUB_SWARM_ENCRYPT).
    encrypted = {"driver_opts": {"encrypted": "true"}} if settings.swarm_encrypt else {}
    for name in sorted(used_networks - {"edge", "host"}):
        network = compose_config["networks"][name]
        networks[name] = {
            "name": network["name"],
            "driver": "overlay",
            # Only services join: a container started by hand on a node cannot.
            "attachable": False,
            "internal": bool(network.get("internal")),
            "labels": network.get("labels", {}),
            **encrypted,
        }
    if "edge" in used_networks:
        # Made by make swarm-up (ensure_edge_network): a stack file cannot give an IP range.
        networks["edge"] = {"external": True, "name": edge_network(settings.project)}
    used_volumes = {m["source"] for s in services.values() for m in s["volumes"] if m.get("type") == "volume"}
    volumes = {
        name: {"name": v["name"], "labels": v.get("labels", {})}
        for name, v in compose_config.get("volumes", {}).items()
        if name in used_volumes
    }
    return {"version": STACK_FILE_VERSION, "services": services, "networks": networks, "volumes": volumes}


def edge_network_options(settings: dshub_settings.Settings) -> list[str]:
    """`docker network create` options of the edge network.

    The forwarder, a container outside the swarm, joins it at its fixed address,
    outside the range the swarm hands its tasks: Traefik believes PROXY headers
    from that address alone.
    """
    subnet = ipaddress.IPv4Network(settings.swarm_edge_subnet)
    return [
        "--driver", "overlay", "--attachable",
        "--subnet", str(subnet), "--ip-range", str(next(subnet.subnets())),
        *(["--opt", "encrypted"] if settings.swarm_encrypt else []),
        "--label", f"{PROJECT_LABEL}={settings.project}",
    ]  # fmt: skip


def stale_networks(stack: dict[str, Any], settings: dshub_settings.Settings) -> list[str]:
    """The stack's networks that exist with other options than the settings ask for.

    ``docker stack deploy`` (and a network create) leave an existing network as
    it is: a network made before encryption was asked for would stay plain.
    """
    wanted = {n["name"]: n for n in stack["networks"].values() if not n.get("external")}
    edge = edge_network(settings.project)
    stale = []
    for name in (*wanted, edge):
        shown = docker("network", "inspect", name, check=False)
        if shown.returncode:
            continue
        (info,) = json.loads(shown.stdout)
        encrypted = "encrypted" in (info.get("Options") or {})
        if name == edge:
            ipam = (info.get("IPAM", {}).get("Config") or [{}])[0]
            subnet = ipaddress.IPv4Network(settings.swarm_edge_subnet)
            fits = ipam.get("Subnet") == str(subnet) and ipam.get("IPRange") == str(next(subnet.subnets()))
        else:
            joinable = bool(info.get("Attachable")) == wanted[name]["attachable"]
            fits = info.get("Driver") == "overlay" and joinable
        if encrypted != settings.swarm_encrypt or not fits:
            stale.append(name)
    return stale


def ensure_edge_network(settings: dshub_settings.Settings) -> None:
    name = edge_network(settings.project)
    if docker("network", "inspect", name, check=False).returncode:
        docker("network", "create", *edge_network_options(settings), name)


def compose_config(compose: list[str]) -> dict[str, Any]:
    # With the monitoring profile: Prometheus is there to take when DSHUB_MONITORING asks.
    command = [*compose, "--profile", "monitoring", "config", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SwarmError(f"compose config failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def prepare_edge(compose: list[str]) -> None:
    """Traefik's static configuration and TLS material, by the same one-shot as single-host mode."""
    done = subprocess.run(
        [*compose, "run", "--rm", "--no-deps", "-T", "edge-init"], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SwarmError(f"preparing the edge failed:\n{done.stdout}{done.stderr}")


def run_forwarder(settings: dshub_settings.Settings, edge_volume: str) -> None:
    """Swarm mode on loopback: publish the edge on DSHUB_BIND_ADDRESS from outside the swarm."""
    name = forwarder_name(settings.project)
    ports = (
        (settings.http_port, CONTAINER_HTTP_PORT),
        (settings.https_port, CONTAINER_HTTPS_PORT),
    )
    digest = f"{settings.bind_address}:{settings.http_port}:{settings.https_port}:{PROXY_IMAGE}"
    running = docker("inspect", "--format", '{{index .Config.Labels "dshub.forwarder"}}', name, check=False)
    if running.returncode == 0 and running.stdout.strip() == digest:
        return
    docker("rm", "-f", name, check=False)
    docker(
        "run", "-d", "--name", name, "--restart", "unless-stopped",
        "--network", edge_network(settings.project), "--ip", forwarder_address(settings),
        *(a for host, inner in ports for a in ("-p", f"{settings.bind_address}:{host}:{inner}")),
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
        "-v", f"{edge_volume}:/srv/dshub/edge:ro",
        "--label", f"{PROJECT_LABEL}={settings.project}", "--label", f"{ROLE_LABEL}=edge-forwarder",
        "--label", f"dshub.forwarder={digest}",
        "--entrypoint", "traefik", PROXY_IMAGE, f"--configfile={FORWARDER_CONFIG_FILE}",
    )  # fmt: skip


def label_filters(project: str, role: str) -> list[str]:
    """docker's --filter arguments for one role's objects of the deployment."""
    return [arg for label in project_filter(project, role) for arg in ("--filter", f"label={label}")]


def hub_container(project: str) -> str:
    """The hub's running container on this node (the edge node), or ''."""
    out = docker(
        "ps", "-q", *label_filters(project, HUB_ROLE),
        "--filter", "status=running",
    ).stdout.split()  # fmt: skip
    return out[0] if out else ""


def refusals(service: str) -> list[str]:
    """Why the service's latest tasks ended without running, newest first ([] while one runs)."""
    shown = "{{.CurrentState}}\t{{.Error}}"
    out = docker("service", "ps", "--no-trunc", "--format", shown, service, check=False)
    states = [line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line]
    return [error for state, error in states if error and not state.startswith("Running")]


def wait_for_hub(project: str, timeout: float = HUB_HEALTHY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hub = hub_container(project)
        if hub:
            health = docker("inspect", "--format", "{{.State.Health.Status}}", hub, check=False)
            if health.stdout.strip() == "healthy":
                return
        for service in (f"{project}_hub", f"{project}_proxy"):
            refused = refusals(service)
            # The swarm retries for ever; three refusals for one reason will not pass.
            if len(refused) >= 3 and len(set(refused[:3])) == 1:
                raise SwarmError(f"{service} cannot start: {refused[0]}")
        time.sleep(1)
    tasks = docker("service", "ps", "--no-trunc", f"{project}_hub", f"{project}_proxy", check=False)
    raise SwarmError(f"the hub was not healthy within {timeout:.0f} s:\n{tasks.stdout}{tasks.stderr}")


def up(compose: list[str], settings: dshub_settings.Settings, stack_path: Path) -> None:
    node = this_manager()
    # As compose makes it in single-host mode; other nodes mount it from the file
    # server at the same path (docs/scale-out.md), where the swarm never makes one.
    settings.pool_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    docker("node", "update", "--label-add", f"{edge_node_label(settings.project)}=true", node)
    config = compose_config(compose)
    prepare_edge(compose)
    names = [*STACK_SERVICES, *(["prometheus"] if settings.monitoring else [])]
    entrypoints = {n: image_entrypoint(config["services"][n]["image"]) for n in names}
    stack = stack_file(config, settings, entrypoints)
    stale = stale_networks(stack, settings)
    if stale:
        raise SwarmError(
            f"network(s) {', '.join(stale)} exist with other options than the settings ask for "
            "(encryption, who may join, addresses), and a swarm never changes a network in place: "
            "remove them with `make swarm-down USERS=1` (a single-host stack's: `make clean`; users' "
            "servers stop, files and the hub's state stay), then run make swarm-up again."
        )
    if settings.swarm_forwarder:
        ensure_edge_network(settings)
    # The environment holds the settings, secrets among them: as private as the
    # settings file, and gone once deployed.
    stack_path.parent.mkdir(parents=True, exist_ok=True)
    stack_path.unlink(missing_ok=True)
    fd = os.open(stack_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(stack, f, sort_keys=False)
        docker(
            "stack", "deploy", "--prune", "--resolve-image", "never", "-c", str(stack_path), settings.project
        )
    finally:
        stack_path.unlink(missing_ok=True)
    if settings.swarm_forwarder:
        run_forwarder(settings, config["volumes"]["edge-config"]["name"])
    wait_for_hub(settings.project)


def user_services(project: str) -> list[str]:
    return docker(
        "service", "ls", "-q", *label_filters(project, USER_SERVER_ROLE),
    ).stdout.split()  # fmt: skip


def down(settings: dshub_settings.Settings, users_too: bool) -> None:
    """Remove the stack (and with users_too the users' services); volumes and the pool stay."""
    project = settings.project
    if users_too:
        services = user_services(project)
        if services:
            docker("service", "rm", *services)
    docker("rm", "-f", forwarder_name(project), check=False)
    docker("stack", "rm", project, check=False)
    # The edge network (ensure_edge_network), once the proxy's task has let go of it.
    edge = edge_network(project)
    deadline = time.monotonic() + 60
    while docker("network", "inspect", edge, check=False).returncode == 0 and time.monotonic() < deadline:
        docker("network", "rm", edge, check=False)
        time.sleep(1)
    # stack rm returns at once; its networks go when their last task has.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = docker("network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={project}").stdout
        if not left.strip():
            break
        time.sleep(1)
    node = json.loads(docker("info", "--format", "{{json .Swarm}}").stdout).get("NodeID")
    if node:
        docker("node", "update", "--label-rm", edge_node_label(project), node, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.cli.swarmstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    deploy = sub.add_parser("up", help="deploy or update the stack on this manager")
    deploy.add_argument("--stack-file", type=Path, default=Path("build/stack.yaml"))
    deploy.add_argument("compose", nargs=argparse.REMAINDER, help="the compose command line, after --")
    remove = sub.add_parser("down", help="remove the stack; users' services too with --users")
    remove.add_argument("--users", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = dshub_settings.load()
        if settings.mode != "swarm":
            raise SwarmError("DSHUB_MODE is not swarm: set DSHUB_MODE=swarm in .env (docs/scale-out.md).")
        if args.command == "up":
            compose = args.compose[1:] if args.compose[:1] == ["--"] else args.compose
            up(compose, settings, args.stack_file)
            print(f"dshub is running on the swarm at {settings.public_url}/")
        else:
            down(settings, args.users)
    except (SwarmError, dshub_settings.SettingsError) as e:
        print(f"dshub: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
