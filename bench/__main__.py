"""`make bench`: run the benchmarks, write BENCHMARKS.md and raw CSV under build/bench/."""

from __future__ import annotations

import csv
import datetime
import platform
import subprocess
from pathlib import Path

from bench import build, footprint

REPO = Path(__file__).resolve().parent.parent


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
    cores = len([ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("processor")])
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {cores} cores, {mem_kib / 2**20:.0f} GiB RAM, {system}, Docker engine {engine}"


def main() -> None:
    out_dir = REPO / "build" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    # Build first: the footprint is then measured on the freshly built images.
    for name, bench in (("build", build), ("footprint", footprint)):
        text, rows = bench.run()
        sections.append(text)
        with (out_dir / f"{name}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    header = [
        "# dshub benchmarks",
        "",
        "Written by `make bench` (raw samples: `build/bench/*.csv`). Every figure is",
        "measured against a baseline run side by side in the same invocation.",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        "",
    ]
    (REPO / "BENCHMARKS.md").write_text("\n".join(header) + "\n" + "\n".join(sections))


if __name__ == "__main__":
    main()
