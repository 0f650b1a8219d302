"""Swarm mode: spawn → ready against single-host mode on this machine, and a class at once on three nodes.

* spawn: a single-host dshub stack and a swarm-mode one (this engine as a
  one-node swarm), the lab image, interleaved spawn by spawn, each spawn a new
  user's first; target: swarm p50 ≤ 1.5x single-host p50.
* storm: 30 users start at once on a swarm of three engines of the bench's own
  (tests/support/swarmnodes.py: Debian's engine in containers, the pool one host
  folder mounted in each); target: 0 failures. Where the servers ran, and the
  time until the last one answered through the edge.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from bench.common import (
    admin_session,
    make_users,
    p50,
    p95,
    project_name,
    stack,
    status_answers,
    stop_server,
    table,
    user_image,
    verdict,
    wait_until,
)
from bench.spawn import hub_spawn
from tests.support.stack import SwarmStack
from tests.support.swarmnodes import local_swarm, swarm_cluster

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Swarm mode"

SPAWNS = 15
TARGET = 1.5
STORM_USERS = 30
STORM_TIMEOUT = 600


def spawn_samples(spawns: int) -> list[dict[str, object]]:
    samples: list[dict[str, object]] = []
    with ExitStack() as up:
        up.enter_context(local_swarm())
        overrides = {"DSHUB_USER_IMAGE": user_image("lab")}
        single = up.enter_context(stack(overrides))
        workdir = Path(up.enter_context(tempfile.TemporaryDirectory(prefix="dshub-bench-")))
        swarm = up.enter_context(
            SwarmStack(workdir, overrides=overrides, project=project_name("swarm")).running()
        )
        admins = {"single-host": admin_session(single), "swarm": admin_session(swarm)}
        for admin in admins.values():
            make_users(admin, [f"s{i}" for i in range(spawns)])
        for i in range(spawns):
            for mode, admin in admins.items():
                samples.append(
                    {"measure": "spawn", "mode": mode, "run": i, "seconds": hub_spawn(admin, f"s{i}")}
                )
                stop_server(admin, f"s{i}")
    return samples


def storm_samples(users: int) -> list[dict[str, object]]:
    names = [f"c{i:02d}" for i in range(users)]
    with tempfile.TemporaryDirectory(prefix="dshub-bench-") as workdir:
        with swarm_cluster(Path(workdir), None, project_name("nodes")) as (cluster, nodes):
            admin = cluster.session()
            admin.sign_in(cluster.settings.admin_users[0], cluster.admin_password())
            make_users(admin, names)

            def start(name: str) -> dict[str, object]:
                began = time.monotonic()
                try:
                    resp = admin.api("POST", f"/users/{name}/server")
                    assert resp.status_code in (201, 202), resp.text
                    wait_until(lambda: status_answers(admin, name), STORM_TIMEOUT, 0.25, f"server of {name}")
                except (AssertionError, TimeoutError, OSError) as error:
                    return {"measure": "storm", "user": name, "ok": False, "error": str(error)[:200]}
                return {"measure": "storm", "user": name, "ok": True, "seconds": time.monotonic() - began}

            with ThreadPoolExecutor(users) as pool:
                results = list(pool.map(start, names))
            for result in results:
                if result["ok"]:
                    tasks = nodes.docker(
                        1, "service", "ps", "--filter", "desired-state=running",
                        "--format", "{{.Node}}", f"{cluster.project}-user-{result['user']}",
                    ).stdout.split()  # fmt: skip
                    result["node"] = tasks[0] if tasks else ""
    return results


def report(spawns: list[dict[str, object]], storm: list[dict[str, object]], users: int) -> str:
    lines = [
        TITLE,
        "",
        "Spawn → ready (the start API call until the user's `/api/status` answers through the edge),",
        "lab image, single-host mode and swarm mode (this engine as a one-node swarm) interleaved spawn",
        "by spawn, each spawn a new user's first. Seconds.",
        "",
    ]
    values = {
        mode: [float(s["seconds"]) for s in spawns if s["mode"] == mode]  # type: ignore[arg-type]
        for mode in ("single-host", "swarm")
    }
    single = p50(values["single-host"])
    rows = []
    for mode, vals in values.items():
        ratio = p50(vals) / single
        target = f"≤ {TARGET}x single-host: {verdict(ratio, TARGET)}" if mode == "swarm" else ""
        rows.append([mode, len(vals), f"{p50(vals):.2f}", f"{p95(vals):.2f}", f"{ratio:.2f}", target])
    lines += table(["mode", "spawns", "p50 s", "p95 s", "p50 / single-host", "target"], rows)
    ok = [r for r in storm if r["ok"]]
    failed = len(storm) - len(ok)
    where = Counter(str(r.get("node", "")) for r in ok)
    times = [float(r["seconds"]) for r in ok]  # type: ignore[arg-type]
    lines += [
        "",
        f"A class at once on three nodes: {users} users start together on a swarm of three test",
        "engines (containers of the bench's own on this machine, so they share its cores).",
        "",
    ]
    lines += table(
        ["users", "failed", "all ready s", "p50 s", "p95 s", "servers per node", "target"],
        [
            [
                users,
                failed,
                f"{max(times):.1f}" if times else "not measured",
                f"{p50(times):.1f}" if times else "not measured",
                f"{p95(times):.1f}" if times else "not measured",
                ", ".join(f"{node} {count}" for node, count in sorted(where.items())),
                f"0 failures: {verdict(failed, 0)}",
            ]
        ],
    )
    errors = sorted({str(r["error"]) for r in storm if not r["ok"]})
    if errors:
        lines += ["", "Failures: " + "; ".join(errors)]
    return "\n".join(lines) + "\n"


def run(spawns: int = SPAWNS, users: int = STORM_USERS) -> tuple[str, list[dict[str, object]]]:
    spawn = spawn_samples(spawns)
    storm = storm_samples(users)
    return report(spawn, storm, users), spawn + storm
