"""The rules file writer: the same TOML the `toml` package writes, read back by TOML 1.0 parsers."""

import tomllib

import pytest
import toml
from jupyterhub_traefik_proxy.traefik_utils import generate_alias, generate_rule

from spawner.proxy import toml_dumps

pytestmark = pytest.mark.unit


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
