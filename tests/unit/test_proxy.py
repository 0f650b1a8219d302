"""The rules file writer: the same TOML the `toml` package writes, read back by TOML 1.0 parsers."""

import asyncio
import json
import tomllib

import pytest
import toml
from jupyterhub_traefik_proxy.traefik_utils import deep_merge, generate_alias, generate_rule

from spawner.hub.proxy import SIGN_IN_BODY_MAX, DshubTraefikProxy, route_problem, sign_in_rules, toml_dumps


def rules(routespecs: list[str]) -> dict:
    config: dict = {"http": {"routers": {}, "services": {}}, "jupyterhub": {"routes": {}}}
    for spec in routespecs:
        router, service = generate_alias(spec, "router"), generate_alias(spec, "service")
        config["http"]["routers"][router] = {
            "service": service,
            "rule": generate_rule(spec),
            "entryPoints": ["http"],
        }
        config["http"]["services"][service] = {
            "loadBalancer": {"servers": [{"url": "http://10.0.0.7:8888"}], "passHostHeader": True}
        }
        config["jupyterhub"]["routes"][router] = {
            "data": {
                "user": spec,
                "server_name": "",
                "last_activity": None,
                "n": 3,
                "ratio": 0.5,
                "hub": False,
            },
            "routespec": spec,
            "target": "http://10.0.0.7:8888",
            "router": router,
            "service": service,
        }
    return config


def test_round_trips_like_the_toml_package():
    config = rules(["/", "/user/bob/", '/user/ünï"quote\\back\ttab/', "/user/😀/", "/user/a.b/x/"])
    config["http"]["middlewares"] = {"auth_api": {"basicAuth": {"users": ["jupyterhub:$2b$04$abc/def."]}}}
    written = toml_dumps(config)
    expected = toml.loads(toml.dumps(config))  # None values are left out by both
    assert tomllib.loads(written) == expected
    assert toml.loads(written) == expected  # what the hub reads back at start
    assert "last_activity" not in written


def test_empty_tables_and_top_level_values():
    config = {"top": 1, "http": {"routers": {}}, "tls": {"stores": {"default": {"defaultCertificate": {}}}}}
    assert tomllib.loads(toml_dumps(config)) == config


@pytest.mark.parametrize(
    ("spec", "target", "data"),
    [
        ("/", "http://hub:8081", {"hub": True}),
        ("/user/ada/", "http://172.18.0.5:8888", {"user": "ada", "server_name": ""}),
        (
            "/user/ada.lovelace@uni.example/gpu/",
            "http://172.18.0.5:8888",
            {"user": "ada.lovelace@uni.example"},
        ),
        ("ada.hub.example.edu/user/ada/", "https://172.18.0.5:8888", {"user": "ada"}),
    ],
)
def test_ordinary_routes_pass(spec, target, data):
    assert route_problem(spec, target, data) is None


@pytest.mark.parametrize(
    ("spec", "target", "data"),
    [
        ("/user/x`) || PathPrefix(`/", "http://hub:8081", {}),
        ("/user/x%60)%20||%20PathPrefix(%60/", "http://hub:8081", {}),
        ("/user/a%2Fb/", "http://hub:8081", {}),
        ("/user/../", "http://hub:8081", {}),
        ("/user/ada", "http://hub:8081", {}),
        ("evil`)||Host(`x/user/ada/", "http://hub:8081", {}),
        ("/user/ada/", "http://hub:8081`) || PathPrefix(`/", {}),
        ("/user/ada/", "file:///etc/passwd", {}),
        ("/user/ada/", "http://hub:8081", {"user": "x`) || PathPrefix(`/"}),
        ("/user/ada/", "http://hub:8081", {"user": "Ada"}),
        ("/user/" + "a" * 600 + "/", "http://hub:8081", {}),
    ],
)
def test_hostile_routes_are_refused(spec, target, data):
    assert route_problem(spec, target, data)


def test_add_route_refuses_before_anything_is_written(tmp_path):
    rules = tmp_path / "rules.toml"

    async def add_hostile_route() -> None:
        proxy = DshubTraefikProxy(
            dynamic_config_file=str(rules),
            should_start=False,
            enable_setup_dynamic_config=False,
            traefik_api_password="unused-in-this-test",
            traefik_entrypoint="http",
        )
        await proxy.add_route("/user/x`) || PathPrefix(`/", "http://hub:8081", {"user": "x"})

    with pytest.raises(ValueError, match="route refused"):
        asyncio.run(add_hostile_route())
    assert not rules.exists()


def proxy_on(rules) -> DshubTraefikProxy:
    """The hub's proxy on this rules file (made in a running event loop, as in the hub)."""
    return DshubTraefikProxy(
        dynamic_config_file=str(rules),
        should_start=False,
        enable_setup_dynamic_config=False,
        traefik_api_password="unused-in-this-test",
        traefik_entrypoint="http",
    )


def in_loop(step):
    async def run():
        return step()

    return asyncio.run(run())


def route_of(rules, user: str, address: str) -> tuple[dict, dict]:
    return in_loop(
        lambda: proxy_on(rules)._dynamic_config_for_route(f"/user/{user}/", address, {"user": user})
    )


def test_traefik_reads_only_the_rules_and_the_hub_keeps_its_records_apart(tmp_path):
    rules = tmp_path / "rules.toml"
    route = route_of(rules, "ada", "http://10.0.0.7:8888")

    async def add() -> None:
        await proxy_on(rules)._apply_dynamic_config(*route)

    asyncio.run(add())
    assert "jupyterhub" not in tomllib.loads(rules.read_text())
    assert '"user"' not in rules.read_text()
    assert (tmp_path / ".records" / "rules.toml.json").exists(), "in a subdirectory: Traefik watches none"
    # A new hub (a restart) reads both back as one.
    again = in_loop(lambda: proxy_on(rules).dynamic_config)
    router = generate_alias("/user/ada/", "router")
    assert again["jupyterhub"]["routes"][router]["data"] == {"user": "ada"}
    assert router in again["http"]["routers"]


def test_records_left_in_the_rules_file_are_read_and_then_moved_out(tmp_path):
    rules = tmp_path / "rules.toml"
    traefik, records = route_of(rules, "bob", "http://10.0.0.8:8888")
    rules.write_text(toml_dumps({**traefik, "jupyterhub": records}))  # as the rules file was written before

    def restart_and_write() -> set[str]:
        proxy = proxy_on(rules)
        proxy._persist_dynamic_config()
        return set(proxy.dynamic_config["jupyterhub"]["routes"])

    assert in_loop(restart_and_write) == {generate_alias("/user/bob/", "router")}
    assert "jupyterhub" not in tomllib.loads(rules.read_text())
    assert set(in_loop(lambda: proxy_on(rules).dynamic_config)["jupyterhub"]["routes"]) == {
        generate_alias("/user/bob/", "router")
    }


def test_a_route_only_the_rules_or_only_the_records_have_is_dropped_at_start(tmp_path):
    """The hub died between the two writes: neither half of a route stays on its own."""
    rules = tmp_path / "rules.toml"
    unrecorded, _ = route_of(rules, "eve", "http://10.0.0.9:8888")
    _, orphan = route_of(rules, "cy", "http://10.0.0.6:8888")
    edge = {"http": {"routers": {"dshub-signin": {"rule": "PathPrefix(`/hub/login`)", "service": "x"}}}}
    rules.write_text(toml_dumps(deep_merge(unrecorded, edge)))
    (tmp_path / ".records").mkdir()
    (tmp_path / ".records" / "rules.toml.json").write_text(json.dumps(orphan))
    config = in_loop(lambda: proxy_on(rules).dynamic_config)
    assert config["jupyterhub"]["routes"] == {}
    assert set(config["http"]["routers"]) == {"dshub-signin"}, "the edge's own rules stay"
    assert config["http"]["services"] == {}


def test_at_start_each_route_is_made_anew_from_its_record(tmp_path):
    """A recorded router whose rule or middlewares someone else wrote does not survive a start."""
    rules = tmp_path / "rules.toml"
    traefik, records = route_of(rules, "ada", "http://10.0.0.7:8888")
    router = generate_alias("/user/ada/", "router")
    traefik["http"]["routers"][router].update(rule="PathPrefix(`/`)", priority=99999, middlewares=["evil"])
    rules.write_text(toml_dumps(traefik))
    (tmp_path / ".records").mkdir()
    (tmp_path / ".records" / "rules.toml.json").write_text(json.dumps(records))
    loaded = in_loop(lambda: proxy_on(rules).dynamic_config)["http"]["routers"][router]
    assert loaded == {
        "rule": generate_rule("/user/ada/"),
        "service": generate_alias("/user/ada/", "service"),
        "entryPoints": ["http"],
    }


def test_the_sign_in_page_takes_a_bounded_body_with_or_without_its_rate_limit():
    limited = sign_in_rules(20, "https", "http://hub:8081")["http"]
    # The excess is refused before its body is read.
    assert limited["routers"]["dshub-signin"]["middlewares"] == ["dshub-signin-rate", "dshub-signin-body"]
    body = limited["middlewares"]["dshub-signin-body"]["buffering"]
    assert body["maxRequestBodyBytes"] == body["memRequestBodyBytes"] == SIGN_IN_BODY_MAX
    unlimited = sign_in_rules(0, "https", "http://hub:8081")["http"]
    assert unlimited["routers"]["dshub-signin"]["middlewares"] == ["dshub-signin-body"]
    assert set(unlimited["middlewares"]) == {"dshub-signin-body"}
