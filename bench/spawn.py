"""Spawn → ready: from the API call that starts a server until the user's
/api/status answers through the edge, for the lab and datascience images.

Systems, interleaved spawn by spawn on the same machine:

* floor: `docker run` of the same user image (jupyter server, published on
  127.0.0.1) until its /api/status answers: the engine and the image, nothing else;
* dshub: a dshub stack (hub + Traefik) per image;
* reference: the official compose reference (bench/reference/) per image.

Every spawn is a new user's first (a lecture's first minute); servers are stopped
before the next spawn. For dshub with the lab image the CPU time of each start is
also read (hub, Traefik, the user container until ready, dockerd + containerd):
the storm's CPU floor.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import requests

from bench.common import (
    admin_session,
    container_cpu_seconds,
    container_id,
    engine_cpu_seconds,
    make_users,
    p50,
    p95,
    project_name,
    remove_labelled,
    stack,
    status_answers,
    stop_server,
    table,
    user_image,
    verdict,
    wait_until,
)
from bench.reference import Reference
from tests.support.hub import HubSession
from tests.support.stack import docker, free_port

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Spawn → ready"

IMAGES = ("lab", "datascience")
SPAWNS = 20
POLL = 0.05
TIMEOUT = 300
TARGET_FLOOR = 1.25
TARGET_REFERENCE = 0.8


@dataclass
class Sample:
    image: str
    system: str
    run: int
    seconds: float
    cpu_seconds: float | None = None


def floor_spawn(image: str, project: str) -> float:
    token = secrets.token_hex(16)
    port = free_port()
    started = time.monotonic()
    cid = docker(
        "run", "-d", "--rm", "--label", f"dshub.project={project}", "-p", f"127.0.0.1:{port}:8888",
        user_image(image), "jupyter", "server", "--ip=0.0.0.0", "--port=8888",
        f"--IdentityProvider.token={token}",
    ).stdout.strip()  # fmt: skip

    def answers() -> bool:
        try:
            r = requests.get(
                f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"}, timeout=10
            )
        except requests.RequestException:
            return False
        return r.status_code == 200

    try:
        wait_until(answers, TIMEOUT, POLL, f"floor {image}")
        return time.monotonic() - started
    finally:
        docker("rm", "-f", cid, check=False)


def hub_spawn(admin: HubSession, name: str) -> float:
    started = time.monotonic()
    resp = admin.api("POST", f"/users/{name}/server")
    assert resp.status_code in (201, 202), resp.text
    wait_until(lambda: status_answers(admin, name), TIMEOUT, POLL, f"server of {name}")
    return time.monotonic() - started


def measured_start(
    s_hub: str, s_proxy: str, admin: HubSession, name: str, project: str
) -> tuple[float, float]:
    """A dshub spawn and the CPU seconds it cost (hub, proxy, user container, engine)."""
    before = container_cpu_seconds(s_hub) + container_cpu_seconds(s_proxy) + engine_cpu_seconds()
    seconds = hub_spawn(admin, name)
    user = docker(
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        f"label=dshub.project={project}",
        "--filter",
        f"label=dshub.user={name}",
    ).stdout.split()[0]
    after = container_cpu_seconds(s_hub) + container_cpu_seconds(s_proxy) + engine_cpu_seconds()
    return seconds, after - before + container_cpu_seconds(user)


@contextmanager
def systems(image: str) -> Iterator[dict[str, Callable[[int], Sample]]]:
    """The three systems for one image, up until the block ends."""
    with ExitStack() as cleanup:
        floor_project = project_name("floor")
        cleanup.callback(remove_labelled, floor_project)
        dshub = cleanup.enter_context(stack({"DSHUB_USER_IMAGE": user_image(image)}))
        dshub_admin = admin_session(dshub)
        hub_id, proxy_id = (container_id(dshub.containers(role)[0]) for role in ("hub", "proxy"))
        reference = Reference(user_image=user_image(image))
        cleanup.callback(reference.destroy)
        reference.up()
        ref_admin = reference.admin()
        for admin in (dshub_admin, ref_admin):
            make_users(admin, [f"s{i}" for i in range(SPAWNS)])

        def run_floor(i: int) -> Sample:
            return Sample(image, "floor", i, floor_spawn(image, floor_project))

        def run_dshub(i: int) -> Sample:
            seconds, cpu = measured_start(hub_id, proxy_id, dshub_admin, f"s{i}", dshub.project)
            stop_server(dshub_admin, f"s{i}")
            return Sample(image, "dshub", i, seconds, cpu)

        def run_reference(i: int) -> Sample:
            seconds = hub_spawn(ref_admin, f"s{i}")
            stop_server(ref_admin, f"s{i}")
            return Sample(image, "reference", i, seconds)

        yield {"floor": run_floor, "dshub": run_dshub, "reference": run_reference}


def measure(spawns: int = SPAWNS) -> list[Sample]:
    samples: list[Sample] = []
    with ExitStack() as up:
        runners = {image: up.enter_context(systems(image)) for image in IMAGES}
        for i in range(spawns):
            for image in IMAGES:
                for run in runners[image].values():
                    samples.append(run(i))
    return samples


def cpu_per_start(samples: list[Sample]) -> float:
    """Median CPU seconds of one dshub lab server start (the storm's floor)."""
    return p50([s.cpu_seconds for s in samples if s.image == "lab" and s.cpu_seconds is not None])


def report(samples: list[Sample]) -> str:
    lines = [
        TITLE,
        "",
        "From the start API call until the user's `/api/status` answers through the edge (floor:",
        "from `docker run` until the published port answers), each spawn a new user's first, the",
        "systems interleaved spawn by spawn. Seconds.",
        "",
    ]
    body = []
    for image in IMAGES:
        values = {
            system: [s.seconds for s in samples if s.image == image and s.system == system]
            for system in ("floor", "dshub", "reference")
        }
        floor, ref = p50(values["floor"]), p50(values["reference"])
        for system, vals in values.items():
            row: list[object] = [image, system, len(vals), f"{p50(vals):.2f}", f"{p95(vals):.2f}"]
            row += [f"{p50(vals) / floor:.2f}", f"{p50(vals) / ref:.2f}"]
            if system == "dshub":
                row.append(
                    f"≤ {TARGET_FLOOR}x floor: {verdict(p50(vals) / floor, TARGET_FLOOR)}; "
                    f"≤ {TARGET_REFERENCE}x reference: {verdict(p50(vals) / ref, TARGET_REFERENCE)}"
                )
            else:
                row.append("")
            body.append(row)
    lines += table(
        ["image", "system", "spawns", "p50 s", "p95 s", "p50 / floor", "p50 / reference", "target"], body
    )
    lines += [
        "",
        f"CPU time of one dshub lab start (hub + Traefik + user container until ready + dockerd/containerd), "
        f"median: {cpu_per_start(samples):.2f} CPU-seconds.",
    ]
    return "\n".join(lines) + "\n"


def run(spawns: int = SPAWNS) -> tuple[str, list[dict[str, object]]]:
    samples = measure(spawns)
    return report(samples), [s.__dict__ for s in samples]
