"""Login storm: a class of N people sign in and start their servers at the same moment.

Each person (a thread of the bench) does what a browser does: the login page, the
sign-in form (their first sign-in, which sets the password: bcrypt; on dshub with
the one-time initial password the admin handed out), a token, the start request,
then the spawn's progress stream (what the spawn-pending page reads) until it
says ready or failed, then the Lab page through the edge. Time-to-lab is from
opening the login page until the Lab page loaded. Same storm against dshub with
its default settings (so its start line), dshub with no start line
(``DSHUB_START_CONCURRENCY=0``: the line's before and after in one run) and the
reference, one after the other, all with the lab image and the same timeouts (the
reference's start_timeout and http_timeout are dshub's: the wait in line plus a
server's own start). ``run(lines=...)`` takes other concurrencies side by side.

CPU: every container of the system plus dockerd/containerd, from the engine's
cgroups, less the system's upkeep (its CPU per second with nobody doing anything,
measured over IDLE s before: healthchecks, the network policy's rounds; no start's
work, and over a quiet start's few seconds as much as a third of it). A quiet start
is the same person's flow alone (median of WARMUP people, one after the other, on
the same stack just before its storm); the CPU floor is N x that / cores: the storm
cannot end sooner.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import requests
from traitlets.config import Config

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
    stop_server,
    table,
    user_image,
    verdict,
)
from bench.reference import Reference
from spawner import hubconfig
from spawner.config.profiles import Defaults, ProfilesFile
from spawner.config.settings import Settings
from spawner.spawn.docker import DataPoolSpawner
from tests.support.hub import HubSession, sign_in_patiently
from tests.support.stack import docker

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Login storm"

T = TypeVar("T")
USERS = 100
WARMUP = 5
SETTLE = 5.0
IDLE = 10.0
TARGET_FLOOR = 1.25
TARGET_QUIET = 1.1
TARGET_REFERENCE = 0.8
# DSHUB_START_CONCURRENCY of the dshub runs: the default first (the verdicts are its), then
# no line at all, as before the line came in.
LINES = ("auto", "0")
PASSWORD = "storm-password-1"  # noqa: S105 -- the bench users' own


@dataclass
class Person:
    system: str
    name: str
    seconds: float | None
    told_to_wait: int = 0  # times the edge (429) or the hub (busy hashing) said to try again
    error: str = ""


@dataclass
class Run:
    people: list[Person]
    hub_cpu: float
    total_cpu: float  # less the upkeep
    upkeep: float  # CPU seconds per second, idle
    machine_busy: float  # share of all cores' time busy during the storm, whoever's work
    bench_cpu: float  # the bench's own people (this process: sign-ins, progress streams, pages)
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


def wait_for_spawn(person: HubSession, name: str) -> None:
    """Read the spawn's progress stream until it says ready; a failed spawn raises with its message.

    The hub ends the spawn at its start_timeout (the stream then says failed) and sends a
    keepalive every few seconds meanwhile, so the API's read timeout never cuts a wait.
    """
    resp = person.api("GET", f"/users/{name}/server/progress", stream=True)
    assert resp.status_code == 200, resp.text
    for line in resp.iter_lines(decode_unicode=True):
        if not line.startswith("data:"):
            continue
        event = json.loads(line[len("data:") :])
        if event.get("ready"):
            return
        if event.get("failed"):
            raise AssertionError(f"{name}'s start failed: {event.get('message')}")
    raise AssertionError(f"{name}'s progress stream ended before the server was ready")


def time_to_lab(url: str, name: str, initial: str | None) -> tuple[float, int]:
    """Seconds from opening the login page until the Lab page loaded, and the waits for the rate limit."""
    started = time.monotonic()
    # The reference's first sign-in sets the password; dshub's needs the initial one.
    if initial is None:
        person, told_to_wait = sign_in_patiently(url, name, PASSWORD)
    else:
        person, told_to_wait = sign_in_patiently(url, name, initial, new_password=PASSWORD)
    resp = person.api("POST", f"/users/{name}/server")
    assert resp.status_code in (201, 202), resp.text
    wait_for_spawn(person, name)
    lab = person.http.get(f"{url}/user/{name}/lab", timeout=60)
    assert lab.status_code == 200 and f"/user/{name}/lab" in lab.url, (lab.status_code, lab.url)
    return time.monotonic() - started, told_to_wait


def storm(system: str, url: str, names: list[str], initial: dict[str, str] | None) -> list[Person]:
    def one(name: str) -> Person:
        try:
            return Person(system, name, *time_to_lab(url, name, initial[name] if initial else None))
        except (AssertionError, requests.RequestException) as e:
            return Person(system, name, None, error=f"{type(e).__name__}: {e}"[:200])

    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(one, names))


ENGINE = "dockerd and containerd"


def project_cpu(project: str) -> dict[str, float]:
    """CPU seconds so far of each running container of the system, and of the engine."""
    ids = docker("ps", "-q", "--no-trunc", "--filter", f"label=dshub.project={project}").stdout.split()
    return {ENGINE: engine_cpu_seconds()} | {i: container_cpu_seconds(i) for i in ids}


def cpu_since(before: dict[str, float], project: str) -> float:
    """CPU seconds the system used since `before`: a container started meanwhile counts whole, one
    removed meanwhile (a server stopped before) no more; subtracting its whole reading would take
    its earlier work off this interval."""
    after = project_cpu(project)
    return sum(value - before.get(key, 0.0) for key, value in after.items())


def upkeep(project: str) -> float:
    """CPU seconds per second the system uses while nobody does anything."""
    # The engine's work of the system's start is no part of its upkeep.
    time.sleep(SETTLE)
    before, started = project_cpu(project), time.monotonic()
    time.sleep(IDLE)
    return cpu_since(before, project) / (time.monotonic() - started)


def work_cpu(project: str, idle_rate: float, work: Callable[[], T]) -> tuple[T, float]:
    """What work() returned, and the CPU seconds the system used meanwhile less its upkeep."""
    before, started = project_cpu(project), time.monotonic()
    done = work()
    return done, cpu_since(before, project) - idle_rate * (time.monotonic() - started)


def quiet_start_cpu(
    url: str, project: str, admin: HubSession, initial: dict[str, str], idle_rate: float
) -> float:
    """CPU seconds of one person's flow alone (median of WARMUP), their server stopped after."""
    cpu = []
    for name, password in initial.items():
        # The engine's work of the last server's removal is no part of a start.
        time.sleep(SETTLE)
        cpu.append(work_cpu(project, idle_rate, partial(time_to_lab, url, name, password))[1])
        stop_server(admin, name)
    return p50(cpu)


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
    idle_rate = upkeep(project)
    hub_before = container_cpu_seconds(hub_id)
    names = [f"storm{i}" for i in range(users)]
    busy_before, bench_before = machine_times(), bench_cpu_seconds()
    people, total = work_cpu(project, idle_rate, lambda: storm(system, url, names, initial))
    busy, all_time = (after - before for after, before in zip(machine_times(), busy_before, strict=True))
    return Run(
        people,
        hub_cpu=container_cpu_seconds(hub_id) - hub_before,
        total_cpu=total,
        upkeep=idle_rate,
        machine_busy=busy / all_time,
        bench_cpu=bench_cpu_seconds() - bench_before,
        start_cpu=start_cpu,
    )


def machine_times() -> tuple[int, int]:
    """All cores' busy and total time so far (jiffies, /proc/stat); idle and iowait are not busy."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def bench_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Limits:
    """dshub's limits on a start, which the reference gets too."""

    start_timeout: int  # JupyterHub's, around Spawner.start: dshub's wait in line plus a server's start
    http_timeout: int
    concurrency: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """As the hub's configuration makes them of these settings (auto: on this machine's cores)."""
        config = Config()
        profiles = ProfilesFile(Path("/nonexistent/profiles.yaml"), Defaults.from_settings(settings))
        hubconfig.user_servers(config, settings, profiles)
        spawner = DataPoolSpawner(config=config)
        return cls(spawner.start_timeout, spawner.http_timeout, spawner.start_concurrency)


def run_dshub(users: int, line: str) -> tuple[Run, Limits]:
    with stack({"DSHUB_USER_IMAGE": user_image("lab"), "DSHUB_START_CONCURRENCY": line}) as s:
        admin = admin_session(s)
        hub_id = container_id(s.containers("hub")[0])
        warm = [f"warm{i}" for i in range(WARMUP)]
        people = [f"storm{i}" for i in range(users)]
        make_users(admin, warm + people)
        limits = Limits.of(s.settings)
        cpu = quiet_start_cpu(s.url, s.project, admin, s.initial_passwords(warm), upkeep(s.project))
        initial = s.initial_passwords(people)
        run = measured_storm("dshub", s.url, s.project, hub_id, users, start_cpu=cpu, initial=initial)
        return run, limits


def run_reference(users: int, limits: Limits) -> Run:
    reference = Reference(
        user_image=user_image("lab"), start_timeout=limits.start_timeout, http_timeout=limits.http_timeout
    )
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


def line_of(limits: Limits) -> str:
    return "no start line" if not limits.concurrency else f"start line {limits.concurrency}"


def report(runs: list[tuple[str, Run]], users: int, limits: Limits) -> str:
    """The default dshub run first (the verdicts are its), the reference last."""
    (_, dshub), (_, ref) = runs[0], runs[-1]
    floor = users * dshub.start_cpu / CORES
    lines = [
        TITLE,
        "",
        f"{users} people sign in and start at once: on dshub with its default settings (start",
        f"line: {limits.concurrency} at a time on {CORES} cores), on dshub with other start lines",
        "(DSHUB_START_CONCURRENCY; 0: no line, as before it came in), then on the reference; all with",
        f"the lab image and the same limits (start_timeout {limits.start_timeout} s, http_timeout"
        f" {limits.http_timeout} s), one after the other.",
        "",
        "Time-to-lab: from opening the login page until the Lab page loaded through the edge (first",
        "sign-in, token, start, the spawn's progress stream until ready, Lab page). CPU from the",
        "engine's cgroups (hub: the hub container, CHP included for the reference; all: every",
        "container of the system plus dockerd/containerd). All people count; a failed start is never",
        "ready. Everyone comes from one address, as from behind a classroom's NAT: told to wait (the",
        "edge's sign-in rate limit, DSHUB_SIGNIN_RATE, answers 429; the hub's bcrypt queue says it is",
        "busy), a person tries again 1-2 s later; the waits count in their time. A quiet start: the",
        f"same flow, one person alone on the same stack just before its storm (median of {WARMUP}).",
        "*all CPU* and the quiet start are less the system's upkeep: its CPU with nobody doing anything",
        f"({IDLE:.0f} s measured before; healthchecks, the network policy's rounds), per second in *upkeep*.",
        "*machine busy*: the share of the cores' time not idle during the storm, whoever's work; the",
        "bench's people (its threads: sign-ins, progress streams, pages) run on the same cores, their",
        "CPU in *people CPU s*.",
        "",
    ]
    body = []
    for system, r in runs:
        quiet = f"{r.start_cpu:.2f}" if r.start_cpu else ""
        in_storm = f"{r.total_cpu / users / r.start_cpu:.2f}" if r.start_cpu else ""
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
                f"{r.upkeep:.2f}",
                f"{r.machine_busy:.0%}",
                f"{r.bench_cpu:.1f}",
                quiet,
                in_storm,
                f"{sum(p.told_to_wait for p in r.people)} ({sum(1 for p in r.people if p.told_to_wait)})",
            ]
        )
    header = ["system", "failures", "p50", "p95", "all ready", "hub CPU s", "all CPU s", "CPU s per start"]
    header += ["upkeep CPU s/s", "machine busy", "people CPU s", "quiet start CPU s", "per start / quiet"]
    header.append("told to wait (people)")
    lines += table(header, body)
    all_ready, mine, theirs = max(dshub.times), p95(dshub.times), p95(ref.times)
    per_start = dshub.total_cpu / users / dshub.start_cpu
    versus = "the reference never had everyone ready" if math.isinf(theirs) else f"{mine / theirs:.2f}x"
    lines += [
        "",
        f"CPU floor of the default run: {users} x {dshub.start_cpu:.2f} CPU-s (its quiet start) / {CORES}"
        f" cores = {floor:.1f} s. Verdicts, dshub with its default settings:",
        "",
        f"- failures: {dshub.failures} (target 0: {verdict(dshub.failures, 0)})",
        f"- all ready: {seconds(all_ready)} = {all_ready / floor:.2f}x the CPU floor "
        f"(target ≤ {TARGET_FLOOR}x: {verdict(all_ready / floor, TARGET_FLOOR)})",
        f"- CPU per start in the storm: {per_start:.2f}x a quiet start "
        f"(target ≤ {TARGET_QUIET}x: {verdict(per_start, TARGET_QUIET)})",
        f"- p95: {seconds(mine)} vs the reference's {seconds(theirs)}: {versus} "
        f"(target ≤ {TARGET_REFERENCE}x: {verdict(mine / theirs, TARGET_REFERENCE)})",
    ]
    errors = sorted({p.error for _, r in runs for p in r.people if p.error})
    if errors:
        shown = errors[:10]
        lines += ["", f"Errors ({len(errors)} different):", *(f"- {e}" for e in shown)]
        if len(errors) > len(shown):
            lines.append(f"- ... and {len(errors) - len(shown)} more (build/bench/storm.csv)")
    return "\n".join(lines) + "\n"


def run(users: int = USERS, lines: tuple[str, ...] = LINES) -> tuple[str, list[dict[str, object]]]:
    """The storm on dshub with each start line (the first sets the limits the reference gets), then
    on the reference."""
    runs: list[tuple[str, Run]] = []
    default_limits = None
    for line in lines:
        dshub, limits = run_dshub(users, line)
        default_limits = default_limits or limits
        runs.append((f"dshub, {line_of(limits)}" + (", default" if line == "auto" else ""), dshub))
    assert default_limits is not None, "no dshub run"
    runs.append(("reference", run_reference(users, default_limits)))
    rows: list[dict[str, object]] = []
    for system, r in runs:
        rows += [{**p.__dict__, "system": system} for p in r.people]
        cpu = {"hub_cpu": r.hub_cpu, "total_cpu": r.total_cpu, "upkeep": r.upkeep, "start_cpu": r.start_cpu}
        rows.append({"system": system, "machine_busy": r.machine_busy, "bench_cpu": r.bench_cpu, **cpu})
    return report(runs, users, default_limits), rows
