"""Sign-in flood: 200 parallel failed sign-ins, and the hub's own API meanwhile.

The flood runs in a process of its own (50 threads, each a fresh browser session:
login page, then a wrong password for one existing user) so that the measuring
client is not queued behind it in one interpreter. Meanwhile one client asks the
hub's API for a user model, back to back, until the flood ends; the same client
against the same idle hub, just before, is the baseline. The reference deployment
(FirstUseAuthenticator, bcrypt on the hub's event loop) takes the same flood.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.common import admin_session, p50, p95, stack, user_image
from bench.reference import Reference
from tests.support.hub import HubSession, SignInRefused

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Sign-in flood"

ATTEMPTS = 200
PARALLEL = 50
IDLE_SAMPLES = 200
TARGET = 2.0  # flood p95 / idle p95


def flood(url: str, name: str) -> None:
    """ATTEMPTS wrong passwords for ``name``, PARALLEL at a time (run in its own process)."""

    def wrong(i: int) -> None:
        try:
            HubSession(url).sign_in(name, f"wrong guess {i}")
        except (SignInRefused, requests.RequestException):
            pass

    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(wrong, range(ATTEMPTS)))


def api_sample(admin: HubSession, name: str) -> float:
    started = time.perf_counter()
    resp = admin.api("GET", f"/users/{name}")
    resp.raise_for_status()
    return time.perf_counter() - started


def measure(url: str, admin: HubSession, victim: str) -> dict[str, object]:
    idle = [api_sample(admin, victim) for _ in range(IDLE_SAMPLES)]
    started = time.monotonic()
    attackers = subprocess.Popen([sys.executable, "-m", "bench.signin", "flood", url, victim])
    during = []
    while attackers.poll() is None:
        during.append(api_sample(admin, victim))
    flood_seconds = time.monotonic() - started
    if attackers.returncode:
        raise RuntimeError(f"the flood process failed ({attackers.returncode})")
    return {"idle": idle, "during": during, "flood_seconds": flood_seconds}


def run_dshub() -> dict[str, object]:
    with stack({"DSHUB_USER_IMAGE": user_image("lab")}) as s:
        admin = admin_session(s)
        s.sign_up("victim", "victim-password")
        return measure(s.url, admin, "victim")


def run_reference() -> dict[str, object]:
    reference = Reference(user_image=user_image("lab"))
    try:
        reference.up()
        admin = reference.admin()
        assert admin.api("POST", "/users/victim").status_code == 201
        HubSession(reference.url).sign_in("victim", "victim-password")  # its first sign-in sets it
        return measure(reference.url, admin, "victim")
    finally:
        reference.destroy()


def run() -> tuple[str, list[dict[str, object]]]:
    results = {"dshub": run_dshub(), "reference": run_reference()}
    rows = [
        {"system": system, "phase": phase, "seconds": value}
        for system, r in results.items()
        for phase in ("idle", "during")
        for value in r[phase]  # type: ignore[union-attr]
    ]
    lines = [
        TITLE,
        "",
        f"{ATTEMPTS} failed sign-ins for one existing user, {PARALLEL} at a time from one address",
        "(its own process), while one client reads a user model from the hub's API back to back;",
        "idle: the same client just before. All samples.",
        "",
        "| system | API p50 idle | API p95 idle | API p50 flood | API p95 flood | p95 flood / idle "
        "| flood took |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for system, r in results.items():
        idle, during = r["idle"], r["during"]
        ratio = p95(during) / p95(idle)  # type: ignore[arg-type]
        lines.append(
            f"| {system} | {p50(idle) * 1000:.1f} ms | {p95(idle) * 1000:.1f} ms | "  # type: ignore[arg-type]
            f"{p50(during) * 1000:.1f} ms | {p95(during) * 1000:.1f} ms | {ratio:.1f}x | "  # type: ignore[arg-type]
            f"{r['flood_seconds']:.1f} s |"
        )
    mine = p95(results["dshub"]["during"]) / p95(results["dshub"]["idle"])  # type: ignore[arg-type]
    verdict = "met" if mine <= TARGET else "missed"
    target = f"dshub's API p95 during the flood ≤ {TARGET:.0f}x its idle p95"
    lines += ["", f"Target: {target}: **{verdict}** ({mine:.1f}x)."]
    return "\n".join(lines) + "\n", rows


if __name__ == "__main__" and sys.argv[1:2] == ["flood"]:
    flood(sys.argv[2], sys.argv[3])
