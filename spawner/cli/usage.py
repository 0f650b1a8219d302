"""`make usage`: the running user servers with their profile, CPU, memory and disk use.

Disk is the user's whole pool folder (all their servers share it) against their
disk quota, which the hub put in the container's ``dshub.disk_quota`` label at
start; measured once per user, as the hub does (:func:`spawner.pool.disk.measure`).

`make usage` runs it in the hub container (it has the engine socket and the pool).
Everything comes from the engine and the pool, so the report is right even while
the hub itself is not serving. `make ps` runs ``python -m spawner.cli.usage ps`` on the
host (the project venv has the Docker SDK): this deployment's containers, even
with the hub container stopped.

Names and labels come from users: every value printed in a table goes through
:func:`safe_cell`, so none can carry a newline or a terminal escape (a forged
row, a cleared screen) to the operator's terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import docker

from spawner.config import settings as dshub_settings
from spawner.core.constants import (
    DISK_QUOTA_LABEL,
    GPUS_LABEL,
    PROFILE_LABEL,
    ROLE_LABEL,
    SERVER_LABEL,
    USER_LABEL,
    USER_SERVER_ROLE,
    project_filter,
)
from spawner.core.names import shown, without_control
from spawner.core.units import docker_size, size_for_people
from spawner.pool.datapool import DataPool
from spawner.pool.disk import DiskUsage, measure
from spawner.spawn.stats import cpu_percent, memory_in_use


@dataclass(frozen=True)
class ServerUsage:
    user: str
    server: str
    profile: str
    image: str
    gpus: str
    cpu_percent: float  # of one CPU
    cpu_limit: float
    memory: int
    memory_limit: int
    disk: int  # the user's pool folder
    status: str
    disk_quota: int | None = None
    disk_complete: bool = True  # False: the walk stopped early, at least `disk`
    disk_enforced: bool = False  # the filesystem's project quota holds the folder to it


@dataclass(frozen=True)
class ContainerRow:
    name: str
    status: str
    role: str | None
    user: str | None


def safe_cell(text: str) -> str:
    """A user-derived value as one table cell: control characters escaped.

    An empty value or one with blanks is quoted, so it cannot pass for several columns.
    """
    if not text or any(ch.isspace() for ch in text):
        return shown(text)
    return without_control(text)


def label_quota(labels: dict[str, str]) -> int | None:
    """The quota the hub put on a server at its start (bytes), None for none."""
    value = labels.get(DISK_QUOTA_LABEL, "")
    return int(value) if value.isdigit() else None


def collect(client: docker.DockerClient, project: str, pool: DataPool) -> list[ServerUsage]:
    containers = client.containers.list(filters={"label": project_filter(project, USER_SERVER_ROLE)})

    # One measure per user, however many servers they run.
    disks: dict[tuple[str, int | None], DiskUsage] = {}
    for container in containers:
        key = (container.labels.get(USER_LABEL, ""), label_quota(container.labels))
        if key not in disks:
            disks[key] = measure(pool.user_path(key[0]), key[1]) if key[0] else DiskUsage(0)

    def one(container: Any) -> ServerUsage:
        labels = container.labels
        host = container.attrs["HostConfig"]
        stats = container.stats(stream=False)
        quota = label_quota(labels)
        usage = disks[(labels.get(USER_LABEL, ""), quota)]
        return ServerUsage(
            user=labels.get(USER_LABEL, "?"),
            server=labels.get(SERVER_LABEL, "") or "(default)",
            profile=labels.get(PROFILE_LABEL, "?"),
            image=container.attrs["Config"]["Image"],
            gpus=labels.get(GPUS_LABEL, ""),
            cpu_percent=cpu_percent(stats),
            cpu_limit=(host.get("CpuQuota") or 0) / (host.get("CpuPeriod") or 100_000),
            memory=memory_in_use(stats),
            memory_limit=host.get("Memory") or 0,
            disk=usage.used,
            status=container.status,
            disk_quota=quota,
            disk_complete=usage.complete,
            disk_enforced=usage.enforced,
        )

    # The engine takes a second or two per stats sample: ask for all at once.
    with ThreadPoolExecutor(max_workers=16) as executor:
        rows = list(executor.map(one, containers))
    return sorted(rows, key=lambda r: (r.user, r.server))


def disk_cell(r: ServerUsage) -> str:
    """1.2G, or with a quota 9.6G/10G 96% (hard: the filesystem enforces it); >= when counted in part."""
    used = size_for_people(r.disk) if r.disk_complete else f">={size_for_people(r.disk)}"
    if r.disk_quota is None:
        return used
    cell = f"{used}/{size_for_people(r.disk_quota)} {100 * r.disk / r.disk_quota:.0f}%"
    return f"{cell} hard" if r.disk_enforced else cell


def aligned(lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def table(rows: list[ServerUsage]) -> str:
    header = ("USER", "SERVER", "PROFILE", "CPU", "MEMORY", "DISK", "GPUS", "IMAGE")
    lines = [header]
    for r in rows:
        lines.append(
            (
                safe_cell(r.user),
                safe_cell(r.server),
                safe_cell(r.profile),
                f"{r.cpu_percent:.0f}% of {r.cpu_limit:g}",
                f"{size_for_people(r.memory)} / {docker_size(r.memory_limit)}",
                disk_cell(r),
                safe_cell(r.gpus) if r.gpus else "-",
                safe_cell(r.image),
            )
        )
    return f"{aligned(lines)}\n{len(rows)} running server(s)"


def container_row(summary: dict[str, Any]) -> ContainerRow:
    """One container as the engine lists it (``GET /containers/json``), as `make ps` shows it."""
    labels = summary["Labels"]
    return ContainerRow(
        name=summary["Names"][0].removeprefix("/"),
        status=summary["Status"],
        role=labels.get(ROLE_LABEL),
        user=labels.get(USER_LABEL),
    )


def ps_table(rows: list[ContainerRow]) -> str:
    header = ("NAME", "STATUS", "ROLE", "USER")
    lines = [header]
    for r in rows:
        lines.append(
            (
                safe_cell(r.name),
                # The engine's own words ("Up 5 minutes"), blanks and all.
                without_control(r.status),
                "-" if r.role is None else safe_cell(r.role),
                "-" if r.user is None else safe_cell(r.user),
            )
        )
    return aligned(lines)


def list_containers(client: docker.DockerClient, project: str) -> list[ContainerRow]:
    # The low-level list is one request and has docker ps' status text.
    summaries = client.api.containers(all=True, filters={"label": project_filter(project)})
    return [container_row(s) for s in summaries]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.cli.usage", description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object per server")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("ps", help="this deployment's containers, stopped ones too (make ps)")
    args = parser.parse_args(argv)
    settings = dshub_settings.load()
    if args.command == "ps":
        print(ps_table(list_containers(docker.from_env(), settings.project)))
        return 0
    rows = collect(docker.from_env(), settings.project, DataPool.from_settings(settings))
    if args.json:
        for row in rows:
            # Raw values for programs: json.dumps escapes control characters itself.
            print(json.dumps(asdict(row)))
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
