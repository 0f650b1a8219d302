"""Prometheus metrics: the hub's own, Traefik's, and each user server's CPU and memory.

* The hub serves JupyterHub's metrics at ``/hub/metrics`` (active users, spawn
  durations, ...) to tokens with the ``read:metrics`` scope only: the
  ``dshub-metrics`` service holds one, written where only Prometheus reads it.
* Each running user server's CPU seconds and memory, from the engine, are added
  to the same page (``dshub_user_*``). The engine takes up to a second per
  container to answer, so a thread of the hub samples them every
  ``SAMPLE_SECONDS`` and a scrape only reads the last sample: scraping never waits
  on the engine and never blocks the hub's event loop.
* Traefik serves its own (per-router requests and latency) on the control
  network (``proxy-api:8082``), where user containers cannot reach it; it keeps
  them only with DSHUB_MONITORING (every request updates them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

from spawner.config.secrets import ensure_secret
from spawner.core.constants import SERVER_LABEL, USER_LABEL, USER_SERVER_ROLE, project_filter
from spawner.spawn.stats import memory_in_use

SERVICE = "dshub-metrics"
TOKEN_SECRET = "metrics-token"  # noqa: S105 -- the secret's file name, not a secret
SAMPLE_SECONDS = 15.0


def hub_service(token_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The service whose token Prometheus scrapes with, and its one scope."""
    service = {"name": SERVICE, "api_token": ensure_secret(token_dir, TOKEN_SECRET)}
    role = {"name": SERVICE, "scopes": ["read:metrics"], "services": [SERVICE]}
    return service, role


@dataclass(frozen=True)
class ServerSample:
    user: str
    server: str
    cpu_seconds: float
    memory: int
    memory_limit: int


def sample(client: Any, project: str) -> list[ServerSample]:
    """CPU and memory of every running user server of the deployment, from the engine."""
    containers = client.containers.list(filters={"label": project_filter(project, USER_SERVER_ROLE)})

    def one(container: Any) -> ServerSample:
        # one_shot: the totals of one sample; no wait for a second one to compute a rate.
        stats = container.stats(stream=False, one_shot=True)
        return ServerSample(
            user=container.labels.get(USER_LABEL, ""),
            server=container.labels.get(SERVER_LABEL, ""),
            cpu_seconds=stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9,
            memory=memory_in_use(stats),
            memory_limit=container.attrs["HostConfig"].get("Memory") or 0,
        )

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="dshub-metrics") as executor:
        return list(executor.map(one, containers))


class UserServerCollector:
    """Prometheus collector of the last sample (prometheus_client escapes label values)."""

    def __init__(self) -> None:
        self.samples: list[ServerSample] = []

    def collect(self) -> Iterator[Any]:
        labels = ["user", "server"]
        cpu = CounterMetricFamily(
            "dshub_user_cpu_seconds", "CPU time used by a user server's container.", labels=labels
        )
        memory = GaugeMetricFamily(
            "dshub_user_memory_bytes",
            "Memory of a user server's container, without page cache.",
            labels=labels,
        )
        limit = GaugeMetricFamily(
            "dshub_user_memory_limit_bytes", "Memory limit of a user server's container.", labels=labels
        )
        for s in self.samples:
            cpu.add_metric([s.user, s.server], s.cpu_seconds)
            memory.add_metric([s.user, s.server], s.memory)
            limit.add_metric([s.user, s.server], s.memory_limit)
        yield from (cpu, memory, limit)


def start_user_server_sampler(project: str) -> UserServerCollector:
    """Register the collector and sample the engine in a daemon thread of the hub."""
    import docker

    collector = UserServerCollector()
    REGISTRY.register(collector)  # type: ignore[arg-type]

    def loop() -> None:
        client = docker.from_env()
        while True:
            try:
                collector.samples = sample(client, project)
            except Exception as error:  # the engine restarting must not end the sampling
                logging.getLogger(__name__).warning("Could not sample user servers: %s", error)
                collector.samples = []
            time.sleep(SAMPLE_SECONDS)

    threading.Thread(target=loop, name="dshub-user-metrics", daemon=True).start()
    return collector
