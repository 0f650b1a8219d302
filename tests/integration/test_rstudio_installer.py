"""install-rstudio's outcomes, for real: the checkout's script runs in the user image
against a package and a download server of the test's own.

The package is a tiny rstudio-server .deb built with dpkg-deb; the server is
`python3 -m http.server` in a container. Both sit on an internal network the test
creates, addressed by IP (no DNS), and the installer's container has no apt sources,
so nothing outside what the test made is ever reached.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spawner.core.constants import VERSION
from tests.support.stack import REPO, TEST_PREFIX, docker

INSTALLER = REPO / "images" / "datascience" / "install-rstudio"
# Where the installer runs in the build: curl, dpkg and apt as there.
USER_IMAGE = f"dshub/datascience:{VERSION}"
SERVER_IMAGE = f"dshub/lab:{VERSION}"
RELEASE = "2099.01.0-1"
PORT = 8000


@dataclass
class World:
    project: str
    network: str
    server: str
    server_ip: str
    workdir: Path
    name: str  # the release's file name on this machine's architecture
    good_deb: Path  # served as <site>/<arch>/<name>
    tampered_deb: Path  # the same name with other bytes, at <site>/tampered/<arch>/<name>

    @property
    def good(self) -> str:
        return hashlib.sha256(self.good_deb.read_bytes()).hexdigest()

    @property
    def tampered(self) -> str:
        return hashlib.sha256(self.tampered_deb.read_bytes()).hexdigest()

    def run_installer(
        self, url_base: str, sums: str, provided: bytes | None = None
    ) -> tuple[int, str, str | None]:
        """Exit code, output and the rstudio-server version installed afterwards (None: none)."""
        case = self.workdir / f"case-{uuid.uuid4().hex[:6]}"
        (case / "debs").mkdir(parents=True)
        (case / "sums").write_text("# recorded digests\n" + sums)
        if provided is not None:
            (case / "debs" / self.name).write_bytes(provided)
        # No apt sources: `apt-get update` reaches nothing (the test package needs nothing).
        script = (
            "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*\n"
            "tmp=$(ls -A /tmp)\n"
            'install-rstudio "$@"\n'
            "rc=$?\n"
            '[ "$(ls -A /tmp)" = "$tmp" ] && echo "/tmp as before"\n'
            'echo "record: $(cat /usr/local/share/dshub/rstudio-server.txt 2>/dev/null)"\n'
            "echo \"result: $rc $(dpkg-query -W -f='${Version}' rstudio-server 2>/dev/null)\"\n"
        )
        run = docker(
            "run", "--rm", "--network", self.network, "--label", f"dshub.project={self.project}",
            # A proxy the engine's client configuration may inject would be an address of its own.
            "--env", "no_proxy=*", "--env", "NO_PROXY=*",
            "--user", "0", "--entrypoint", "bash",
            "-v", f"{INSTALLER}:/usr/local/sbin/install-rstudio:ro",
            "-v", f"{case}:/case:ro",
            USER_IMAGE, "-c", script, "install-rstudio",
            RELEASE, url_base, "/case/sums", "/case/debs",
            check=False,
        )  # fmt: skip
        output = run.stdout + run.stderr
        rc, _, version = run.stdout.strip().splitlines()[-1].removeprefix("result: ").partition(" ")
        return int(rc), output, version or None

    def requests_seen(self) -> str:
        return docker("logs", self.server).stderr


def build_deb(world_dir: Path, out: Path, arch: str, rserver: str, label: list[str]) -> Path:
    """A minimal rstudio-server package, written to ``out``."""
    pkg = world_dir / f"pkg-{uuid.uuid4().hex[:6]}"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: rstudio-server\n"
        f"Version: {RELEASE}\n"
        f"Architecture: {arch}\n"
        "Maintainer: dshub tests <tests@dshub.invalid>\n"
        "Description: stand-in for RStudio Server in dshub's installer tests\n"
    )
    binary = pkg / "usr" / "lib" / "rstudio-server" / "bin" / "rserver"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\necho {rserver}\n")
    binary.chmod(0o755)
    out.parent.mkdir(parents=True, exist_ok=True)
    docker(
        "run", "--rm", *label, "--network", "none", "--user", f"{os.getuid()}:{os.getgid()}",
        "-v", f"{world_dir}:/work", "--entrypoint", "dpkg-deb", USER_IMAGE,
        "--root-owner-group", "--build", f"/work/{pkg.relative_to(world_dir)}",
        f"/work/{out.relative_to(world_dir)}",
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    project = f"{TEST_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
    label = ["--label", f"dshub.project={project}"]
    workdir = tmp_path_factory.mktemp("rstudio-installer")
    arch = docker("run", "--rm", *label, "--network", "none", "--entrypoint", "dpkg", USER_IMAGE,
                  "--print-architecture").stdout.strip()  # fmt: skip
    name = f"rstudio-server-{RELEASE}-{arch}.deb"
    www = workdir / "www"
    good_deb = build_deb(workdir, www / arch / name, arch, "the real one", label)
    tampered_deb = build_deb(workdir, www / "tampered" / arch / name, arch, "a changed one", label)
    network = f"{project}-rstudio"
    server = f"{project}-debs"
    docker("network", "create", "--internal", *label, network)
    try:
        docker(
            "run", "-d", "--name", server, "--network", network, *label, "--user", "65534",
            "-v", f"{www}:/srv:ro", "--entrypoint", "python3", SERVER_IMAGE,
            "-m", "http.server", str(PORT), "--directory", "/srv",
        )  # fmt: skip
        probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/', timeout=2)"
        for _ in range(40):
            if docker("exec", server, "python3", "-c", probe, check=False).returncode == 0:
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"the test's download server did not start:\n{docker('logs', server).stderr}")
        inspect = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        server_ip = docker("inspect", "-f", inspect, server).stdout.strip()
        yield World(project, network, server, server_ip, workdir, name, good_deb, tampered_deb)
    finally:
        docker("rm", "-f", server, check=False)
        docker("network", "rm", network, check=False)


def site(world: World, path: str = "") -> str:
    return f"http://{world.server_ip}:{PORT}{path}"


def test_a_download_matching_its_recorded_digest_is_installed(world):
    rc, output, installed = world.run_installer(site(world), f"{world.good}  {world.name}\n")
    assert rc == 0, output
    assert installed == RELEASE
    assert f"sha256 {world.good} matches the recorded one" in output
    assert f"RStudio Server installed from {world.name}" in output
    assert f"record: installed: {world.name}" in output
    assert "/tmp as before" in output


def test_a_tampered_download_stops_the_build_and_installs_nothing(world):
    rc, output, installed = world.run_installer(site(world, "/tampered"), f"{world.good}  {world.name}\n")
    assert rc != 0
    assert installed is None
    assert "does NOT match the sha256 recorded" in output
    assert f"expected {world.good}" in output
    assert f"actual   {world.tampered}" in output


@pytest.mark.parametrize(
    "url_base",
    [
        pytest.param(lambda w: f"http://{w.server_ip}:9", id="nobody-listens"),
        pytest.param(lambda w: site(w, "/gone"), id="not-found"),
    ],
)
def test_an_unreachable_download_builds_without_rstudio(world, url_base):
    rc, output, installed = world.run_installer(url_base(world), f"{world.good}  {world.name}\n")
    assert rc == 0, output
    assert installed is None
    assert "dshub: building WITHOUT RStudio Server:" in output
    assert "could not be downloaded (unreachable, not found or too slow)" in output
    assert "record: absent: " in output and "could not be downloaded" in output.split("record: ")[1]
    assert "/tmp as before" in output


def test_without_a_recorded_digest_nothing_is_downloaded_or_installed(world):
    before = world.requests_seen().count(world.name)
    rc, output, installed = world.run_installer(site(world), "")
    assert rc == 0, output
    assert installed is None
    assert f"no sha256 is recorded for {world.name}" in output
    assert "building WITHOUT RStudio Server" in output
    assert world.requests_seen().count(world.name) == before


def test_an_operator_provided_deb_is_installed_as_the_operators(world):
    provided = world.tampered_deb.read_bytes()  # any bytes: nothing is recorded for them
    rc, output, installed = world.run_installer(site(world, "/gone"), "", provided=provided)
    assert rc == 0, output
    assert installed == RELEASE
    assert f"installing the operator-provided {world.name} as it is" in output
    assert world.tampered in output  # its sha256, for the operator's records


def test_an_operator_provided_deb_with_a_recorded_name_is_verified(world):
    rc, output, installed = world.run_installer(
        site(world, "/gone"), f"{world.good}  {world.name}\n", provided=world.tampered_deb.read_bytes()
    )
    assert rc != 0
    assert installed is None
    assert f"expected {world.good}" in output and f"actual   {world.tampered}" in output
