"""`make upgrade` on a running stack, from one image tag to the next, with a user connected.

The next version is the images of this one under a new tag (what `make build`
of a new checkout gives them), so everything but the proxy is replaced, as in a
real upgrade that keeps Traefik's version. While the upgrade runs, the user's
open kernel keeps executing code over its websocket and the hub's downtime is
measured; afterwards the same kernel, the same VS Code connection and the same
sign-in go on, and the user's next start takes the new image. A database one
schema revision behind (JupyterHub's own downgrade) is migrated by the upgrade.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spawner.core.constants import VERSION
from tests.support.stack import REPO, Stack, docker

NEXT = f"{VERSION}-next"
# JupyterHub's own migration one step back, as the previous JupyterHub's schema.
DOWNGRADE = """
import subprocess
from jupyterhub import dbutil
with dbutil._temp_alembic_ini("sqlite:////srv/dshub/data/jupyterhub.sqlite") as ini:
    subprocess.run(["alembic", "-c", ini, "downgrade", "-1"], check=True, capture_output=True)
    current = subprocess.run(["alembic", "-c", ini, "current"], check=True, capture_output=True, text=True)
print(current.stdout.split()[0])
"""
REPLACED = ("hub", "netpolicy", "datascience")


@pytest.fixture
def next_version() -> Iterator[str]:
    for name in REPLACED:
        docker("tag", f"dshub/{name}:{VERSION}", f"dshub/{name}:{NEXT}")
    try:
        yield NEXT
    finally:
        docker("rmi", *(f"dshub/{name}:{NEXT}" for name in REPLACED), check=False)


def run_upgrade(stack: Stack, backups: Path) -> subprocess.CompletedProcess[str]:
    """spawner.cli.upgrade on the stack, as `make upgrade-stack` runs it."""
    compose, env = stack.compose_invocation()
    return subprocess.run(
        [sys.executable, "-m", "spawner.cli.upgrade", "--backups", str(backups), "--project", stack.project,
         "--", *compose],
        env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip


def image_of(container: str) -> str:
    return docker("inspect", "--format", "{{.Config.Image}}", container).stdout.strip()


class Probe(threading.Thread):
    """Runs code in the open kernel and asks the hub for its health, every 0.25 s."""

    def __init__(self, stack: Stack, kernel) -> None:
        super().__init__(daemon=True)
        self.stack, self.kernel = stack, kernel
        self.stop = threading.Event()
        self.kernel_errors: list[str] = []
        self.executed = 0
        self.hub_down: list[float] = []

    def run(self) -> None:
        edge = self.stack.edge_http()
        while not self.stop.is_set():
            try:
                self.kernel.execute("n += 1", timeout=30)
                self.executed += 1
            except Exception as e:  # any failure of the open session counts as dropped
                self.kernel_errors.append(repr(e))
            try:
                up = edge.get(f"{self.stack.url}/hub/health", timeout=2).status_code == 200
            except OSError:
                up = False
            if not up:
                self.hub_down.append(time.monotonic())
            time.sleep(0.25)


def test_upgrade_replaces_the_hub_while_a_user_keeps_working(tmp_path, next_version):
    (tmp_path / "stack").mkdir()
    stack = Stack(tmp_path / "stack")
    with stack.running():
        ada = stack.sign_up("ada", "ada-upgrades-1")
        ada.start_server()
        (user_container,) = stack.user_containers("ada")
        (proxy,) = stack.containers("proxy")
        kernel = ada.kernel(ada.new_kernel())
        assert kernel.execute("n = 0; print(n)").strip() == "0"
        # VS Code as the browser opens it: its page (through the server's sign-in), then its websocket.
        assert ada.http.get(f"{ada.base_url}/user/ada/vscode/", timeout=120).status_code == 200
        vscode = ada.vscode_websocket()

        # The new version: its images and its settings (its default user image).
        stack.extra_env["dshub_tag"] = next_version
        stack.render(DSHUB_USER_IMAGE=f"dshub/datascience:{next_version}")
        probe = Probe(stack, kernel)
        probe.start()
        backups = tmp_path / "backups"
        upgraded = run_upgrade(stack, backups)
        stack.wait_healthy()
        probe.stop.set()
        probe.join(timeout=60)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        print(upgraded.stdout)
        down = (probe.hub_down[-1] - probe.hub_down[0] + 0.25) if probe.hub_down else 0.0
        print(f"hub unhealthy for {down:.1f} s; kernel ran {probe.executed} times during the upgrade")

        # The hub is the new version; the proxy and the user's server are the same containers.
        (hub,) = stack.containers("hub")
        assert image_of(hub) == f"dshub/hub:{next_version}"
        assert stack.containers("proxy") == [proxy]
        assert stack.user_containers("ada") == [user_container]
        # Nothing dropped: the kernel answered every time, its state is there, VS Code's connection is open.
        assert probe.kernel_errors == []
        assert probe.executed > 0
        assert int(kernel.execute("print(n)").strip()) == probe.executed
        assert vscode.connected
        vscode.ping()
        # The same sign-in and token go on.
        assert ada.api("GET", "/user").json()["name"] == "ada"

        # The backup taken before the migration: the hub's state, private.
        (archive,) = backups.glob(f"{stack.project}-pre-upgrade-*.tar.gz")
        assert oct(archive.stat().st_mode & 0o777) == "0o600"
        assert os.path.getsize(archive) > 0

        # The next start takes the new image.
        kernel.close()
        vscode.close()
        ada.stop_server()
        ada.start_server()
        assert image_of(stack.user_container("ada")) == f"dshub/datascience:{next_version}"


def test_upgrade_migrates_an_older_database(tmp_path):
    """The hub's database one schema revision behind (as a previous JupyterHub left it) is migrated."""
    (tmp_path / "stack").mkdir()
    stack = Stack(tmp_path / "stack")
    with stack.running():
        ada = stack.sign_up("ada", "ada-upgrades-2")
        # A hub of the previous version, stopped with its older schema (JupyterHub's own downgrade).
        stack.compose("stop", "hub")
        older = stack.compose("run", "--rm", "--no-deps", "-T", "hub", "python3", "-c", DOWNGRADE)
        revision = older.stdout.strip().splitlines()[-1]

        upgraded = run_upgrade(stack, tmp_path / "backups")
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert f"Running upgrade {revision} ->" in upgraded.stdout + upgraded.stderr
        stack.wait_healthy()
        # Same users, same sign-in.
        assert ada.api("GET", "/user").json()["name"] == "ada"
        assert len(list((tmp_path / "backups").glob("*-pre-upgrade-*.tar.gz"))) == 1
