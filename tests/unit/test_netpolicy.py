"""The network policy's rules, as they go to iptables-restore and as iptables prints them back."""

import pytest

from spawner.config import settings as s
from spawner.services.netpolicy import (
    Network,
    chain_names,
    egress_rules,
    nameservers,
    restore_text,
    wanted_rules,
)

NETWORK = Network(bridge="br-0123456789ab", trusted=("172.20.0.2", "172.20.0.3"), hub="172.20.0.3")


def test_users_reach_the_hub_api_and_dns_and_nothing_else_on_the_bridge():
    rules = wanted_rules(NETWORK, ("public",), ("10.255.255.53",))
    forward = rules["forward"]
    assert forward[:4] == [
        "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-s 172.20.0.2/32 -j RETURN",
        "-s 172.20.0.3/32 -j RETURN",
        "-d 172.20.0.3/32 -p tcp -m tcp --dport 8081 -j RETURN",
    ]
    # Other users, Traefik, the dev provider: dropped before any egress rule can allow them.
    assert forward[4] == "-o br-0123456789ab -j DROP"
    assert forward[5:7] == [
        "-d 10.255.255.53/32 -p udp -m udp --dport 53 -j RETURN",
        "-d 10.255.255.53/32 -p tcp -m tcp --dport 53 -j RETURN",
    ]
    assert "-d 169.254.0.0/16 -j DROP" in forward and forward[-1] == "-j RETURN"
    # The host itself: only the trusted containers.
    assert rules["input"] == [*forward[:3], "-j DROP"]


@pytest.mark.parametrize(
    ("egress", "last"),
    [
        (("all",), ["-j RETURN"]),
        (("none",), ["-j DROP"]),
        (
            ("203.0.113.0/24", "198.51.100.7/32"),
            ["-d 203.0.113.0/24 -j RETURN", "-d 198.51.100.7/32 -j RETURN", "-j DROP"],
        ),
    ],
)
def test_egress_choices(egress, last):
    assert egress_rules(egress) == last


def test_without_a_hub_nobody_reaches_it():
    rules = wanted_rules(Network(bridge="br-x", trusted=(), hub=None), ("none",), ())
    assert not [r for r in rules["forward"] if "8081" in r]


def test_restore_replaces_both_chains_in_one_transaction():
    chains = dict(zip(("forward", "input"), chain_names("dshub"), strict=True))
    text = restore_text(chains, wanted_rules(NETWORK, ("none",), ()))
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert lines[1:3] == [f":{chains['forward']} - [0:0]", f":{chains['input']} - [0:0]"]
    assert all(len(name) <= 28 for name in chains.values())
    assert chain_names("dshub") != chain_names("dshub2")


def test_nameservers_are_the_hosts_ipv4_resolvers(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "# x\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\nsearch example\n"
    )
    assert nameservers(resolv) == ("10.255.255.53",)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("public", ("public",)),
        ("none", ("none",)),
        ("all", ("all",)),
        ("10.1.2.3, 10.8.0.0/16", ("10.1.2.3/32", "10.8.0.0/16")),
    ],
)
def test_user_egress_setting(raw, parsed):
    assert s.load({"DSHUB_USER_EGRESS": raw}).user_egress == parsed


def test_user_egress_setting_refuses_what_is_no_network():
    with pytest.raises(s.SettingsError, match="DSHUB_USER_EGRESS='internet'"):
        s.load({"DSHUB_USER_EGRESS": "internet"})
