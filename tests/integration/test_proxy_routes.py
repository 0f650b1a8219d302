"""The hub's proxy class against the stack's real Traefik, from the hub's container.

A route added with DshubTraefikProxy (fast rules writer, short-interval wait) is
served by the edge as soon as add_route returns, survives a hub restart (the
rules file reads back), and is gone once deleted; Traefik's API password hash
has bcrypt's lowest cost. A hostile route, whatever the hub passes, never
reaches Traefik's rules.
"""

import json
import subprocess

# Piped to `python3 -` in the hub container; prints one JSON line of findings.
PROBE = r"""
import asyncio, json, time
from pathlib import Path
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler
from spawner.config.layout import DATA_DIR, RULES_FILE, secrets_dir
from spawner.hub.proxy import DshubTraefikProxy

RULES = str(Path(RULES_FILE).parent / "test-routes.toml")
ROUTE = "/user/ada.l@uni.example/"
# Traefik rule syntax in a routespec (jupyterhub-traefik-proxy unquotes it into
# backticks): as a rule this would match every request of the hub.
HOSTILE = [
    ("/user/x%60)%20||%20PathPrefix(%60/", "http://hub:9991", {"user": "ada"}),
    ("/user/x`) || PathPrefix(`/", "http://hub:9991", {"user": "ada"}),
    ("/user/ada/", "http://hub:9991`) || PathPrefix(`/", {"user": "ada"}),
    ("/user/ada/", "http://hub:9991", {"user": "x`) || PathPrefix(`/"}),
    ("/user/%C3%BCnicode/", "http://hub:9991", {"user": "ünicode"}),
]
EDGE = "http://proxy:8000" + ROUTE


class Backend(RequestHandler):
    def get(self, *args):
        self.write("test backend")


def proxy():
    return DshubTraefikProxy(
        dynamic_config_file=RULES,
        traefik_api_url="http://proxy-api:8099",
        traefik_api_username="jupyterhub",
        traefik_api_password=(secrets_dir(DATA_DIR) / "proxy-api-password").read_text().strip(),
        traefik_entrypoint="http",
        should_start=False,
        enable_setup_dynamic_config=False,
    )


async def edge_answer(client):
    resp = await client.fetch(EDGE, raise_error=False)
    return resp.body.decode() if resp.code == 200 else resp.code


async def main():
    Application([(r"/(.*)", Backend)]).listen(9991, "0.0.0.0")
    client = AsyncHTTPClient()
    p = proxy()
    refused = 0
    for spec, target, data in HOSTILE:
        try:
            await p.add_route(spec, target, data)
        except ValueError:
            refused += 1
    await p.add_route(ROUTE, "http://hub:9991", {"user": "ada.l@uni.example", "last_activity": None})
    served_after_add = await edge_answer(client)
    reread = await proxy().get_all_routes()
    await p.delete_route(ROUTE)
    deadline = time.monotonic() + 60
    while await edge_answer(client) == "test backend" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    hub_rules = Path(RULES_FILE).read_text()
    print(json.dumps({
        "refused": refused,
        "hostile_in_rules": [bad for bad in ("x`", "9991`", "nicode") if bad in Path(RULES).read_text()],
        "served_after_add": served_after_add,
        "reread": reread.get(ROUTE),
        "served_after_delete": await edge_answer(client),
        "api_hash_cost_4": "$2b$04$" in hub_rules,
    }))
    Path(RULES).unlink()


asyncio.run(main())
"""


def test_route_is_served_when_added_rereads_and_goes(stack):
    (hub,) = stack.containers("hub")
    # docker exec passes the probe's exit code on (compose exec does not here).
    out = subprocess.run(
        ["docker", "exec", "-i", hub, "python3", "-"], input=PROBE, capture_output=True, text=True, check=True
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert found["served_after_add"] == "test backend"
    assert found["reread"]["target"] == "http://hub:9991"
    assert found["reread"]["data"] == {"user": "ada.l@uni.example"}
    assert found["refused"] == 5
    assert found["hostile_in_rules"] == []
    # The hub's catch-all route answers instead.
    assert found["served_after_delete"] != "test backend"
    assert found["api_hash_cost_4"]
