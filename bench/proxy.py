"""Proxy overhead: HTTP through dshub's edge (Traefik) vs the reference's CHP vs
direct. Kernel websocket round trips are bench/kernel.py's.

HTTP: wrk runs in a container (dshub/bench-wrk) on a network of the bench's own,
which the two proxies join, so no request passes the engine's userland proxy (nor
dshub's network policy, which keeps the users' network closed between its
containers, as it should); the backend is Traefik's ping
endpoint in its own container (Go, a fixed "OK"), so the backend is not what
limits the rate. Routes to it: a rules file beside the hub's (dshub) and CHP's
REST API (reference); the hubs leave both alone (they only manage routes that
carry their own data). Concurrency 1, 10, 50; the paths interleaved, ROUNDS
rounds. A second dshub stack with DSHUB_MONITORING=true is the edge as it was
before Traefik kept its Prometheus metrics only for Prometheus (every request
updates them, labelled by router and service): the fix's before and after.

CPUs are pinned so that each proxy has the same share: wrk and the backend on
LOADGEN_CPU, the proxy under test (Traefik's container; the reference's hub
container, where CHP runs) alone on PROXY_CPU. Unpinned, Traefik (Go, as many
threads as cores) and CHP (Node, one thread) took different shares of cores that
wrk and the backend also wanted, so the ratio measured the scheduler as much as
the proxies.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    CORES,
    exec_in,
    labelled,
    name_of,
    p50,
    project_name,
    remove_labelled,
    stack,
    table,
    user_image,
    verdict,
    wait_until,
)
from bench.reference import Reference
from spawner.core.constants import VERSION
from spawner.hub.edge import PROXY_IMAGE
from tests.support.stack import docker

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Proxy overhead"
HERE = Path(__file__).parent
CONCURRENCY = (1, 10, 50)
ROUNDS = 2
SECONDS = 8
TARGET_RATIO = 3.0
BACKEND = "benchbackend"
LOADGEN_CPU = "0"
PROXY_CPU = "1"
DIRECT, EDGE, CHP = "direct", "dshub edge (Traefik)", "reference (CHP)"
EDGE_METRICS = "dshub edge, metrics on (before)"

# Run in dshub's hub: a rules file beside the hub's own (Traefik loads them all).
EDGE_ROUTE = f"""
from spawner.hub.proxy import ReadableRulesFileHandler
service = {{"loadBalancer": {{"servers": [{{"url": "http://{BACKEND}:8080"}}]}}}}
router = {{"rule": "PathPrefix(`/ping`)", "service": "bench_backend", "entryPoints": ["http"]}}
rules = {{"http": {{"routers": {{"bench_backend": router}}, "services": {{"bench_backend": service}}}}}}
ReadableRulesFileHandler("/srv/dshub/proxy-rules/bench-backend.toml").atomic_dump(rules)
"""

# Run in the reference's hub: a route through CHP's REST API, without JupyterHub's data.
CHP_ROUTE = f"""
import json, os, urllib.request

req = urllib.request.Request(
    "http://127.0.0.1:8001/api/routes/ping", method="POST",
    data=json.dumps({{"target": "http://{BACKEND}:8080"}}).encode(),
    headers={{"Authorization": "token " + os.environ["CONFIGPROXY_AUTH_TOKEN"]}},
)
urllib.request.urlopen(req, timeout=10)
"""


@contextmanager
def side_containers(proxies: list[str]) -> Iterator[str]:
    """The backend and the load generator on a network of their own that ``proxies`` join;
    yields the wrk container."""
    project = project_name("proxy")
    network = f"{project}-net"
    backend_config = f"{HERE / 'wrk' / 'backend.yaml'}:/srv/dshub/edge/traefik.yaml:ro"
    try:
        docker("network", "create", "--label", f"dshub.project={project}", network)
        for name, args in (
            (BACKEND, ["-v", backend_config, PROXY_IMAGE]),
            ("wrk", [f"dshub/bench-wrk:{VERSION}"]),
        ):
            docker(
                "run", "-d", "--name", f"{project}-{name}", "--label", f"dshub.project={project}",
                "--cpuset-cpus", LOADGEN_CPU, "--network", network, "--network-alias", name, *args,
            )  # fmt: skip
        for proxy in proxies:
            docker("network", "connect", network, proxy)
        yield f"{project}-wrk"
    finally:
        for proxy in proxies:
            docker("network", "disconnect", network, proxy, check=False)
        remove_labelled(project)


def wrk(loadgen: str, url: str, concurrency: int, seconds: int = SECONDS) -> dict[str, float]:
    out = docker(
        "exec", loadgen, "wrk", f"-t{min(concurrency, 2)}", f"-c{concurrency}", f"-d{seconds}s",
        "-s", "/usr/local/share/wrk/report.lua", url,
    ).stdout  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "requests": result["requests"],
        "seconds": result["duration_us"] / 1e6,
        "p50_ms": result["p50_us"] / 1000,
        "p95_ms": result["p95_us"] / 1000,
        "errors": result["errors"],
    }


def answers(loadgen: str, url: str) -> bool:
    """Whether a second of wrk gets only answers (wrk exits 1 while nothing listens)."""
    try:
        return wrk(loadgen, url, 1, 1)["errors"] == 0
    except subprocess.CalledProcessError:
        return False


def measure() -> list[dict[str, object]]:
    if CORES < 2:
        raise RuntimeError(f"the proxies are measured on a core of their own: this machine has {CORES}")
    rows: list[dict[str, object]] = []
    reference = Reference(user_image=user_image("lab"))
    try:
        with (
            stack({"DSHUB_USER_IMAGE": user_image("lab")}) as dshub,
            stack({"DSHUB_USER_IMAGE": user_image("lab"), "DSHUB_MONITORING": "true"}) as before,
        ):
            reference.up()
            edge, edge_metrics = labelled(dshub.project, "proxy"), labelled(before.project, "proxy")
            chp = labelled(reference.project, "hub")
            for proxy in (edge, edge_metrics, chp):
                docker("update", "--cpuset-cpus", PROXY_CPU, proxy)
            with side_containers([edge, edge_metrics, chp]) as loadgen:
                for system in (dshub, before):
                    exec_in(system.containers("hub")[0], "python3", "-c", EDGE_ROUTE)
                exec_in(chp, "python3", "-c", CHP_ROUTE)
                urls = {
                    DIRECT: f"http://{BACKEND}:8080/ping",
                    EDGE: f"http://{name_of(edge)}:8000/ping",
                    EDGE_METRICS: f"http://{name_of(edge_metrics)}:8000/ping",
                    CHP: f"http://{name_of(chp)}:8000/ping",
                }
                for url in urls.values():
                    wait_until(lambda u=url: answers(loadgen, u), 60, 0.5, f"route {url}")
                for rnd in range(ROUNDS):
                    for c in CONCURRENCY:
                        for path, url in urls.items():
                            rows.append(
                                {"kind": "http", "round": rnd, "concurrency": c, "path": path}
                                | wrk(loadgen, url, c)
                            )
    finally:
        reference.destroy()
    return rows


def report(rows: list[dict[str, object]]) -> str:
    http = [r for r in rows if r["kind"] == "http"]
    paths = list(dict.fromkeys(str(r["path"]) for r in http))
    lines = [
        TITLE,
        "",
        f"HTTP: wrk ({SECONDS} s per run, {ROUNDS} rounds interleaved) from a container on a network",
        "the proxies join, to a Go backend (Traefik's ping) directly, through dshub's edge and the",
        f"reference's CHP; wrk and the backend pinned to CPU {LOADGEN_CPU}, each proxy alone on CPU",
        f"{PROXY_CPU}. req/s: all requests of all rounds over their time; latency: wrk's percentiles,",
        "the median of the rounds' (ms). *metrics on (before)*: the edge of a stack with",
        "DSHUB_MONITORING=true, where Traefik keeps Prometheus metrics per router and service, as",
        "every stack's edge did before.",
        "",
    ]
    body = []
    rps: dict[tuple[str, int], float] = {}
    for c in CONCURRENCY:
        for path in paths:
            sel = [r for r in http if r["path"] == path and r["concurrency"] == c]
            rps[(path, c)] = sum(int(r["requests"]) for r in sel) / sum(float(r["seconds"]) for r in sel)
            body.append(
                [
                    c,
                    path,
                    f"{rps[(path, c)]:.0f}",
                    f"{p50([float(r['p50_ms']) for r in sel]):.2f}",
                    f"{p50([float(r['p95_ms']) for r in sel]):.2f}",
                    sum(int(r["errors"]) for r in sel),
                    f"{rps[(path, c)] / rps[(DIRECT, c)]:.2f}",
                ]
            )
    lines += table(["c", "path", "req/s", "p50 ms", "p95 ms", "errors", "req/s vs direct"], body)
    ratio, before = rps[(EDGE, 10)] / rps[(CHP, 10)], rps[(EDGE_METRICS, 10)] / rps[(CHP, 10)]
    met = verdict(ratio, TARGET_RATIO, lower_is_better=False)
    lines += [
        "",
        f"Edge vs CHP at c=10: **{ratio:.2f}x** req/s (target ≥ {TARGET_RATIO}x: {met}); with the metrics on,"
        f" as before: {before:.2f}x.",
        "",
    ]
    return "\n".join(lines) + "\n"


def run() -> tuple[str, list[dict[str, object]]]:
    rows = measure()
    return report(rows), rows
