"""Helpers shared by the benchmarks: labelled stacks, percentiles, tables."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from spawner.core.constants import VERSION
from tests.support.hub import HubSession
from tests.support.stack import Stack, docker

# Everything a bench run makes carries dshub.project=<BENCH_PREFIX...>; the test
# suite's sweep (dshubt-) never touches it and the bench removes it itself.
BENCH_PREFIX = "dshubb-"
CORES = os.cpu_count() or 1


class PartlyMeasured(Exception):
    """A section measured in part: its text is written, with what is missing said in it, and
    `make bench` exits non-zero."""

    def __init__(self, text: str, rows: list[dict[str, object]], missing: str) -> None:
        super().__init__(missing)
        self.text, self.rows = text, rows


def project_name(tag: str = "") -> str:
    return f"{BENCH_PREFIX}{os.getpid()}-{tag}{uuid.uuid4().hex[:6]}"


def user_image(name: str) -> str:
    return f"dshub/{name}:{VERSION}"


@contextmanager
def stack(overrides: dict[str, str] | None = None) -> Iterator[Stack]:
    """A dshub stack of its own (compose project, port, pool), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="dshub-bench-") as workdir:
        with Stack(Path(workdir), overrides=overrides or {}, project=project_name()).running() as s:
            yield s


def exec_in(container: str, *cmd: str, stdin: str | None = None, timeout: float = 1800) -> str:
    """A command in a container (docker exec passes the exit code on; compose exec does not here)."""
    result = subprocess.run(
        ["docker", "exec", "-i", container, *cmd],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd)} in {container} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def remove_labelled(project: str) -> None:
    """Containers, networks and volumes labelled with this bench project."""
    label = f"label=dshub.project={project}"
    ids = docker("ps", "-aq", "--filter", label).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    for kind in ("network", "volume"):
        names = docker(kind, "ls", "-q", "--filter", label).stdout.split()
        if names:
            docker(kind, "rm", *names, check=False)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank): p95 of 20 samples is the 19th smallest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    return pct(values, 95)


def verdict(value: float, limit: float, lower_is_better: bool = True) -> str:
    met = value <= limit if lower_is_better else value >= limit
    return "met" if met else "**missed**"


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    align = ["---" if i == 0 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def container_id(name_or_id: str) -> str:
    return docker("inspect", "--format", "{{.Id}}", name_or_id).stdout.strip()


def container_cpu_seconds(full_id: str) -> float:
    """CPU time a running container has used so far (cgroup v1 cpuacct, as on the engine here).

    No reading (another cgroup layout, a container not running) raises: a CPU figure is never
    made of a zero that was not measured.
    """
    path = Path("/sys/fs/cgroup/cpuacct/docker") / full_id / "cpuacct.usage"
    try:
        return int(path.read_text()) / 1e9
    except FileNotFoundError:
        raise RuntimeError(f"no CPU reading for container {full_id[:12]}: {path} is missing") from None


def engine_cpu_seconds() -> float:
    """CPU time of dockerd and containerd so far (the engine's share of a start)."""
    total = 0
    for name in ("dockerd", "containerd"):
        pids = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False).stdout
        for pid in pids.split():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def wait_until(check: Callable[[], bool], timeout: float, interval: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout}s")


def status_answers(session: HubSession, name: str) -> bool:
    """Whether the user's server answers /api/status (with JSON) through the edge."""
    try:
        # The session's own edge client: it checks an https edge's certificate as a browser would.
        resp = session.bare.get(
            f"{session.base_url}/user/{name}/api/status",
            headers={"Authorization": f"token {session.token}"},
            timeout=10,
            allow_redirects=False,
        )
    except requests.RequestException:
        return False
    return resp.status_code == 200 and resp.headers.get("Content-Type", "").startswith("application/json")


def make_users(admin: HubSession, names: list[str]) -> None:
    resp = admin.api("POST", "/users", json={"usernames": names})
    assert resp.status_code == 201, resp.text


def stop_server(admin: HubSession, name: str) -> None:
    resp = admin.api("DELETE", f"/users/{name}/server")
    assert resp.status_code in (202, 204), resp.text
    wait_until(
        lambda: not admin.api("GET", f"/users/{name}").json()["servers"],
        timeout=120,
        interval=0.2,
        what=f"server of {name} stopped",
    )


def admin_session(s: Stack) -> HubSession:
    admin = HubSession(s.url)
    admin.sign_in(s.settings.admin_users[0], s.admin_password())
    return admin


def labelled(project: str, role: str) -> str:
    """The one running container of a project's role."""
    selectors = ("--filter", f"label=dshub.project={project}", "--filter", f"label=dshub.role={role}")
    (cid,) = docker("ps", "-q", *selectors).stdout.split()
    return cid


def name_of(cid: str) -> str:
    return docker("inspect", "--format", "{{.Name}}", cid).stdout.strip().lstrip("/")


def start_server(session: HubSession, project: str, name: str) -> str:
    """Start name's server (the only one of the project); its container's id."""
    resp = session.api("POST", f"/users/{name}", json={})
    assert resp.status_code in (201, 409), resp.text
    assert session.api("POST", f"/users/{name}/server").status_code in (201, 202)
    wait_until(lambda: status_answers(session, name), 300, 0.2, f"server of {name}")
    return labelled(project, "user-server")
