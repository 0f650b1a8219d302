"""Idle memory of a few users' containers of one image, and image sizes (for bench/density.py).

One stack and N users: each user's server is started through the hub and left
idle; then memory is read from the engine (docker stats: cgroup usage without
page cache). For the datascience image the measurement is repeated after VS Code
was started in every container (its page requested and a websocket opened
through the edge, as a browser does first), and, when the image has RStudio
Server, after RStudio was opened in Chromium until its console took input (what
starts its session). Without RStudio that row is not measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from playwright.sync_api import expect, sync_playwright

from bench.common import stack as bench_stack
from spawner.core.constants import VERSION
from spawner.hub.edge import PROXY_IMAGE
from tests.support import browser
from tests.support.hub import HubSession
from tests.support.stack import Stack, docker

SETTLE_SECONDS = 20


@dataclass
class Sample:
    image: str
    state: str
    user: str
    mib: float


def container_mib(container_id: str) -> float:
    usage = (
        docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container_id).stdout.split("/")[0].strip()
    )
    number = float(usage.rstrip("KMGiB"))
    unit = usage[len(usage.rstrip("KMGiB")) :]
    return number * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "B": 1 / 2**20}[unit]


def start_vscode(person: HubSession) -> None:
    assert person.http.get(f"{person.base_url}/user/{person.name}/vscode/", timeout=120).status_code == 200
    person.vscode_websocket().close()


def open_rstudio(stack: Stack, people: list[HubSession]) -> None:
    """Each person opens RStudio in Chromium until its console takes input."""
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright.chromium)
        try:
            for person in people:
                page = browser.sign_in(chromium, stack.url, person.name, password(person.name))
                page.wait_for_url(f"{stack.url}/user/{person.name}/**")
                browser.goto_after_network_change(page, f"{stack.url}/user/{person.name}/rstudio/")
                expect(page.locator("#rstudio_console_input")).to_be_visible(timeout=120_000)
                page.context.close()
        finally:
            chromium.close()


def password(name: str) -> str:
    return f"{name}-password"


def measure_image(image: str, users: int) -> tuple[list[Sample], str]:
    """The samples, and what the image's build recorded about RStudio ('installed: ...', 'absent: why')."""
    samples: list[Sample] = []
    with bench_stack({"DSHUB_USER_IMAGE": f"dshub/{image}:{VERSION}"}) as stack:
        people = []
        for i in range(users):
            name = f"bench{i}"
            person = stack.sign_up(name, password(name))
            person.start_server()
            # The browser's first visit, so the Lab's server side is fully loaded.
            person.http.get(f"{stack.url}/user/{name}/lab", timeout=60)
            people.append(person)
        time.sleep(SETTLE_SECONDS)
        for person in people:
            samples.append(
                Sample(image, "idle", person.name, container_mib(stack.user_container(person.name)))
            )
        if image == "datascience":
            for person in people:
                start_vscode(person)
            time.sleep(SETTLE_SECONDS)
            for person in people:
                mib = container_mib(stack.user_container(person.name))
                samples.append(Sample(image, "idle, VS Code started", person.name, mib))
        rstudio = stack.rstudio_build_record()
        if image == "datascience" and stack.has_rserver():
            open_rstudio(stack, people)
            time.sleep(SETTLE_SECONDS)
            for person in people:
                mib = container_mib(stack.user_container(person.name))
                samples.append(Sample(image, "idle, VS Code and RStudio started", person.name, mib))
    return samples, rstudio


def image_mib(image: str) -> float:
    ref = PROXY_IMAGE if image == "proxy" else f"dshub/{image}:{VERSION}"
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref).stdout) / 2**20
