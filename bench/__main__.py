"""`make bench`: run the benchmarks, write BENCHMARKS.md and raw CSV under build/bench/.

`python -m bench [measure ...]` runs a subset (development); without arguments it
runs every measure in DEFAULT. Each measure writes build/bench/<measure>.md and
.csv; BENCHMARKS.md is assembled from the sections there, so a subset run updates
its own sections and keeps the others (each section says when it was measured).
bench/FINDINGS.md (where the time goes, why a target is missed: written by whoever
read the figures) closes the file. `python -m bench report` only reassembles it.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from bench import build, density, kernel, launcher, netpolicy, proxy, routes, signin, spawn, storm, swarm
from bench.common import BENCH_PREFIX, PartlyMeasured
from bench.reference import Reference

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "bench"
# Each measure's module has run() -> (its section, its rows) and TITLE, its section's title.
MEASURES: dict[str, ModuleType] = {
    "routes": routes,
    "spawn": spawn,
    "proxy": proxy,
    "kernel": kernel,
    "launcher": launcher,
    "density": density,
    "storm": storm,
    "signin": signin,
    "netpolicy": netpolicy,
    "swarm": swarm,
    # Rebuilds the user images without cache (~15 min here): run on its own.
    "build": build,
}
DEFAULT = (
    "routes",
    "spawn",
    "proxy",
    "kernel",
    "launcher",
    "density",
    "storm",
    "signin",
    "netpolicy",
    "swarm",
)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    engine = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB RAM, {system}, Docker engine {engine}"


def pinned(path: str, pattern: str) -> str:
    match = re.search(pattern, (REPO / path).read_text(), re.MULTILINE)
    return match[1] if match else "?"


def versions() -> str:
    hub = "images/hub/requirements.txt"
    pins = (
        ("JupyterHub", hub, r"^jupyterhub==(\S+)"),
        ("DockerSpawner", hub, r"^dockerspawner==(\S+)"),
        ("jupyterhub-traefik-proxy", hub, r"^jupyterhub-traefik-proxy==(\S+)"),
        ("Traefik", "compose/compose.yaml", r"TRAEFIK_BIN_VERSION: \"(\S+)\""),
        ("configurable-http-proxy (reference)", "bench/reference/Dockerfile", r"CHP_VERSION=(\S+)"),
        ("JupyterLab", "images/lab/requirements.txt", r"^jupyterlab==(\S+)"),
    )
    return ", ".join(f"{name} {pinned(path, pattern)}" for name, path, pattern in pins)


def others_busy() -> str:
    """What else ran on the engine when the run started (other people's stacks and builds)."""
    names = subprocess.run(
        ["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True, check=False
    ).stdout.split()
    others = [n for n in names if not n.startswith(BENCH_PREFIX)]
    return f"load average {os.getloadavg()[0]:.1f}, {len(others)} other containers running"


def run_measure(name: str) -> bool:
    """Run one measure and write its section; False when it failed (its section then says so)."""
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    measure = MEASURES[name]
    measured = True
    try:
        text, rows = measure.run()
    except PartlyMeasured as partly:
        measured = False
        text, rows = partly.text, partly.rows
        print(f"bench: {name}: not measured: {partly}", file=sys.stderr, flush=True)
    except Exception:
        measured = False
        # Under the measure's own title: it replaces the figures of an earlier run, which
        # this run could not confirm.
        failure = traceback.format_exc()[-3000:]
        text = f"{measure.TITLE}\n\n**Not measured**: the run failed.\n\n```\n{failure}```\n"
        rows = []
        print(f"bench: {name} FAILED: not measured", file=sys.stderr, flush=True)
    minutes = (time.monotonic() - t0) / 60
    stamp = f"_Measured {started:%Y-%m-%d %H:%M} UTC in {minutes:.1f} min; {others_busy()} at the end._\n"
    (OUT / f"{name}.md").write_text(text + "\n" + stamp)
    if rows:
        with (OUT / f"{name}.csv").open("w", newline="") as f:
            # Rows of one measure may differ in their fields (e.g. HTTP and websocket samples).
            fields = list(dict.fromkeys(key for row in rows for key in row))
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
    print(f"bench: {name} done in {minutes:.1f} min", file=sys.stderr, flush=True)
    return measured


def main(names: list[str]) -> int:
    """0 when every measure asked for was measured."""
    if names == ["report"]:
        write_report("not measured by `report`; each section's stamp gives the load at its end")
        return 0
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        sys.exit(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    Reference().build()
    busy = others_busy()
    failed = [name for name in names or DEFAULT if not run_measure(name)]
    write_report(busy)
    if failed:
        print(f"bench: not measured: {', '.join(failed)} (see BENCHMARKS.md)", file=sys.stderr)
    return 1 if failed else 0


def write_report(busy: str) -> None:
    header = [
        "# dshub benchmarks",
        "",
        "Written by `make bench` (raw samples: `build/bench/*.csv`). Every figure is measured against",
        "a baseline run side by side in the same invocation: the physical floor (`docker run` of the",
        "user image) and the reference deployment (the official compose reference: JupyterHub +",
        "configurable-http-proxy in one container, stock DockerSpawner; `bench/reference/`).",
        "",
        f"- Written: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Versions: {versions()}",
        f"- Machine load when the last run started: {busy} (the machine is shared; ratios measured",
        "  side by side in the same run are what count)",
        "- `python -m bench build` (cold image builds, ~15 min) is not part of `make bench`.",
        "",
    ]
    # A measure run here replaces its section; the others stay as they were measured
    # (each carries its own stamp), also on a machine whose build/bench lacks them.
    sections = sections_of(REPO / "BENCHMARKS.md")
    for name in (*DEFAULT, "build"):
        if (OUT / f"{name}.md").exists():
            text = (OUT / f"{name}.md").read_text()
            sections[text.splitlines()[0]] = text
    findings = Path(__file__).parent / "FINDINGS.md"
    if findings.exists():
        text = findings.read_text()
        sections.pop(text.splitlines()[0], None)
        sections[text.splitlines()[0]] = text
    (REPO / "BENCHMARKS.md").write_text("\n".join(header) + "\n" + "\n".join(sections.values()))


def sections_of(report: Path) -> dict[str, str]:
    """The sections of a written report, by their title line, in order."""
    if not report.exists():
        return {}
    parts = re.split(r"(?m)^(?=## )", report.read_text())[1:]
    return {part.splitlines()[0]: part.rstrip("\n") + "\n" for part in parts}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
