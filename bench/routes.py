"""Route registration latency: from the hub adding a route until the edge serves it.

On a real stack, bench/route_probe.py runs in the hub's container with the hub's
own proxy class and adds routes to the real Traefik with 10, 100 and 1000 routes
already present (bench/route_probe.py says how). Baselines, interleaved sample by
sample: jupyterhub-traefik-proxy's own wait and rules writer ("upstream"), dshub
with the hub's records of its routes in the rules file Traefik reads ("records in
the rules", dshub before), and Traefik's own reload time (the edge first serving
the route, the floor).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import exec_in, p50, p95, stack, table, verdict

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Route registration latency"

EXISTING = (10, 100, 1000)
SAMPLES = 20
TARGET_MS = 150
BEFORE = "records in the rules"
VARIANTS = ("upstream", BEFORE, "dshub")


def run(samples: int = SAMPLES) -> tuple[str, list[dict[str, object]]]:
    probe = (Path(__file__).parent / "route_probe.py").read_text()
    with stack() as s:
        args = json.dumps({"existing": list(EXISTING), "samples": samples})
        out = exec_in(s.containers("hub")[0], "python3", "-", args, stdin=probe)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    lines = [
        TITLE,
        "",
        f"{samples} routes added per row (the three variants interleaved), from the hub's container,",
        "with the hub's proxy class, to the stack's Traefik. *added*: add_route returned (a spawn",
        "waits for this); *served*: the edge first answered the route (Traefik's reload, polled",
        "every 10 ms: the floor). *records in the rules*: dshub with the hub's records of its routes",
        "(JupyterHub's data per route) in the file Traefik parses at every reload, as before; *dshub*:",
        "the records in a file of the hub's. All samples.",
        "",
    ]
    body = []
    for count in EXISTING:
        before = [float(r["added_ms"]) for r in rows if r["existing"] == count and r["variant"] == BEFORE]
        for variant in VARIANTS:
            sel = [r for r in rows if r["existing"] == count and r["variant"] == variant]
            added = [float(r["added_ms"]) for r in sel]
            served = [float(r["served_ms"]) for r in sel]
            check = verdict(p50(added), TARGET_MS) if count == 1000 and variant == "dshub" else ""
            body.append(
                [
                    count,
                    variant,
                    f"{p50(added):.0f}",
                    f"{p95(added):.0f}",
                    f"{p50(served):.0f}",
                    f"{p95(served):.0f}",
                    f"{p50(added) / p50(before):.2f}",
                    check,
                ]
            )
    header = ["existing routes", "variant", "added p50 ms", "added p95 ms", "served p50 ms"]
    header += ["served p95 ms", "added p50 / records in the rules", f"target p50 ≤ {TARGET_MS} ms"]
    lines += table(header, body)
    return "\n".join(lines) + "\n", rows
