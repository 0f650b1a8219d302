"""Spawn → ready: from the API call that starts a server until the user's
/api/status answers through the edge, for the lab and datascience images.

Systems, interleaved spawn by spawn on the same machine:

* floor: `docker run` of the same user image (jupyter server, published on
  127.0.0.1) until its /api/status answers: the engine and the image, nothing else
  (bench/floor.py); also of the minimal JupyterLab image (the lab image's JupyterLab
  alone, bench/minimal-lab/), once per round, which the lab image's floor is held to;
* dshub: a dshub stack (hub + Traefik) per image;
* reference: the official compose reference (bench/reference/) per image.

Every spawn is a new user's first (a lecture's first minute); servers are stopped
before the next spawn. For dshub with the lab image the CPU time of each start is
also read (hub, Traefik, the user container until ready, dockerd + containerd):
the storm's CPU floor. After the spawns, with the stacks gone, the breakdown of the
lab image's start step by step (bench/floor.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from bench import floor
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
from tests.support.stack import docker

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Spawn → ready"

IMAGES = ("lab", "datascience")
SPAWNS = 20
POLL = 0.05
TIMEOUT = 300
TARGET_FLOOR = 1.25
TARGET_REFERENCE = 0.8
TARGET_MINIMAL = 1.1  # the lab image's floor against the minimal JupyterLab image's
MINIMAL = "minimal JupyterLab"


@dataclass
class Sample:
    image: str
    system: str
    run: int
    seconds: float
    cpu_seconds: float | None = None


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
            return Sample(image, "floor", i, *floor.start(floor.floor(user_image(image)), floor_project))

        def run_dshub(i: int) -> Sample:
            seconds, cpu = measured_start(hub_id, proxy_id, dshub_admin, f"s{i}", dshub.project)
            stop_server(dshub_admin, f"s{i}")
            return Sample(image, "dshub", i, seconds, cpu)

        def run_reference(i: int) -> Sample:
            seconds = hub_spawn(ref_admin, f"s{i}")
            stop_server(ref_admin, f"s{i}")
            return Sample(image, "reference", i, seconds)

        yield {"floor": run_floor, "dshub": run_dshub, "reference": run_reference}


def measure(spawns: int = SPAWNS, rounds: int = floor.ROUNDS) -> tuple[list[Sample], list[floor.Sample]]:
    """The spawns, with the minimal image's floor once per round; then the breakdown."""
    samples: list[Sample] = []
    minimal = floor.floor(floor.MINIMAL_IMAGE)
    with ExitStack() as up:
        minimal_project = project_name("floor")
        up.callback(remove_labelled, minimal_project)
        runners = {image: up.enter_context(systems(image)) for image in IMAGES}
        for i in range(spawns):
            samples.append(Sample(MINIMAL, "floor", i, *floor.start(minimal, minimal_project)))
            for image in IMAGES:
                for run in runners[image].values():
                    samples.append(run(i))
    steps_project = project_name("steps")
    try:
        steps = floor.breakdown({image: user_image(image) for image in IMAGES}, steps_project, rounds)
    finally:
        remove_labelled(steps_project)
    return samples, steps


def cpu_per_start(samples: list[Sample]) -> float:
    """Median CPU seconds of one dshub lab server start (the storm's floor)."""
    dshub_lab = [s for s in samples if (s.image, s.system) == ("lab", "dshub")]
    return p50([s.cpu_seconds for s in dshub_lab if s.cpu_seconds is not None])


def seconds_of(samples: list[Sample], image: str, system: str) -> list[float]:
    return [s.seconds for s in samples if (s.image, s.system) == (image, system)]


def cpu_of(samples: list[Sample], image: str, system: str) -> list[float]:
    readings = [s.cpu_seconds for s in samples if (s.image, s.system) == (image, system)]
    taken = [r for r in readings if r is not None]
    if len(taken) < len(readings):
        raise RuntimeError(f"{len(readings) - len(taken)} {image} {system} samples without their CPU reading")
    return taken


def report(samples: list[Sample], steps: list[floor.Sample]) -> str:
    lines = [
        TITLE,
        "",
        "From the start API call until the user's `/api/status` answers through the edge (floor:",
        "from `docker run` until the published port answers), each spawn a new user's first, the",
        "systems interleaved spawn by spawn; once per round also the floor of a minimal JupyterLab",
        "image (the same base, Debian's Python and the lab image's JupyterLab release, nothing",
        "else: `bench/minimal-lab/`). Seconds.",
        "",
    ]
    minimal = seconds_of(samples, MINIMAL, "floor")
    lab_to_minimal = p50(seconds_of(samples, "lab", "floor")) / p50(minimal)
    body: list[list[object]] = [
        [MINIMAL, "floor", len(minimal), f"{p50(minimal):.2f}", f"{p95(minimal):.2f}", "", "", ""]
    ]
    for image in IMAGES:
        values = {system: seconds_of(samples, image, system) for system in ("floor", "dshub", "reference")}
        base, ref = p50(values["floor"]), p50(values["reference"])
        for system, vals in values.items():
            row: list[object] = [image, system, len(vals), f"{p50(vals):.2f}", f"{p95(vals):.2f}"]
            row += [f"{p50(vals) / base:.2f}", f"{p50(vals) / ref:.2f}"]
            if system == "dshub":
                row.append(
                    f"≤ {TARGET_FLOOR}x floor: {verdict(p50(vals) / base, TARGET_FLOOR)}; "
                    f"≤ {TARGET_REFERENCE}x reference: {verdict(p50(vals) / ref, TARGET_REFERENCE)}"
                )
            elif (image, system) == ("lab", "floor"):
                row.append(
                    f"≤ {TARGET_MINIMAL}x minimal floor ({lab_to_minimal:.2f}x): "
                    f"{verdict(lab_to_minimal, TARGET_MINIMAL)}"
                )
            else:
                row.append("")
            body.append(row)
    lines += table(
        ["image", "system", "spawns", "p50 s", "p95 s", "p50 / floor", "p50 / reference", "target"], body
    )
    floors = [(MINIMAL, "minimal"), ("lab", "lab"), ("datascience", "datascience")]
    spreads = ", ".join(
        f"{name} {floor.spread(seconds_of(samples, image, 'floor')):.2f} s" for image, name in floors
    )
    cpus = ", ".join(f"{name} {p50(cpu_of(samples, image, 'floor')):.2f}" for image, name in floors)
    lines += [
        "",
        f"The lab image's floor is **{lab_to_minimal:.2f}x** the minimal image's (p50 of all samples; "
        f"target ≤ {TARGET_MINIMAL}x: {verdict(lab_to_minimal, TARGET_MINIMAL)}). Scatter of the floors "
        f"(p75-p25): {spreads}. CPU time of the floor's container until it answered, median "
        f"(less bent by a busy machine than wall time): {cpus} CPU-seconds.",
        "",
        f"CPU time of one dshub lab start (hub + Traefik + user container until ready + dockerd/containerd), "
        f"median: {cpu_per_start(samples):.2f} CPU-seconds.",
        "",
        "### What each step of a start costs",
        "",
        "After the spawns, the stacks gone: the lab image's floor with one step taken away (or, for",
        "the hub's kind of uid, added) at a time, and the datascience image's without each server",
        f"extension it adds; all variants interleaved, {max(s.run for s in steps) + 1} rounds in a shuffled",
        "order. Δ: the variant's p50 minus its image's floor of the same rounds (negative: the step",
        "costs that much), in wall time and in the container's CPU time until it answered. No",
        "bytecode: `PYTHONPYCACHEPREFIX` at an empty folder. rfc3987-syntax put back: the package the",
        "lab image takes out, as JupyterLab's install brings it (the minimal image's copy, mounted where",
        "it was), so its row is the image's start before and after that fix, in the same rounds. The",
        "single-user server does not start without a hub (it asks the hub's API for its version before",
        "it listens and exits after 5 failed tries), so it and plain `jupyter server` run in the network",
        "namespace of a stand-in that answers that one request: the pair's Δ is the single-user",
        "server's own work.",
        "",
        *floor.report(steps),
    ]
    return "\n".join(lines) + "\n"


def run(spawns: int = SPAWNS, rounds: int = floor.ROUNDS) -> tuple[str, list[dict[str, object]]]:
    samples, steps = measure(spawns, rounds)
    return report(samples, steps), [s.__dict__ for s in samples] + [s.__dict__ for s in steps]
