"""Density: memory of idle user containers, the hub's memory and its API latency
with 100 running users.

One dshub stack with the lab image: USERS servers started through the hub (a few
at a time), left idle SETTLE_SECONDS, then memory read from the engine (docker
stats: cgroup usage without page cache) and the hub's API timed: GET one user and
GET the user list, through the edge, before the servers started (baseline) and
with all of them running. VS Code: the datascience image's idle and after VS Code
was opened (bench/footprint.py, 3 users). RStudio: measured when the image has
it; without it the row says "not measured" and the measure counts as not done.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import (
    PartlyMeasured,
    admin_session,
    make_users,
    p50,
    p95,
    stack,
    status_answers,
    table,
    user_image,
    verdict,
    wait_until,
)
from bench.footprint import container_mib, image_mib, measure_image
from tests.support.hub import HubSession

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Density"

USERS = 100
AT_ONCE = 4
SETTLE_SECONDS = 20
API_CALLS = 100
TARGET_MIB = 120
RSTUDIO_STATE = "idle, VS Code and RStudio started"
IDE_STATES = ("idle", "idle, VS Code started", RSTUDIO_STATE)


def start(admin: HubSession, name: str) -> None:
    resp = admin.api("POST", f"/users/{name}/server")
    assert resp.status_code in (201, 202), resp.text
    wait_until(lambda: status_answers(admin, name), 600, 0.5, f"server of {name}")


def api_latency(admin: HubSession, names: list[str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"GET /users/{name}": [], "GET /users": []}
    for i in range(API_CALLS):
        for label, path in (
            ("GET /users/{name}", f"/users/{names[i % len(names)]}"),
            ("GET /users", "/users"),
        ):
            started = time.monotonic()
            assert admin.api("GET", path).status_code == 200
            times[label].append((time.monotonic() - started) * 1000)
    return times


def many_lab_users(users: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with stack({"DSHUB_USER_IMAGE": user_image("lab")}) as s:
        admin = admin_session(s)
        names = [f"d{i}" for i in range(users)]
        make_users(admin, names)
        for label, values in api_latency(admin, names).items():
            rows += [{"what": f"hub API {label}", "users": 0, "value": v} for v in values]
        with ThreadPoolExecutor(AT_ONCE) as pool:
            list(pool.map(lambda n: start(admin, n), names))
        time.sleep(SETTLE_SECONDS)
        for label, values in api_latency(admin, names).items():
            rows += [{"what": f"hub API {label}", "users": users, "value": v} for v in values]
        rows += [
            {"what": "lab idle MiB", "users": users, "value": container_mib(s.user_container(n))}
            for n in names
        ]
        hub_mib = container_mib(s.containers("hub")[0])
        rows.append({"what": "hub MiB", "users": users, "value": hub_mib})
    return rows


def report(rows: list[dict[str, object]], ide_rows: list[dict[str, object]], rstudio: str) -> str:
    def values(what: str, users: int | None = None) -> list[float]:
        return [
            float(r["value"]) for r in rows if r["what"] == what and (users is None or r["users"] == users)
        ]

    lab = values("lab idle MiB")
    n = len(lab)
    lines = [
        TITLE,
        "",
        f"{n} users' lab servers running idle on one dshub stack (started {AT_ONCE} at a time, then",
        f"{SETTLE_SECONDS} s idle). Memory: docker stats (cgroup usage without page cache), MiB.",
        "",
    ]
    body = [
        [
            "lab, idle",
            n,
            f"{p50(lab):.0f}",
            f"{min(lab):.0f}-{max(lab):.0f}",
            f"≤ {TARGET_MIB}: {verdict(p50(lab), TARGET_MIB)}",
        ]
    ]
    for state in IDE_STATES:
        ide = [float(r["mib"]) for r in ide_rows if r["state"] == state]
        if ide:
            body.append(
                [f"datascience, {state}", len(ide), f"{p50(ide):.0f}", f"{min(ide):.0f}-{max(ide):.0f}", ""]
            )
        elif state == RSTUDIO_STATE:
            body.append([f"datascience, {state}", "-", "**not measured**", "", f"no RStudio: {rstudio}"])
    lines += table(["user container", "users", "median MiB", "min-max MiB", "target"], body)
    hub = values("hub MiB")
    lines += ["", f"Hub memory with {n} running users: {hub[0]:.0f} MiB.", ""]
    body = []
    for label in ("GET /users/{name}", "GET /users"):
        idle, busy = values(f"hub API {label}", 0), values(f"hub API {label}", n)
        body.append(
            [
                label,
                f"{p50(idle):.1f}",
                f"{p95(idle):.1f}",
                f"{p50(busy):.1f}",
                f"{p95(busy):.1f}",
                f"{p95(busy) / p95(idle):.2f}",
            ]
        )
    lines += table(
        [
            "hub API (through the edge)",
            "0 users p50 ms",
            "0 users p95 ms",
            f"{n} users p50 ms",
            f"{n} users p95 ms",
            "p95 ratio",
        ],
        body,
    )
    sizes = [
        [f"dshub/{image}", f"{image_mib(image):.0f}"] for image in ("proxy", "hub", "lab", "datascience")
    ]
    lines += ["", *table(["image", "size MiB"], sizes)]
    return "\n".join(lines) + "\n"


def run(users: int = USERS) -> tuple[str, list[dict[str, object]]]:
    rows = many_lab_users(users)
    samples, rstudio = measure_image("datascience", 3)
    ide = [s.__dict__ for s in samples]
    rows += [{"what": f"datascience {r['state']} MiB", "users": 3, "value": r["mib"]} for r in ide]
    text = report(rows, ide, rstudio)
    if not any(r["state"] == RSTUDIO_STATE for r in ide):
        raise PartlyMeasured(text, rows, f"RStudio's memory: not in the image ({rstudio})")
    return text, rows
