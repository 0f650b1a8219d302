"""Kernel round trips: how long a cell takes to come back, directly and through the edge.

One dshub stack with the lab image. Besides a user's real server (JupyterHub's
single-user server behind the edge), the bench runs two plain servers of the same
image on the users' network, routed through the same Traefik: "nodelay", with the
image's own settings, and "jupyter default", with Jupyter's own kernel socket
(``ZMQChannelsWebsocketConnection``: Nagle's algorithm left on), the state before
images/lab/dshub_nodelay.py. So the fix's before/after pair comes from one run.

* Script: bench/ws_probe.py in the hub's container, a kernel per path, executes
  of ``1`` alternating over all paths (execute_request sent until idle).
* Browser: Lab in Chromium, one page per plain server, cells run with Lab's own
  run-cell command, alternating between the pages; timed in the page from the
  command until its promise resolves (the kernel replied and went idle).

Every verdict is on all samples; a round trip of STALL_MS or more is a stall.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

from bench.common import (
    admin_session,
    exec_in,
    p50,
    p95,
    stack,
    start_server,
    table,
    user_image,
    verdict,
    wait_until,
)
from tests.support.browser import launch, new_page
from tests.support.stack import docker

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Kernel round trips"
HERE = Path(__file__).parent
ROUND_TRIPS = 200
BROWSER_ROUND_TRIPS = 100
STALL_MS = 30
TARGET_STALLS = 0.05
TARGET_P50_MS = 1.0
TARGET_P95_MS = 2.0
USER = "wsuser"
JUPYTER_DEFAULT = "jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection"
# The plain servers: their path prefix and what they change of the image's settings.
PLAIN = {
    "nodelay": (),
    "jupyter-default": (f"--ServerApp.kernel_websocket_connection_class={JUPYTER_DEFAULT}",),
}
NOTEBOOK = {
    "type": "notebook",
    "content": {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": "bench", "source": "1", "metadata": {}, "outputs": []}],
    },
}
# Run in dshub's hub: the plain servers' routes, in a rules file beside the hub's own.
ROUTES = """
import sys
from spawner.hub.proxy import ReadableRulesFileHandler
routers, services = {}, {}
for name in sys.argv[1:]:
    routers[f"bench_{name}"] = {"rule": f"PathPrefix(`/bench-{name}/`)", "service": f"bench_{name}",
                                "entryPoints": ["http"]}
    services[f"bench_{name}"] = {"loadBalancer": {"servers": [{"url": f"http://bench-{name}:8888"}]}}
rules = {"http": {"routers": routers, "services": services}}
ReadableRulesFileHandler("/srv/dshub/proxy-rules/bench-kernel.toml").atomic_dump(rules)
"""
# In a Lab page, timed there: "run-cell" runs the active cell with Lab's command, until it
# is done (output shown); "execute" sends `1` with Lab's own kernel client, until the kernel's
# reply and idle status arrived (the round trip without Lab's work on the page).
TIMED = """
async ([how, count]) => {
  const app = window.jupyterapp;
  const kernel = app.shell.currentWidget.sessionContext.session.kernel;
  const times = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    if (how === "run-cell") {
      await app.commands.execute("notebook:run-cell");
    } else {
      await kernel.requestExecute({code: "1", silent: false, store_history: false}).done;
    }
    times.push(performance.now() - started);
  }
  return times;
}
"""
BROWSER_WAYS = ("execute", "run-cell")
KERNEL_IDLE = """
() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = widget && widget.sessionContext && widget.sessionContext.session
    && widget.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === "connected" && kernel.status === "idle";
}
"""


def plain_server(project: str, network: str, name: str, token: str) -> str:
    """A plain Jupyter server of the lab image, its base URL /bench-<name>/."""
    return docker(
        "run", "-d", "--name", f"{project}-bench-{name}", "--label", f"dshub.project={project}",
        "--network", network, "--network-alias", f"bench-{name}", user_image("lab"),
        "jupyter", "lab", "--ip=0.0.0.0", "--port=8888", f"--ServerApp.base_url=/bench-{name}/",
        f"--IdentityProvider.token={token}", "--ServerApp.root_dir=/tmp",
        # window.jupyterapp: the page's timing runs Lab's own commands.
        "--LabApp.expose_app_in_browser=True", *PLAIN[name],
    ).stdout.strip()  # fmt: skip


def answers(url: str, token: str) -> bool:
    try:
        return requests.get(url, params={"token": token}, timeout=5).ok
    except requests.RequestException:
        return False


def address(container: str) -> str:
    networks = json.loads(
        docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", container).stdout
    )
    return next(iter(networks.values()))["IPAddress"]


def script_rows(hub: str, paths: dict[str, dict[str, str]]) -> list[dict[str, object]]:
    args = json.dumps({"paths": paths, "n": ROUND_TRIPS})
    out = exec_in(hub, "python3", "-", args, stdin=(HERE / "ws_probe.py").read_text())
    return [{"kind": "script", **json.loads(line)} for line in out.splitlines() if line.startswith("{")]


def browser_rows(edge: str, token: str) -> list[dict[str, object]]:
    """Lab in Chromium on each plain server through the edge, cells alternating between them."""
    rows: list[dict[str, object]] = []
    with sync_playwright() as playwright:
        browser = launch(playwright.chromium)
        try:
            pages = {}
            for name in PLAIN:
                page = new_page(browser)
                page.goto(f"{edge}/bench-{name}/lab/tree/bench.ipynb?token={token}")
                page.wait_for_function(KERNEL_IDLE, timeout=120_000)
                for how in BROWSER_WAYS:
                    page.evaluate(TIMED, [how, 5])  # warm-up
                pages[name] = page
            for run in range(BROWSER_ROUND_TRIPS):
                for how in BROWSER_WAYS:
                    for name, page in pages.items():
                        (ms,) = page.evaluate(TIMED, [how, 1])
                        path = f"{name} edge, {how}"
                        rows.append({"kind": "browser", "path": path, "run": run, "ms": round(ms, 3)})
        finally:
            browser.close()
    return rows


def measure() -> list[dict[str, object]]:
    token = secrets.token_hex(16)
    with stack({"DSHUB_USER_IMAGE": user_image("lab")}) as s:
        hub = s.containers("hub")[0]
        plain = {name: plain_server(s.project, s.settings.network, name, token) for name in PLAIN}
        exec_in(hub, "python3", "-c", ROUTES, *PLAIN)
        for name in PLAIN:
            url = f"{s.url}/bench-{name}"
            wait_until(lambda u=url: answers(f"{u}/api/status", token), 120, 0.5, f"{name} through the edge")
            resp = requests.put(
                f"{url}/api/contents/bench.ipynb", params={"token": token}, json=NOTEBOOK, timeout=30
            )
            resp.raise_for_status()
        admin = admin_session(s)
        user = start_server(admin, s.project, USER)
        paths = {
            "user server edge": {"base": f"http://proxy:8000/user/{USER}", "token": admin.token},
            "user server direct": {"base": f"http://{address(user)}:8888/user/{USER}", "token": admin.token},
        }
        for name, container in plain.items():
            paths[f"{name} edge"] = {"base": f"http://proxy:8000/bench-{name}", "token": token}
            paths[f"{name} direct"] = {
                "base": f"http://{address(container)}:8888/bench-{name}",
                "token": token,
            }
        rows = script_rows(hub, paths)
        rows += browser_rows(s.url, token)
    return rows


def stalls(values: list[float]) -> float:
    return sum(v >= STALL_MS for v in values) / len(values)


def report(rows: list[dict[str, object]]) -> str:
    def samples(kind: str, path: str) -> list[float]:
        return [float(r["ms"]) for r in rows if r["kind"] == kind and r["path"] == path]

    lines = [
        TITLE,
        "",
        f"Script: {ROUND_TRIPS} executes of `1` per path from the hub's container, all paths alternating",
        "(execute_request sent until the kernel's idle status). Browser: Lab in Chromium, "
        f"{BROWSER_ROUND_TRIPS} runs of a cell",
        "per page with Lab's run-cell command, the two pages alternating. *jupyter-default*: the same",
        "image with Jupyter's own kernel socket, Nagle's algorithm on (before dshub_nodelay); *nodelay*:",
        f"the image as it is. ms, all samples; a stall is a round trip of {STALL_MS} ms or more.",
        "",
    ]
    body = []
    script_paths = list(dict.fromkeys(str(r["path"]) for r in rows if r["kind"] == "script"))
    browser_paths = [f"{name} edge, {how}" for how in BROWSER_WAYS for name in PLAIN]
    for kind, paths in (("script", script_paths), ("browser", browser_paths)):
        for path in paths:
            values = samples(kind, path)
            check = ""
            if not path.startswith("jupyter-default"):
                check = f"stalls ≤ {TARGET_STALLS:.0%}: {verdict(stalls(values), TARGET_STALLS)}"
            body.append(
                [kind, path, f"{p50(values):.2f}", f"{p95(values):.2f}", f"{stalls(values):.1%}", check]
            )
    lines += table(["client", "path", "p50", "p95", "stalls", "target"], body)
    edge, direct = samples("script", "user server edge"), samples("script", "user server direct")
    p50_over, p95_over = p50(edge) - p50(direct), p95(edge) - p95(direct)
    lines += [
        "",
        f"The edge's share on a user's server (script, all samples): p50 **{p50_over:+.2f} ms** "
        f"(target ≤ {TARGET_P50_MS} ms: {verdict(p50_over, TARGET_P50_MS)}), p95 **{p95_over:+.2f} ms** "
        f"(target ≤ {TARGET_P95_MS} ms: {verdict(p95_over, TARGET_P95_MS)}).",
    ]
    return "\n".join(lines) + "\n"


def run() -> tuple[str, list[dict[str, object]]]:
    rows = measure()
    return report(rows), rows
