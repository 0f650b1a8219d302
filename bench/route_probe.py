"""Runs inside a stack's hub container (piped to `python3 -`): route registration timing.

The hub's own proxy class adds routes to the stack's real Traefik, from the hub's
container, through the same volume and API the hub uses; the routes go to a
separate rules file in the watched directory, so the hub's own routes are never
touched. Each sample times two things from the moment add_route is called:

* added: add_route returned (what a spawn waits for);
* served: the edge first answered the route with its backend (Traefik's own
  reload time, the floor; polled every POLL_SECONDS from the start).

Variants, interleaved sample by sample on the same rules and Traefik: "dshub"
(spawner.hub.proxy.DshubTraefikProxy as built into the hub image), "records in
the rules" (the same, with the hub's records of its routes in the rules file
that Traefik reads, as dshub wrote them before) and "upstream" (the same class
with jupyterhub-traefik-proxy's own wait, rules writer and API password hash: its
API requests go through a second API router, under UPSTREAM_API, whose password
hash has bcrypt's default cost). Each writes the whole rules file its way.
Arguments: JSON {"existing": [10, 100, 1000], "samples": 20}. Output: one JSON
row per sample on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import bcrypt
from jupyterhub_traefik_proxy.proxy import TraefikProxy
from jupyterhub_traefik_proxy.traefik_utils import TraefikConfigFileHandler, atomic_writing, deep_merge
from tornado.httpclient import AsyncHTTPClient
from tornado.web import Application, RequestHandler
from traitlets import default

from spawner.config.layout import DATA_DIR, RULES_FILE, secrets_dir
from spawner.hub.proxy import DshubTraefikProxy, ReadableRulesFileHandler

BACKEND_PORT = 9990
EDGE = "http://proxy:8000"
POLL_SECONDS = 0.01
# Polls of a route not yet loaded go here (a cheap 404), not to the hub's catch-all route.
MISS_PORT = 9989
RULES_DIR = Path(RULES_FILE).parent
UPSTREAM_API = "/upstream"


class RecordsInTheRules(DshubTraefikProxy):
    """dshub's proxy as it was: the hub's records of its routes in the watched rules file."""

    @default("dynamic_config_handler")
    def _default_handler(self) -> ReadableRulesFileHandler:
        return ReadableRulesFileHandler(self.dynamic_config_file)


def upstream_api_config(password: str) -> dict[str, Any]:
    """Traefik's API under UPSTREAM_API, behind upstream's password hash (bcrypt's default cost)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    return {
        "http": {
            "routers": {
                "bench_upstream_api": {
                    "rule": f"Host(`proxy-api`) && PathPrefix(`{UPSTREAM_API}/api`)",
                    "entryPoints": ["auth_api"],
                    "service": "api@internal",
                    "middlewares": ["bench_upstream_auth", "bench_upstream_strip"],
                }
            },
            "middlewares": {
                "bench_upstream_auth": {"basicAuth": {"users": [f"jupyterhub:{hashed}"]}},
                "bench_upstream_strip": {"stripPrefix": {"prefixes": [UPSTREAM_API]}},
            },
        }
    }


class UpstreamRulesFile(TraefikConfigFileHandler):
    """Upstream's writer (the toml package, a temporary file in the watched directory),
    the file readable by the unprivileged Traefik (upstream's is 0600)."""

    def atomic_dump(self, data: Any) -> None:
        with atomic_writing(self.file_path) as f:
            os.fchmod(f.fileno(), 0o644)
            self._dump(data, f)


class Upstream(DshubTraefikProxy):
    """jupyterhub-traefik-proxy 2.1.0's wait and rules writer."""

    _wait_for_route = TraefikProxy._wait_for_route

    @default("dynamic_config_handler")
    def _default_handler(self) -> UpstreamRulesFile:
        return UpstreamRulesFile(self.dynamic_config_file)


def miss_config(count: int) -> dict[str, Any]:
    """Routes not loaded yet fall to MISS_PORT (a shorter prefix, so a lower priority)."""
    service = {"loadBalancer": {"servers": [{"url": f"http://hub:{MISS_PORT}"}]}}
    router = {"rule": f"PathPrefix(`/bench-{count}-new`)", "service": "bench_miss", "entryPoints": ["http"]}
    return {"http": {"routers": {"bench_miss": router}, "services": {"bench_miss": service}}}


class Backend(RequestHandler):
    def get(self, *args: str) -> None:
        self.write("bench backend")


class Miss(RequestHandler):
    def get(self, *args: str) -> None:
        self.set_status(404)


async def first_served(url: str, client: AsyncHTTPClient) -> float:
    while True:
        resp = await client.fetch(url, raise_error=False, request_timeout=5)
        if resp.code == 200 and resp.body == b"bench backend":
            return time.monotonic()
        await asyncio.sleep(POLL_SECONDS)


async def timed_add(
    proxy: DshubTraefikProxy,
    routespec: str,
    target: str,
    client: AsyncHTTPClient,
    existing: int,
    variant: str,
) -> None:
    """Add a route; print when add_route returned and when the edge first served it."""
    started = time.monotonic()
    served = asyncio.ensure_future(first_served(f"{EDGE}{routespec}", client))
    await proxy.add_route(routespec, target, {"bench": True})
    added = time.monotonic()
    served_at = await asyncio.wait_for(served, 30)
    row = {
        "existing": existing,
        "variant": variant,
        "added_ms": round((added - started) * 1000, 1),
        "served_ms": round((served_at - started) * 1000, 1),
    }
    print(json.dumps(row), flush=True)


def make(cls: type[DshubTraefikProxy], rules: Path, password: str, api_path: str = "") -> DshubTraefikProxy:
    return cls(
        dynamic_config_file=str(rules),
        traefik_api_url=f"http://proxy-api:8099{api_path}",
        traefik_api_username="jupyterhub",
        traefik_api_password=password,
        traefik_entrypoint="http",
        should_start=False,
        # The hub's own rules file holds the API router; this one holds only routes.
        enable_setup_dynamic_config=False,
    )


async def main(existing: list[int], samples: int) -> None:
    # Traefik reaches both on the project network.
    quiet = {"log_function": lambda handler: None}
    Application([(r"/(.*)", Backend)], **quiet).listen(BACKEND_PORT, "0.0.0.0")  # noqa: S104
    Application([(r"/(.*)", Miss)], **quiet).listen(MISS_PORT, "0.0.0.0")  # noqa: S104
    client = AsyncHTTPClient(max_clients=4)
    target = f"http://hub:{BACKEND_PORT}"
    password = (secrets_dir(DATA_DIR) / "proxy-api-password").read_text().strip()
    for count in existing:
        rules = RULES_DIR / f"bench-{count}.toml"
        dshub = make(DshubTraefikProxy, rules, password)
        deep_merge(dshub.dynamic_config, upstream_api_config(password))
        deep_merge(dshub.dynamic_config, miss_config(count))
        for i in range(count):
            traefik_config, hub_config = dshub._dynamic_config_for_route(
                f"/bench-{count}-{i}/", target, {"bench": True}
            )
            deep_merge(dshub.dynamic_config, {**traefik_config, "jupyterhub": hub_config})
        dshub._persist_dynamic_config()
        await first_served(f"{EDGE}/bench-{count}-{count - 1}/", client)
        # Made once its API router is loaded; all three write one shared config
        # (deep_merge updates it in place), as one hub would.
        upstream = make(Upstream, rules, password, UPSTREAM_API)
        before = make(RecordsInTheRules, rules, password)
        for proxy in (upstream, before):
            proxy.dynamic_config, proxy.mutex = dshub.dynamic_config, dshub.mutex
        variants = {"dshub": dshub, "records in the rules": before, "upstream": upstream}
        for k in range(len(variants) * samples):
            variant = list(variants)[k % len(variants)]
            await timed_add(variants[variant], f"/bench-{count}-new{k}/", target, client, count, variant)
        Path(rules).unlink()
        Path(dshub.routes_records_file).unlink(missing_ok=True)


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    asyncio.run(main(args["existing"], args["samples"]))
