"""Per-user origins: every allowed username gets a safe DNS label of its own, and the setting."""

import asyncio
import random
import re
import tomllib

import pytest
from jupyterhub.utils import subdomain_hook_idna
from jupyterhub_traefik_proxy.traefik_utils import deep_merge, generate_alias, generate_rule

from spawner.config import settings as s
from spawner.core.names import is_valid_username
from spawner.hub.proxy import (
    MAX_LABEL,
    DshubTraefikProxy,
    hub_pages_only_on_hub_host,
    route_problem,
    sign_in_rules,
    toml_dumps,
    user_label,
    user_subdomain,
)

# A DNS label (RFC 1123): letters, digits, inner hyphens, at most 63 characters.
DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
HUB = "hub.example.edu"
SEPARATORS = "._-@"


def random_username(rng: random.Random) -> str:
    """A name the username rule allows: alphanumeric runs joined by single separators."""
    length = rng.randint(1, 64)
    name = rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
    while len(name) < length:
        if len(name) <= length - 2 and rng.random() < 0.3:
            name += rng.choice(SEPARATORS)
        name += rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
    assert is_valid_username(name), name
    return name


def assert_safe_label(label: str) -> None:
    assert DNS_LABEL.fullmatch(label), label
    # "--" in the 3rd and 4th place is reserved (xn-- is IDNA): browsers would decode it.
    assert label[2:4] != "--", label


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("ada", "ada"),
        ("s1234567", "s1234567"),
        ("ada.lovelace", "ada-2elovelace"),
        ("ada_l", "ada-5fl"),
        ("ada-l", "ada-2dl"),
        ("ada.l@uni.example", "ada-2el-40uni-2eexample"),
        # Would be an IDNA label with a plain "-" kept: escaping never writes "--".
        ("xn-abc", "xn-2dabc"),
    ],
)
def test_label_is_the_pool_folder_name(name, label):
    assert user_label(name) == label
    assert_safe_label(label)


def test_names_that_only_differ_in_separators_or_look_escaped_get_different_labels():
    # JupyterHub's default hook hashes names with '.', '_' or '@' to 28 bits, so a chosen
    # name can land on another person's origin; these labels are the names, escaped.
    names = ["ada.lovelace", "ada_lovelace", "ada-lovelace", "ada@lovelace", "ada-2elovelace", "adalovelace"]
    labels = [user_label(n) for n in names]
    assert len(set(labels)) == len(names), labels
    assert subdomain_hook_idna("ada.lovelace", HUB, "user") != f"{user_label('ada.lovelace')}.{HUB}"


def test_long_names_are_cut_and_hashed_within_63_characters():
    long_names = ["a" * 64, "a." * 31 + "bc", "a.b." * 15 + "cd", "a" * 63 + "b"]
    labels = [user_label(n) for n in long_names]
    for label in labels:
        assert len(label) <= MAX_LABEL
        assert_safe_label(label)
        assert "--" in label  # an escaped name never holds "--": no short label can equal these
    assert len(set(labels)) == len(long_names)
    assert user_label("a" * 63) == "a" * 63


def test_every_allowed_name_gets_a_safe_unique_label_and_an_accepted_route():
    rng = random.Random(20240601)
    names = {random_username(rng) for _ in range(20_000)}
    labels: dict[str, str] = {}
    for name in names:
        label = user_label(name)
        assert_safe_label(label)
        assert labels.setdefault(label, name) == name, f"{name!r} and {labels[label]!r} share {label!r}"
        routespec = f"{user_subdomain(name, HUB, 'user')}/user/{name}/"
        assert route_problem(routespec, "http://172.18.0.5:8888", {"user": name}) is None
        assert generate_rule(routespec).startswith(f"Host(`{label}.{HUB}`) && ")


def test_services_keep_jupyterhubs_hook_which_no_user_label_matches():
    assert user_subdomain("roster", HUB, "service") == f"roster--service.{HUB}"
    assert not user_label("roster").endswith("--service")


def test_routes_with_hosts_longer_than_dns_allows_are_refused():
    assert route_problem(f"{'a' * 64}.{HUB}/user/ada/", "http://h:1", {"user": "ada"})
    assert route_problem(f"{'a.' * 127}edu/user/ada/", "http://h:1", {"user": "ada"})
    assert route_problem(f"{'a' * 63}.{HUB}/user/ada/", "http://h:1", {"user": "ada"}) is None


def test_hub_pages_are_redirected_off_every_other_host():
    rules = hub_pages_only_on_hub_host("https://hub.example.edu", "http")
    router = rules["http"]["routers"]["dshub-hub-host-only"]
    assert router["rule"] == "(Path(`/hub`) || PathPrefix(`/hub/`)) && !Host(`hub.example.edu`)"
    signin = sign_in_rules(20, "http", "http://hub:8081")["http"]["routers"]["dshub-signin"]
    assert router["priority"] > signin["priority"]
    redirect = rules["http"]["middlewares"][router["middlewares"][0]]["redirectRegex"]
    target = re.sub(
        redirect["regex"], redirect["replacement"].replace("${1}", r"\1"), "http://ada.x:8/hub/a?b"
    )
    assert target == "https://hub.example.edu/hub/a?b"
    # Both rule sets in one rules file, as jupyterhub_config.py merges them.
    merged = deep_merge(sign_in_rules(20, "http", "http://hub:8081"), rules)
    routers = tomllib.loads(toml_dumps(merged))["http"]["routers"]
    assert set(routers) == {"dshub-signin", "dshub-hub-host-only"}


def test_edge_rules_of_the_last_start_go_when_the_settings_drop_them(tmp_path):
    rules = tmp_path / "rules.toml"
    user_route = f"{user_label('ada.l')}.{HUB}/user/ada.l/"
    hub_host_only = hub_pages_only_on_hub_host(f"https://{HUB}", "http")
    router, service = generate_alias(user_route, "router"), generate_alias(user_route, "service")
    ada = {
        "http": {
            "routers": {
                router: {"rule": generate_rule(user_route), "service": service, "entryPoints": ["http"]}
            },
            "services": {service: {"loadBalancer": {"servers": [{"url": "http://10.0.0.7:8888"}]}}},
        },
        "jupyterhub": {
            "routes": {
                router: {"routespec": user_route, "target": "http://10.0.0.7:8888", "data": {"user": "ada.l"}}
                | {"router": router, "service": service}
            }
        },
    }
    last_start = deep_merge(deep_merge(sign_in_rules(20, "http", "http://hub:8081"), hub_host_only), ada)
    rules.write_text(toml_dumps(last_start))

    async def start_without_per_user_origins() -> None:
        proxy = DshubTraefikProxy(
            dynamic_config_file=str(rules),
            should_start=False,
            traefik_api_password="unused-in-this-test",
            traefik_entrypoint="http",
            extra_dynamic_config=sign_in_rules(20, "http", "http://hub:8081"),
        )
        await proxy._setup_traefik_dynamic_config()

    asyncio.run(start_without_per_user_origins())
    http = tomllib.loads(rules.read_text())["http"]
    assert set(http["routers"]) == {"route_api", "dshub-signin", router}
    assert set(http["middlewares"]) == {"auth_api", "dshub-signin-rate", "dshub-signin-body"}
    assert set(http["services"]) == {"dshub-signin-hub", service}


def test_subdomains_are_off_by_default():
    loaded = s.load({})
    assert loaded.user_subdomains is False
    assert loaded.subdomain_host == ""


@pytest.mark.parametrize(
    ("public_url", "subdomain_host"),
    [
        ("https://hub.example.edu", "https://hub.example.edu"),
        ("https://Hub.Example.edu/", "https://hub.example.edu"),
        ("http://hub.localhost:8000", "http://hub.localhost:8000"),
    ],
)
def test_subdomains_below_the_public_urls_host(public_url, subdomain_host):
    loaded = s.load({"DSHUB_USER_SUBDOMAINS": "true", "DSHUB_PUBLIC_URL": public_url})
    assert loaded.user_subdomains is True
    assert loaded.subdomain_host == subdomain_host


@pytest.mark.parametrize(
    ("public_url", "message"),
    [
        (None, "DSHUB_USER_SUBDOMAINS=true needs DSHUB_PUBLIC_URL"),
        ("http://127.0.0.1:8000", "is an IP address"),
        ("http://localhost:8000", "not a name of at least two labels"),
        ("https://hub.example.edu/jupyter", "has a path"),
        (f"https://{'h' * 60}.{'e' * 60}.{'x' * 60}.example.edu", "use a name of at most 189"),
    ],
)
def test_subdomains_need_a_public_url_with_a_host_name(public_url, message):
    env = {"DSHUB_USER_SUBDOMAINS": "true"}
    if public_url:
        env["DSHUB_PUBLIC_URL"] = public_url
    with pytest.raises(s.SettingsError) as info:
        s.load(env)
    assert message in str(info.value)
    assert "DSHUB_PUBLIC_URL" in str(info.value)
