"""Proxy overhead: HTTP through dshub's edge (Traefik) vs the reference's CHP vs
direct, and kernel websocket round trips through each proxy vs direct.

HTTP: wrk runs in a container (dshub/bench-wrk) on both stacks' networks, so no
request passes the engine's userland proxy; the backend is Traefik's ping
endpoint in its own container (Go, a fixed "OK"), so the backend is not what
limits the rate. Routes to it: a rules file beside the hub's (dshub) and CHP's
REST API (reference); the hubs leave both alone (they only manage routes that
carry their own data). Concurrency 1, 10, 50; the three paths interleaved, ROUNDS
rounds. wrk, the proxies and the backend share the machine's cores.

Websocket: bench/ws_probe.py in each hub's container, one kernel per path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    admin_session,
    exec_in,
    p50,
    p95,
    project_name,
    remove_labelled,
    stack,
    status_answers,
    table,
    user_image,
    verdict,
    wait_until,
)
from bench.reference import Reference
from spawner.core.constants import VERSION
from spawner.hub.edge import PROXY_IMAGE
from tests.support.hub import HubSession
from tests.support.stack import docker

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Proxy overhead"
HERE = Path(__file__).parent
CONCURRENCY = (1, 10, 50)
ROUNDS = 2
SECONDS = 8
WS_ROUND_TRIPS = 200
TARGET_RATIO = 3.0
TARGET_WS_MS = 1.0
# A round trip this long waited for a delayed ACK (see report()).
STALL_MS = 30
BACKEND = "benchbackend"
USER = "wsuser"

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


def labelled(project: str, role: str) -> str:
    selectors = ("--filter", f"label=dshub.project={project}", "--filter", f"label=dshub.role={role}")
    (cid,) = docker("ps", "-q", *selectors).stdout.split()
    return cid


def name_of(cid: str) -> str:
    return docker("inspect", "--format", "{{.Name}}", cid).stdout.strip().lstrip("/")


@contextmanager
def side_containers(networks: list[str]) -> Iterator[str]:
    """The backend and the load generator on all the networks; yields the wrk container."""
    project = project_name("proxy")
    backend_config = f"{HERE / 'wrk' / 'backend.yaml'}:/srv/dshub/edge/traefik.yaml:ro"
    try:
        for name, args in (
            (BACKEND, ["-v", backend_config, PROXY_IMAGE]),
            ("wrk", [f"dshub/bench-wrk:{VERSION}"]),
        ):
            docker(
                "run", "-d", "--name", f"{project}-{name}", "--label", f"dshub.project={project}",
                "--network", networks[0], "--network-alias", name, *args,
            )  # fmt: skip
            for net in networks[1:]:
                docker("network", "connect", "--alias", name, net, f"{project}-{name}")
        yield f"{project}-wrk"
    finally:
        remove_labelled(project)


def wrk(loadgen: str, url: str, concurrency: int, seconds: int = SECONDS) -> dict[str, float]:
    out = docker(
        "exec", loadgen, "wrk", f"-t{min(concurrency, 2)}", f"-c{concurrency}", f"-d{seconds}s",
        "-s", "/usr/local/share/wrk/report.lua", url,
    ).stdout  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "rps": round(result["requests"] / (result["duration_us"] / 1e6), 1),
        "p50_ms": result["p50_us"] / 1000,
        "p95_ms": result["p95_us"] / 1000,
        "errors": result["errors"],
    }


def new_kernel(session: HubSession, name: str) -> str:
    """A kernel in name's server, made with session's token (an admin's)."""
    visitor = HubSession(session.base_url)
    visitor.token, visitor.name = session.token, name
    return visitor.new_kernel()


def start(session: HubSession, project: str, name: str) -> str:
    """Start name's server (the only one of the project); its container's id."""
    resp = session.api("POST", f"/users/{name}", json={})
    assert resp.status_code in (201, 409), resp.text
    assert session.api("POST", f"/users/{name}/server").status_code in (201, 202)
    wait_until(lambda: status_answers(session, name), 300, 0.2, f"server of {name}")
    return labelled(project, "user-server")


def ws_rows(system: str, hub: str, session: HubSession, edge: str, user: str) -> list[dict[str, object]]:
    """Round trips from the hub's container through its proxy (edge: ws:// base) and direct."""
    networks = json.loads(docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", user).stdout)
    ip = next(iter(networks.values()))["IPAddress"]
    paths = {
        path: f"{base}/user/{USER}/api/kernels/{new_kernel(session, USER)}/channels"
        for path, base in (("proxied", edge), ("direct", f"ws://{ip}:8888"))
    }
    args = json.dumps({"paths": paths, "token": session.token, "n": WS_ROUND_TRIPS})
    out = exec_in(hub, "python3", "-", args, stdin=(HERE / "ws_probe.py").read_text())
    return [
        {"kind": "ws", "system": system, **json.loads(line)}
        for line in out.splitlines()
        if line.startswith("{")
    ]


def measure() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    reference = Reference(user_image=user_image("lab"))
    try:
        with stack({"DSHUB_USER_IMAGE": user_image("lab")}) as dshub:
            reference.up()
            edge, chp = labelled(dshub.project, "proxy"), labelled(reference.project, "hub")
            dshub_hub = dshub.containers("hub")[0]
            with side_containers([dshub.settings.network, f"{reference.project}-net"]) as loadgen:
                exec_in(dshub_hub, "python3", "-c", EDGE_ROUTE)
                exec_in(chp, "python3", "-c", CHP_ROUTE)
                urls = {
                    "direct": f"http://{BACKEND}:8080/ping",
                    "dshub edge (Traefik)": f"http://{name_of(edge)}:8000/ping",
                    "reference (CHP)": f"http://{name_of(chp)}:8000/ping",
                }
                for url in urls.values():
                    wait_until(lambda u=url: wrk(loadgen, u, 1, 1)["errors"] == 0, 60, 0.5, f"route {url}")
                for rnd in range(ROUNDS):
                    for c in CONCURRENCY:
                        for path, url in urls.items():
                            rows.append(
                                {"kind": "http", "round": rnd, "concurrency": c, "path": path}
                                | wrk(loadgen, url, c)
                            )
            admin = admin_session(dshub)
            user = start(admin, dshub.project, USER)
            rows += ws_rows("dshub", dshub_hub, admin, "ws://proxy:8000", user)
            ref_admin = reference.admin()
            user = start(ref_admin, reference.project, USER)
            rows += ws_rows("reference", chp, ref_admin, "ws://127.0.0.1:8000", user)
    finally:
        reference.destroy()
    return rows


def report(rows: list[dict[str, object]]) -> str:
    http = [r for r in rows if r["kind"] == "http"]
    paths = list(dict.fromkeys(str(r["path"]) for r in http))
    lines = [
        TITLE,
        "",
        f"HTTP: wrk ({SECONDS} s per run, {ROUNDS} rounds interleaved, median of rounds) from a container on",
        "the stacks' networks to a Go backend (Traefik's ping) directly, through dshub's edge and through",
        "the reference's CHP. Latency percentiles from wrk (ms).",
        "",
    ]
    body = []
    rps: dict[tuple[str, int], float] = {}
    for c in CONCURRENCY:
        for path in paths:
            sel = [r for r in http if r["path"] == path and r["concurrency"] == c]
            rps[(path, c)] = p50([float(r["rps"]) for r in sel])
            body.append(
                [
                    c,
                    path,
                    f"{rps[(path, c)]:.0f}",
                    f"{p50([float(r['p50_ms']) for r in sel]):.2f}",
                    f"{p50([float(r['p95_ms']) for r in sel]):.2f}",
                    sum(int(r["errors"]) for r in sel),
                    f"{rps[(path, c)] / rps[(paths[0], c)]:.2f}",
                ]
            )
    lines += table(["c", "path", "req/s", "p50 ms", "p95 ms", "errors", "req/s vs direct"], body)
    edge, chp = paths[1], paths[2]
    ratio = rps[(edge, 10)] / rps[(chp, 10)]
    met = verdict(ratio, TARGET_RATIO, lower_is_better=False)
    lines += ["", f"Edge vs CHP at c=10: **{ratio:.2f}x** req/s (target ≥ {TARGET_RATIO}x: {met}).", ""]
    ws = [r for r in rows if r["kind"] == "ws"]
    lines += [
        f"Websocket: {WS_ROUND_TRIPS} kernel executes of `1` per path, alternating, from the hub's container",
        "(round trip: execute_request sent until the kernel's idle status arrives). ms. Some round trips",
        f"on every path stall ~40 ms (≥ {STALL_MS} ms here), the signature of Nagle's algorithm on the",
        "Jupyter server's socket (several small reply frames) meeting the receiver's delayed ACK; it hits",
        "direct and proxied connections alike and swamps the proxy's share, so the overhead is taken on",
        "the round trips without a stall.",
        "",
    ]
    body = []
    for system in ("dshub", "reference"):
        proxied = [float(r["ms"]) for r in ws if r["system"] == system and r["path"] == "proxied"]
        direct = [float(r["ms"]) for r in ws if r["system"] == system and r["path"] == "direct"]
        if not proxied:
            continue
        fast_proxied = [v for v in proxied if v < STALL_MS]
        fast_direct = [v for v in direct if v < STALL_MS]
        overhead = p50(fast_proxied) - p50(fast_direct)
        check = f"≤ {TARGET_WS_MS} ms: {verdict(overhead, TARGET_WS_MS)}" if system == "dshub" else ""
        body.append(
            [
                system,
                f"{p50(proxied):.2f} / {p95(proxied):.2f}",
                f"{p50(direct):.2f} / {p95(direct):.2f}",
                f"{len(proxied) - len(fast_proxied)} / {len(direct) - len(fast_direct)}",
                f"{p50(fast_proxied):.2f}",
                f"{p50(fast_direct):.2f}",
                f"{overhead:.2f}",
                check,
            ]
        )
    header = ["system", "proxied p50 / p95", "direct p50 / p95", "stalls proxied / direct"]
    header += ["no-stall proxied p50", "no-stall direct p50", "overhead p50", "target"]
    lines += table(header, body)
    return "\n".join(lines) + "\n"


def run() -> tuple[str, list[dict[str, object]]]:
    rows = measure()
    return report(rows), rows
