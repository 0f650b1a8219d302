"""Swarm mode without an engine: its settings, the stack made from the compose file, the service spec."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from docker.types import Mount

from spawner.cli import settings as settings_cli
from spawner.cli import swarmstack
from spawner.config import settings as s
from spawner.config.profiles import PLACEMENT_PATTERN
from spawner.core.constants import VERSION
from spawner.hub import edge
from spawner.pool.datapool import DataPool
from spawner.services import netpolicy, swarmpolicy
from spawner.spawn.docker import (
    SERVICE_NAME_MAX,
    ServerSpec,
    ServiceFailed,
    entrypoint_wrapper,
    service_name,
    service_resources,
    task_address,
    vanished_folder,
)

REPO = Path(__file__).resolve().parents[2]
SWARM = {"DSHUB_MODE": "swarm"}
ALL_ADDRESSES = {
    "DSHUB_BIND_ADDRESS": "0.0.0.0",  # noqa: S104
    "DSHUB_TLS": "self-signed",
    "DSHUB_PUBLIC_URL": "https://hub.example.edu",
}


def refusal(**values: str) -> str:
    with pytest.raises(s.SettingsError) as error:
        s.load(values)
    return str(error.value)


# -- settings -------------------------------------------------------------------


def test_swarm_mode_publishes_on_all_addresses_or_loopback_only():
    message = refusal(**SWARM, DSHUB_BIND_ADDRESS="192.0.2.10", DSHUB_TLS="self-signed")
    assert "a swarm publishes ports on all of a node's addresses" in message
    assert not s.load({**SWARM, **ALL_ADDRESSES}).swarm_forwarder
    assert s.load(SWARM).swarm_forwarder


def test_swarm_mode_refuses_the_one_host_quota_service():
    assert "DSHUB_DISK_QUOTA_ENFORCE=project does not work" in refusal(
        **SWARM, DSHUB_DISK_QUOTA="5G", DSHUB_DISK_QUOTA_ENFORCE="project"
    )


@pytest.mark.parametrize("subnet", ["10.0.0.0/30", "fd00::/64", "10.0.0.1/24x", "banana"])
def test_a_bad_edge_subnet_is_refused(subnet):
    assert "DSHUB_SWARM_EDGE_SUBNET" in refusal(**SWARM, DSHUB_SWARM_EDGE_SUBNET=subnet)


# -- the edge: forwarder and PROXY protocol --------------------------------------


def test_on_loopback_traefik_believes_client_addresses_only_from_the_edge_network():
    config = edge.static_config(s.load(SWARM))
    # Only the forwarder's own address, not the network's.
    assert config["entryPoints"]["http"]["proxyProtocol"] == {"trustedIPs": ["10.231.255.30/32"]}
    assert config["entryPoints"]["http"]["forwardedHeaders"] == {"trustedIPs": []}
    single_host = edge.static_config(s.load({}))
    assert "proxyProtocol" not in single_host["entryPoints"]["http"]


def test_the_forwarder_passes_bytes_on_with_the_client_address():
    static, dynamic = edge.forwarder_config()
    assert static["providers"]["file"]["filename"] == str(edge.FORWARDER_RULES_FILE)
    routers = dynamic["tcp"]["routers"]
    assert {r["rule"] for r in routers.values()} == {"HostSNI(`*`)"}
    assert "tls" not in routers["https"]  # passed through, Traefik of the stack terminates
    servers = {n: v["loadBalancer"]["servers"][0]["address"] for n, v in dynamic["tcp"]["services"].items()}
    assert servers == {"http": "proxy:8000", "https": "proxy:8443"}
    assert dynamic["tcp"]["serversTransports"]["proxy-protocol"] == {"proxyProtocol": {"version": 2}}


# -- the stack, made from compose config ------------------------------------------


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory):
    """compose/compose.yaml as `compose config` resolves it (the compose binary, no engine)."""
    work = tmp_path_factory.mktemp("compose")
    settings_file = work / "settings.env"
    env = {**SWARM, "DSHUB_POOL_DIR": str(work / "pool"), "DSHUB_CONFIG_DIR": str(work)}
    settings_file.write_text(settings_cli.render(None, env))
    done = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "docker-compose"),
            "--project-directory", str(REPO / "compose"), "-f", str(REPO / "compose" / "compose.yaml"),
            "--env-file", str(settings_file), "--profile", "monitoring", "config", "--format", "json",
        ],
        env={"PATH": "/usr/bin:/bin", "dshub_tag": VERSION, "dshub_settings_file": str(settings_file)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout), s.load(env)


def stack_of(compose_config, monitoring=False, network_policy=True, encrypt=True):
    config, settings = compose_config
    settings = s.load(
        {
            **settings.as_env(),
            "DSHUB_MONITORING": str(monitoring).lower(),
            "DSHUB_NETWORK_POLICY": str(network_policy).lower(),
            "DSHUB_SWARM_ENCRYPT": str(encrypt).lower(),
        }
    )
    entrypoints = {
        "hub": (["tini", "--"], ["jupyterhub", "-f", "/srv/dshub/jupyterhub_config.py"]),
        "proxy": (["traefik", "--configfile=/srv/dshub/edge/traefik.yaml"], []),
        "prometheus": (["prometheus"], []),
    }
    return swarmstack.stack_file(config, settings, entrypoints), settings


def test_the_stack_keeps_the_compose_services_hardening(compose_config):
    stack, _ = stack_of(compose_config)
    config, _ = compose_config
    assert set(stack["services"]) == {"hub", "proxy", "netpolicy"}
    for name in ("hub", "proxy"):
        service = stack["services"][name]
        compose_service = config["services"][name]
        assert service["cap_drop"] == ["ALL"]
        assert service.get("cap_add") == compose_service.get("cap_add")
        assert service.get("read_only") == compose_service.get("read_only")
        assert service["deploy"]["labels"]["dshub.role"] == name
        assert service["labels"]["dshub.role"] == name
        # no-new-privileges by setpriv, before the image's own entrypoint.
        assert service["entrypoint"][:3] == ["setpriv", "--no-new-privs", "--"]
    assert stack["services"]["hub"]["entrypoint"][3:] == ["tini", "--"]
    assert stack["services"]["hub"]["command"] == ["jupyterhub", "-f", "/srv/dshub/jupyterhub_config.py"]


def test_the_hub_and_traefik_share_one_node_and_are_reached_by_task_address(compose_config):
    stack, settings = stack_of(compose_config)
    for service in (stack["services"]["hub"], stack["services"]["proxy"]):
        assert service["deploy"]["placement"]["constraints"] == [
            f"node.labels.dshub.edge.{settings.project} == true"
        ]
        assert service["deploy"]["endpoint_mode"] == "dnsrr"
        assert service["deploy"]["update_config"]["order"] == "stop-first"


def test_networks_are_encrypted_overlays_only_services_join(compose_config):
    stack, settings = stack_of(compose_config)
    networks = stack["networks"]
    assert networks.pop("host") == {"external": True, "name": "host"}  # the policy agent's
    made_by_the_stack = {k: n for k, n in networks.items() if k != "edge"}
    assert {n["driver"] for n in made_by_the_stack.values()} == {"overlay"}
    assert all(n["driver_opts"] == {"encrypted": "true"} for n in made_by_the_stack.values())
    assert networks["control"]["internal"] is True
    assert networks["users"]["name"] == f"{settings.project}-users"
    assert not networks["users"]["attachable"] and not networks["control"]["attachable"]
    # Made by swarm-up, with a range for the swarm's tasks and the forwarder's address outside it.
    assert networks["edge"] == {"external": True, "name": f"{settings.project}-edge"}
    options = swarmstack.edge_network_options(settings)
    assert options[options.index("--subnet") + 1] == "10.231.255.0/27"
    assert options[options.index("--ip-range") + 1] == "10.231.255.0/28"
    assert "--attachable" in options and "encrypted" in options
    assert edge.forwarder_address(settings) == "10.231.255.30"
    assert stack["services"]["proxy"]["networks"]["control"] == {"aliases": ["proxy-api"]}
    plain, plain_settings = stack_of(compose_config, encrypt=False)
    assert not any("driver_opts" in n for n in plain["networks"].values() if not n.get("external"))
    assert "encrypted" not in swarmstack.edge_network_options(plain_settings)


def test_on_loopback_the_stack_publishes_nothing_and_on_all_addresses_host_ports(compose_config):
    stack, _ = stack_of(compose_config)
    assert "ports" not in stack["services"]["proxy"]
    config, settings = compose_config
    public = s.load(
        {**{k: v for k, v in settings.as_env().items() if k != "DSHUB_PUBLIC_URL"}, **ALL_ADDRESSES}
    )
    entry = (["traefik"], [])
    proxy = swarmstack.stack_service("proxy", config["services"]["proxy"], public, entry)
    assert proxy["ports"] == [
        {"target": 8000, "published": 8000, "protocol": "tcp", "mode": "host"},
        {"target": 8443, "published": 8443, "protocol": "tcp", "mode": "host"},
    ]
    assert "edge" not in proxy["networks"]


def test_volumes_keep_their_names_and_binds_their_paths(compose_config):
    stack, settings = stack_of(compose_config)
    hub_mounts = {m["target"]: m for m in stack["services"]["hub"]["volumes"]}
    assert hub_mounts["/srv/dshub/pool"]["source"] == str(settings.pool_dir)
    assert hub_mounts["/srv/dshub/pool"]["bind"] == {"propagation": "rprivate"}
    assert hub_mounts["/srv/dshub/data"] == {
        "type": "volume",
        "source": "hub-data",
        "target": "/srv/dshub/data",
    }
    assert stack["volumes"]["hub-data"]["name"] == f"{settings.project}_hub-data"
    # What the stack file format has no key for is not carried over.
    assert all(set(m) <= {"type", "source", "target", "read_only", "bind"} for m in hub_mounts.values())


def test_the_policy_agent_runs_on_every_node_with_only_what_entering_namespaces_takes(compose_config):
    stack, _ = stack_of(compose_config)
    agent = stack["services"]["netpolicy"]
    assert agent["deploy"]["mode"] == "global"
    assert agent["cap_drop"] == ["ALL"]
    assert agent["cap_add"] == ["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"]
    assert agent["entrypoint"][:3] == ["setpriv", "--no-new-privs", "--"]
    assert all(m["read_only"] for m in agent["volumes"])
    assert {m["target"] for m in agent["volumes"]} == {
        "/var/run/docker.sock",
        "/host/proc",
        "/host/etc/resolv.conf",
    }
    # Its spec is on every node: the settings it reads and nothing else (no secrets).
    assert set(agent["environment"]) <= set(swarmstack.AGENT_SETTINGS)
    assert "DSHUB_PROJECT" in agent["environment"]
    without, _ = stack_of(compose_config, network_policy=False)
    assert "netpolicy" not in without["services"] and "host" not in without["networks"]


def test_prometheus_joins_only_with_monitoring(compose_config):
    stack, _ = stack_of(compose_config, monitoring=True)
    assert "prometheus" in stack["services"]
    assert "monitoring" in stack["networks"]


def test_the_stack_file_is_valid_yaml_for_docker_stack(compose_config):
    stack, _ = stack_of(compose_config)
    again = yaml.safe_load(yaml.safe_dump(stack))
    assert again["version"] == "3.9"
    assert all("build" not in svc and "depends_on" not in svc for svc in again["services"].values())


# -- the service spec ---------------------------------------------------------------


def spec(**overrides) -> ServerSpec:
    values = {
        "user": "20001:20001",
        "group_add": [60001],
        "mounts": [Mount(target="/home/jovyan", source="/pool/users/ada", type="bind")],
        "labels": {"dshub.user": "ada"},
        "pids_limit": 256,
    }
    return ServerSpec(**{**values, **overrides})


def test_service_names_stay_dns_labels_and_distinct():
    long_a, long_b = "dshub-user-" + "a" * 80, "dshub-user-" + "a" * 79 + "b"
    assert service_name("dshub-user-ada") == "dshub-user-ada"
    assert len(service_name(long_a)) == SERVICE_NAME_MAX
    assert service_name(long_a) != service_name(long_b)
    assert re.fullmatch(r"[a-z0-9-]+_[0-9a-f]{12}", service_name(long_a))
    # A cut name never equals another server's uncut one ('_' is not in escaped names).
    exactly = service_name(long_a)[:-13] + "-" + service_name(long_a)[-12:]
    assert service_name(exactly) == exactly != service_name(long_a)


def test_the_service_limits_cpu_memory_processes_and_gpus():
    resources = service_resources(spec(gpus=2), cpu_limit=1.5, mem_limit=2 * 2**30)
    assert resources["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 2 * 2**30, "Pids": 256}
    assert resources["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}
    ]
    assert "Reservations" not in service_resources(spec(), cpu_limit=1, mem_limit=None)


def test_the_task_address_is_the_one_on_the_users_overlay():
    task = {
        "NetworksAttachments": [
            {"Network": {"Spec": {"Name": "ingress"}}, "Addresses": ["10.0.0.5/24"]},
            {"Network": {"Spec": {"Name": "dshub-users"}}, "Addresses": ["10.0.3.7/24"]},
        ]
    }
    assert task_address(task, "dshub-users") == "10.0.3.7"
    assert task_address(task, "other") is None
    assert task_address({}, "dshub-users") is None


def test_a_vanished_folder_is_named_from_the_swarms_refusal_too(tmp_path):
    pool = DataPool(tmp_path / "pool", tmp_path / "pool", 20000, 29999, 60000, 64999)
    said = ServiceFailed(
        "Your server could not start on the swarm (rejected): invalid mount config for type "
        f'"bind": bind source path does not exist: {tmp_path}/pool/users/ada'
    )
    assert vanished_folder(said, pool) == "users/ada"


@pytest.mark.parametrize(
    ("constraint", "allowed"),
    [
        ("node.labels.gpu == true", True),
        ("node.role==worker", True),
        ("node.id != 3kgzfbvk1j7d", True),
        # Reported by the node itself: a node could claim them.
        ("node.hostname != lab-3", False),
        ("engine.labels.course == ds101", False),
        ("node.labels.x == a; rm -rf /", False),
        ("node.labels.x == $(id)", False),
        ("node.labels.x == a\nnode.role == manager", False),
        ("node.ip == 10.0.0.1", False),
    ],
)
def test_placement_constraints_are_a_closed_form(constraint, allowed):
    assert bool(re.fullmatch(PLACEMENT_PATTERN, constraint)) is allowed


# -- the policy in each server's namespace --------------------------------------------


NODE = swarmpolicy.NodeFacts(host=("192.0.2.10/32", "172.18.0.0/16"), nodes=("198.51.100.0/24",))


def out_rules(egress=("public",), resolvers=("192.0.2.53",)) -> list[str]:
    rules = swarmpolicy.server_rules("10.0.3.0/24", egress, resolvers, NODE).splitlines()
    return [line.removeprefix("-A DSHUB-OUT ") for line in rules if line.startswith("-A DSHUB-OUT")]


def test_a_servers_rules_let_it_reach_only_the_hubs_port_on_the_users_network():
    rules = swarmpolicy.server_rules("10.0.3.0/24", ("public",), ("192.0.2.53",), NODE).splitlines()
    out = out_rules()
    assert out[:4] == [
        "-o lo -j RETURN",
        "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-d 10.0.3.0/24 -p tcp -m tcp --dport 8081 -j RETURN",
        "-d 10.0.3.0/24 -j DROP",
    ]
    assert "-d 192.0.2.53/32 -p udp -m udp --dport 53 -j RETURN" in out
    assert "-d 10.0.0.0/8 -j DROP" in out and out[-1] == "-j RETURN"
    # Nobody reaches a server on the hub's port, so there only the hub answers.
    assert "-A DSHUB-IN ! -i lo -p tcp -m tcp --dport 8081 -j DROP" in rules
    assert {"-A INPUT -j DSHUB-IN", "-A OUTPUT -j DSHUB-OUT"} <= set(rules)
    assert rules[0] == "*filter" and rules[-1] == "COMMIT"


@pytest.mark.parametrize("egress", [("all",), ("public",), ("192.0.2.0/24", "198.51.100.0/24")])
def test_whatever_the_egress_the_node_the_nodes_and_the_swarms_ports_stay_closed(egress):
    out = out_rules(egress)
    closed = [
        "-d 192.0.2.10/32 -j DROP",
        "-d 172.18.0.0/16 -j DROP",
        "-d 198.51.100.0/24 -j DROP",
        "-p udp -m udp --dport 4789 -j DROP",
        "-p tcp -m tcp --dport 2377 -j DROP",
        "-p tcp -m tcp --dport 7946 -j DROP",
        "-p udp -m udp --dport 7946 -j DROP",
    ]
    first_egress = len(out) - len(netpolicy.egress_rules(egress))
    for rule in closed:
        assert out.index(rule) < first_egress, rule


def test_ipv6_is_closed_but_for_loopback():
    rules = swarmpolicy.IPV6_RULES.splitlines()
    assert {":INPUT DROP [0:0]", ":OUTPUT DROP [0:0]", ":FORWARD DROP [0:0]"} <= set(rules)
    assert "-A OUTPUT -o lo -j ACCEPT" in rules


@pytest.mark.parametrize(
    ("resolv_conf", "resolvers"),
    [
        ("nameserver 127.0.0.11\n# ExtServers: [192.0.2.53 198.51.100.1]\n", ("192.0.2.53", "198.51.100.1")),
        # Asked from the node's own namespace: no rule in the server's.
        ("nameserver 127.0.0.11\n# ExtServers: [host(192.0.2.53) 198.51.100.1]\n", ("198.51.100.1",)),
        ("nameserver 127.0.0.11\n# ExtServers: [host(127.0.0.53)]\n", ()),
        # Engines before 25 do not say: the node's resolvers then.
        ("nameserver 127.0.0.11\n", None),
    ],
)
def test_the_resolvers_are_those_the_engine_forwards_the_server_to(resolv_conf, resolvers):
    assert swarmpolicy.container_resolvers(resolv_conf) == resolvers


def test_the_users_subnet_is_read_off_the_servers_address():
    container = {"NetworkSettings": {"Networks": {"p-users": {"IPAddress": "10.0.3.7", "IPPrefixLen": 24}}}}
    assert swarmpolicy.users_subnet(container, "p-users") == "10.0.3.0/24"
    assert swarmpolicy.users_subnet(container, "other") is None


def test_the_policy_gate_starts_nothing_and_says_why_without_the_agent():
    command = entrypoint_wrapper(["echo", "started"], policy=True)
    assert command[:3] == ["setpriv", "--no-new-privs", "--"]
    done = subprocess.run(
        command[3:],
        env={"PATH": os.environ["PATH"], "DSHUB_POLICY_WAIT": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 70
    assert "netpolicy agent" in done.stderr
    assert "started" not in done.stdout
    assert entrypoint_wrapper(["echo"], policy=False) == ["setpriv", "--no-new-privs", "--", "echo"]


def test_the_mark_names_the_policys_own_version():
    # An agent of another version (an image left on a node) marks nothing the gate accepts.
    assert re.fullmatch(r"dshub-policy-[0-9a-f]{12}", swarmpolicy.POLICED_ALIAS)
    assert swarmpolicy.POLICED_ALIAS in entrypoint_wrapper(["echo"], policy=True)[5]


def test_broadcast_and_multicast_stay_closed_whatever_the_egress():
    out = out_rules(("all",))
    assert "-d 255.255.255.255/32 -j DROP" in out and "-d 224.0.0.0/4 -j DROP" in out


def test_the_nodes_addresses_with_their_broadcast_ones():
    shown = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
        "2: eth0    inet 10.0.0.10/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever\n"
        "3: docker_gwbridge    inet 172.18.0.1/16 brd 172.18.255.255 scope global docker_gwbridge\n"
    )
    assert swarmpolicy.own_addresses(shown) == (
        "10.0.0.10/32",
        "10.0.0.255/32",
        "172.18.0.1/32",
        "172.18.255.255/32",
    )


def test_the_pools_file_server_is_read_off_the_nodes_mounts():
    mountinfo = (
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "312 27 0:61 / /srv/dshub-pool rw,noatime shared:180 - nfs4 files:/srv/dshub-pool "
        "rw,vers=4.2,rsize=1048576,hard,proto=tcp,timeo=600,sec=sys,clientaddr=10.0.0.10,addr=10.0.0.5\n"
    )
    assert swarmpolicy.nfs_servers(mountinfo) == ["10.0.0.5"]
