"""The rules file writer: the same TOML the `toml` package writes, read back by TOML 1.0 parsers."""

import asyncio
import tomllib

import pytest
import toml
from jupyterhub_traefik_proxy.traefik_utils import generate_alias, generate_rule

from spawner.hub.proxy import DshubTraefikProxy, route_problem, toml_dumps


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
