"""The tools on the hub's home page: JupyterLab, VS Code and RStudio, for each server.

Pressing one goes to the hub's spawn page for that server with ``next`` set to the
tool, so JupyterHub starts the server if it is not running (with the spawn form
when there is a choice, the last choice checked) and lands in the tool; a running
server goes there at once.

Which tools a server offers depends on its image: VS Code where code-server is
installed, RStudio where RStudio Server is (its vendor's download can be missing,
images/datascience/README.md). The hub looks once per image (by its id) in a
throwaway container of it, unprivileged and without network, and only offers what
it found; until it has looked, JupyterLab alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import docker
from jupyterhub.user import User

from spawner.core.constants import PROJECT_LABEL, ROLE_LABEL

log = logging.getLogger("dshub.tools")

# How often the profiles' images are looked at again (a rebuilt image has a new id).
REFRESH_SECONDS = 60.0
# Longest a look inside an image may take; a `test -x` or three take milliseconds.
PROBE_SECONDS = 30
# An image that could not be looked at is tried again after this long, not every round.
RETRY_FAILED_SECONDS = 600.0


@dataclass(frozen=True)
class Tool:
    key: str
    title: str
    # Below the server's URL.
    path: str
    # Present when this file is executable in the image; None: every user image has it.
    executable: str | None


TOOLS = (
    Tool("lab", "JupyterLab", "lab", None),
    Tool("vscode", "VS Code", "vscode/", "/opt/code-server/bin/code-server"),
    Tool("rstudio", "RStudio", "rstudio/", "/usr/lib/rstudio-server/bin/rserver"),
)


class ImageTools:
    """The tools each image has, looked up in the background; read without waiting."""

    def __init__(self, project: str = "") -> None:
        # Labels the throwaway containers, so the tests and an operator can tell them apart.
        self.labels = {ROLE_LABEL: "tools-probe", **({PROJECT_LABEL: project} if project else {})}
        self._lock = threading.Lock()
        # image reference -> (image id, its tools)
        self._known: dict[str, tuple[str, tuple[Tool, ...]]] = {}
        # image id -> when a look inside it failed
        self._failed: dict[str, float] = {}

    def of(self, image: str) -> tuple[Tool, ...]:
        with self._lock:
            known = self._known.get(image)
        return known[1] if known else TOOLS[:1]

    def refresh(self, client: docker.DockerClient, images: Iterable[str]) -> None:
        for image in sorted(set(images)):
            try:
                image_id = client.images.get(image).id
            except docker.errors.ImageNotFound:
                continue
            with self._lock:
                if self._known.get(image, ("",))[0] == image_id:
                    continue
            if time.monotonic() - self._failed.get(image_id, -RETRY_FAILED_SECONDS) < RETRY_FAILED_SECONDS:
                continue
            try:
                tools = look_inside(client, image_id, self.labels)
            except Exception as error:  # any image, any engine: the others still get their look
                self._failed[image_id] = time.monotonic()
                log.warning(
                    "Could not look inside %s (again in %.0f s): %s", image, RETRY_FAILED_SECONDS, error
                )
                continue
            with self._lock:
                self._known[image] = (image_id, tools)
            log.info("Tools of %s: %s", image, ", ".join(t.title for t in tools))

    def keep_fresh(self, images: Callable[[], Iterable[str]]) -> None:
        """Look at the images ``images()`` names now and every REFRESH_SECONDS, in a thread."""

        def loop() -> None:
            while True:
                try:
                    self.refresh(docker.from_env(), images())
                except Exception:  # the next round tries again; the page shows what is known
                    log.exception("Could not look at the user images' tools")
                time.sleep(REFRESH_SECONDS)

        threading.Thread(target=loop, daemon=True, name="dshub-image-tools").start()


def look_inside(client: docker.DockerClient, image_id: str, labels: dict[str, str]) -> tuple[Tool, ...]:
    """The tools whose executable is in the image, from a container that runs `test -x` only."""
    checks = [t.executable for t in TOOLS if t.executable]
    script = " ".join(f"[ -x {path} ] && echo {path};" for path in checks) + " true"
    probe = client.containers.create(
        image_id,
        ["-c", script],
        entrypoint=["/bin/sh"],
        network_disabled=True,
        user="65534:65534",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        read_only=True,
        mem_limit="64m",
        nano_cpus=250_000_000,
        pids_limit=16,
        labels=labels,
    )
    try:
        probe.start()
        # An image whose shell hangs offers JupyterLab only until it is tried again.
        probe.wait(timeout=PROBE_SECONDS)
        found = probe.logs(stdout=True, stderr=False, tail=len(checks)).decode(errors="replace")
    finally:
        probe.remove(force=True, v=True)
    present = set(found.split())
    return tuple(t for t in TOOLS if t.executable is None or t.executable in present)


def launchers(user: Any, server_tools: Callable[[Any], tuple[Tool, ...]]) -> list[dict[str, Any]]:
    """For the home page: each of the user's servers (the default first) and its tools' links.

    A link is relative to the hub's base URL: the spawn page of that server, then the tool.
    """
    if not isinstance(user, User):  # signed out, or a service's token
        return []
    names = ["", *sorted(name for name in user.orm_spawners if name)]
    servers = []
    for name in names:
        spawner = user.spawners[name]
        tools = []
        for tool in server_tools(spawner):
            query = urlencode({"next": user.server_url(name) + tool.path})
            # The default server's spawn page has no trailing slash (with one: 404).
            server = f"/{quote(name, safe='')}" if name else ""
            href = f"spawn/{user.escaped_name}{server}?{query}"
            tools.append({"key": tool.key, "title": tool.title, "href": href})
        servers.append({"name": name, "title": name or "My Server", "tools": tools})
    return servers
