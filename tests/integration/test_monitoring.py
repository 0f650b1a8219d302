"""Monitoring: Prometheus (compose profile monitoring) scrapes the hub, Traefik and user servers.

After a spawn, Prometheus answers queries for the hub's active users and spawn
durations, Traefik's per-router requests, and the user server's memory; the
hub's metrics page refuses a request without the metrics token.
"""

import time

import pytest
import requests

from tests.support.stack import LAB_IMAGE, Stack, free_port


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    port = free_port()
    monitored = Stack(
        tmp_path_factory.mktemp("monitoring-stack", numbered=True),
        overrides={
            "DSHUB_USER_IMAGE": LAB_IMAGE,
            "DSHUB_MONITORING": "true",
            "DSHUB_PROMETHEUS_PORT": str(port),
        },
    )
    monitored.prometheus = f"http://127.0.0.1:{port}"
    with monitored.running() as running:
        yield running


def query(stack, promql: str, timeout: float = 120) -> list[dict]:
    """The query's result once Prometheus has any (it scrapes every 15 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = requests.get(f"{stack.prometheus}/api/v1/query", params={"query": promql}, timeout=10)
        result = resp.json()["data"]["result"] if resp.ok else []
        if result:
            return result
        time.sleep(2)
    raise TimeoutError(f"no result for {promql} within {timeout}s")


def test_prometheus_sees_users_spawns_routes_and_memory(stack):
    ada = stack.sign_up("ada", "ada-password")
    ada.start_server()
    ada.server_get("api/status")
    active = query(stack, 'jupyterhub_active_users{period="24h"} > 0')
    assert float(active[0]["value"][1]) >= 1
    spawns = query(stack, 'jupyterhub_server_spawn_duration_seconds_count{status="success"} > 0')
    assert float(spawns[0]["value"][1]) >= 1
    routed = query(stack, "sum(traefik_router_requests_total) > 0")
    assert float(routed[0]["value"][1]) > 0
    memory = query(stack, 'dshub_user_memory_bytes{user="ada"} > 0')
    assert "server" not in memory[0]["metric"]  # the default server: Prometheus drops empty labels
    targets = requests.get(f"{stack.prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets} == {"hub": "up", "traefik": "up"}


def test_the_hubs_metrics_need_the_metrics_token(stack):
    assert requests.get(f"{stack.url}/hub/metrics", timeout=10).status_code == 403
