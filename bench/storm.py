"""Login storm: N people sign in and start their servers at the same moment.

Each person (a thread of the bench): the login page, the sign-in form (their
first sign-in, which sets the password: one bcrypt hash; on dshub with the
one-time initial password the admin handed out), a token, the start
request, then the Lab page through the edge once /api/status answers (polled
every POLL seconds). Time-to-lab is from opening the login page until the Lab
page loaded. Same storm against dshub and the reference, one after the other,
both with the lab image.

CPU floor: the storm cannot end before N x (CPU seconds of one server start) /
cores; one start's CPU (hub, proxy, user container until ready, dockerd +
containerd) is measured on the same stack just before its storm (median of
WARMUP starts). CPU during the storm is read per part from the engine's cgroups.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from bench.common import (
    CORES,
    admin_session,
    container_cpu_seconds,
    container_id,
    engine_cpu_seconds,
    make_users,
    p50,
    p95,
    stack,
    status_answers,
    stop_server,
    table,
    user_image,
    verdict,
    wait_until,
)
from bench.reference import Reference
from bench.spawn import measured_start
from tests.support.hub import HubSession
from tests.support.stack import docker

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Login storm"

USERS = 50
WARMUP = 3
POLL = 0.5
TIMEOUT = 600
TARGET_FLOOR = 1.25
TARGET_REFERENCE = 0.8
PASSWORD = "storm-password-1"  # noqa: S105 -- the bench users' own


@dataclass
class Person:
    system: str
    name: str
    seconds: float | None
    error: str = ""


@dataclass
class Run:
    people: list[Person]
    hub_cpu: float
    total_cpu: float
    start_cpu: float = 0.0

    @property
    def ready(self) -> list[float]:
        return [p.seconds for p in self.people if p.seconds is not None]

    @property
    def times(self) -> list[float]:
        """Everyone's time-to-lab; a failed start never gets there (infinite)."""
        return [math.inf if p.seconds is None else p.seconds for p in self.people]

    @property
    def failures(self) -> int:
        return len(self.people) - len(self.ready)


def ready_or_failed(person: HubSession, name: str) -> bool:
    """Whether the server answers; raises once the hub gave up on it (a failed spawn)."""
    if status_answers(person, name):
        return True
    if not person.api("GET", f"/users/{name}").json()["servers"]:
        raise AssertionError(f"the hub gave up starting {name}'s server")
    return False


def time_to_lab(url: str, name: str, initial: str | None) -> float:
    started = time.monotonic()
    person = HubSession(url)
    if initial is None:  # the reference: the first sign-in sets the password
        person.sign_in(name, PASSWORD)
    else:
        person.sign_in(name, initial, new_password=PASSWORD)
    resp = person.api("POST", f"/users/{name}/server")
    assert resp.status_code in (201, 202), resp.text
    wait_until(lambda: ready_or_failed(person, name), TIMEOUT, POLL, f"server of {name}")
    lab = person.http.get(f"{url}/user/{name}/lab", timeout=60)
    assert lab.status_code == 200 and f"/user/{name}/lab" in lab.url, (lab.status_code, lab.url)
    return time.monotonic() - started


def storm(system: str, url: str, users: int, initial: dict[str, str] | None) -> list[Person]:
    def one(name: str) -> Person:
        try:
            return Person(system, name, time_to_lab(url, name, initial[name] if initial else None))
        except (AssertionError, TimeoutError, requests.RequestException) as e:
            return Person(system, name, None, f"{type(e).__name__}: {e}"[:200])

    with ThreadPoolExecutor(users) as pool:
        return list(pool.map(one, [f"storm{i}" for i in range(users)]))


def project_cpu(project: str) -> float:
    ids = docker("ps", "-aq", "--no-trunc", "--filter", f"label=dshub.project={project}").stdout.split()
    return sum(container_cpu_seconds(i) for i in ids) + engine_cpu_seconds()


def measured_storm(
    system: str,
    url: str,
    project: str,
    hub_id: str,
    users: int,
    start_cpu: float = 0.0,
    initial: dict[str, str] | None = None,
) -> Run:
    """The storm against one system, with the CPU its hub and all its containers used meanwhile."""
    hub_before = container_cpu_seconds(hub_id)
    total_before = project_cpu(project)
    people = storm(system, url, users, initial)
    return Run(
        people,
        hub_cpu=container_cpu_seconds(hub_id) - hub_before,
        total_cpu=project_cpu(project) - total_before,
        start_cpu=start_cpu,
    )


def run_dshub(users: int) -> Run:
    with stack({"DSHUB_USER_IMAGE": user_image("lab")}) as s:
        admin = admin_session(s)
        hub_id, proxy_id = (container_id(s.containers(role)[0]) for role in ("hub", "proxy"))
        warm = [f"warm{i}" for i in range(WARMUP)]
        people = [f"storm{i}" for i in range(users)]
        make_users(admin, warm + people)
        initial = {name: s.initial_password(name) for name in people}
        cpu = []
        for name in warm:
            cpu.append(measured_start(hub_id, proxy_id, admin, name, s.project)[1])
            stop_server(admin, name)
        return measured_storm("dshub", s.url, s.project, hub_id, users, start_cpu=p50(cpu), initial=initial)


def run_reference(users: int) -> Run:
    reference = Reference(user_image=user_image("lab"))
    try:
        reference.up()
        hub_id = container_id(
            docker("ps", "-q", "--filter", f"label=dshub.project={reference.project}").stdout.split()[0]
        )
        return measured_storm("reference", reference.url, reference.project, hub_id, users)
    finally:
        reference.destroy()


def seconds(value: float) -> str:
    return "never (failed)" if math.isinf(value) else f"{value:.1f} s"


def report(dshub: Run, ref: Run, users: int) -> str:
    floor = users * dshub.start_cpu / CORES
    lines = [
        TITLE,
        "",
        f"{users} people sign in and start at once.",
        "",
        "Time-to-lab: from opening the login page until the Lab page loaded through the edge",
        f"(first sign-in, token, start, /api/status polled every {POLL} s, Lab page). dshub's run, then",
        "the reference's, same lab image. CPU from the engine's cgroups (hub: the hub container, CHP",
        "included for the reference; all: every container of the system plus dockerd/containerd).",
        "",
    ]
    body = []
    for system, r in (("dshub", dshub), ("reference", ref)):
        body.append(
            [
                system,
                r.failures,
                seconds(p50(r.times)),
                seconds(p95(r.times)),
                seconds(max(r.times)),
                f"{r.hub_cpu:.1f}",
                f"{r.total_cpu:.1f}",
                f"{r.total_cpu / users:.2f}",
            ]
        )
    header = [
        "system",
        "failures",
        "p50",
        "p95",
        "all ready",
        "hub CPU s",
        "all CPU s",
        "CPU s per start",
    ]
    lines += table(header, body)
    all_ready, mine, theirs = max(dshub.times), p95(dshub.times), p95(ref.times)
    lines += [
        "",
        f"CPU floor: {users} x {dshub.start_cpu:.2f} CPU-s (one dshub start, median of {WARMUP})"
        f" / {CORES} cores = {floor:.1f} s.",
        "",
        f"- failures: {dshub.failures} (target 0: {verdict(dshub.failures, 0)})",
        f"- all ready: {seconds(all_ready)} = {all_ready / floor:.2f}x the CPU floor "
        f"(target ≤ {TARGET_FLOOR}x: {verdict(all_ready / floor, TARGET_FLOOR)})",
        f"- p95: {seconds(mine)} vs the reference's {seconds(theirs)} = {mine / theirs:.2f}x "
        f"(target ≤ {TARGET_REFERENCE}x: {verdict(mine / theirs, TARGET_REFERENCE)}; a failed start counts"
        " as never ready)",
    ]
    errors = sorted({p.error for r in (dshub, ref) for p in r.people if p.error})
    if errors:
        lines += ["", "Errors:", *(f"- {e}" for e in errors)]
    return "\n".join(lines) + "\n"


def run(users: int = USERS) -> tuple[str, list[dict[str, object]]]:
    dshub = run_dshub(users)
    ref = run_reference(users)
    rows: list[dict[str, object]] = [p.__dict__ for r in (dshub, ref) for p in r.people]
    rows += [
        {"system": system, "hub_cpu": r.hub_cpu, "total_cpu": r.total_cpu, "start_cpu": r.start_cpu}
        for system, r in (("dshub", dshub), ("reference", ref))
    ]
    return report(dshub, ref, users), rows
