"""A real dshub stack for tests: its own compose project, port, pool and network.

Everything it creates carries the label dshub.project=<project> with a project
name TEST_PREFIX<pid>-<random>, so teardown (and the sweep of leftovers from an
interrupted run) removes exactly what tests made, never anything else, and never
the stacks of another test run that is still going (its pid is alive).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from spawner.cli import settings as settings_cli
from spawner.config import settings as dshub_settings
from spawner.core.constants import VERSION
from spawner.hub.edge import PROXY_IMAGE
from tests.support.hub import HubSession, edge_session

REPO = Path(__file__).resolve().parents[2]
TEST_PREFIX = "dshubt-"
# The lean user image: for tests about the hub, not about the IDEs.
LAB_IMAGE = f"dshub/lab:{VERSION}"
# Written by images/datascience/install-rstudio.
RSTUDIO_RECORD = "/usr/local/share/dshub/rstudio-server.txt"
COMPOSE_BIN = REPO / ".venv" / "bin" / "docker-compose"


def docker(
    *args: str, check: bool = True, stdin: str | None = None, host: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The docker CLI on this machine's engine, or on ``host`` (a test node's, e.g. unix:///...sock)."""
    command = ["docker", *(["-H", host] if host else []), *args]
    return subprocess.run(command, check=check, capture_output=True, text=True, input=stdin)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_invocation(
    settings_file: Path,
    *args: str,
    extra_files: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `docker compose` on the project's files, as make runs it."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DSHUB_")},
        "dshub_tag": VERSION,
        "dshub_settings_file": str(settings_file),
        **(extra_env or {}),
    }
    files = ("compose.yaml", *extra_files)
    cmd = [
        str(COMPOSE_BIN),
        "--project-directory",
        str(REPO / "compose"),
        *(arg for name in files for arg in ("-f", str(REPO / "compose" / name))),
        "--env-file",
        str(settings_file),
        *args,
    ]
    return cmd, env


def compose(
    settings_file: Path,
    *args: str,
    extra_files: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
    check: bool = True,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`docker compose` on the project's compose files with a rendered settings file, as make runs it."""
    cmd, env = compose_invocation(settings_file, *args, extra_files=extra_files, extra_env=extra_env)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, input=stdin)
    if check and result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def require_images(*names: str) -> None:
    refs = {n: PROXY_IMAGE if n == "proxy" else f"dshub/{n}:{VERSION}" for n in names}
    missing = [n for n, ref in refs.items() if docker("image", "inspect", ref, check=False).returncode]
    if missing:
        raise RuntimeError(
            f"image(s) {', '.join(missing)} missing: run `make build build-dev` (make test does)"
        )


def _owner_is_gone(project: str) -> bool:
    """Whether the test run that made this project has ended (its pid is in the name)."""
    owner = project.removeprefix(TEST_PREFIX).split("-", 1)[0]
    if not owner.isdigit():
        return True  # made before names carried the pid
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def _stale(project: str) -> bool:
    return project.startswith(TEST_PREFIX) and _owner_is_gone(project)


def sweep_test_leftovers() -> None:
    """Remove containers, networks, volumes and firewall chains of earlier test runs that were interrupted.

    Stacks of this run and of other test runs still alive (e.g. a second clone
    testing in parallel) are left alone.
    """
    projects = set()
    services = docker("service", "ls", "-q", "--filter", "label=dshub.project", check=False).stdout.split()
    if services:
        owned = docker(
            "service", "inspect", "--format", '{{.ID}} {{index .Spec.Labels "dshub.project"}}', *services,
            check=False,
        ).stdout.split("\n")  # fmt: skip
        stale = [line.split()[0] for line in owned if len(line.split()) == 2 and _stale(line.split()[1])]
        if stale:
            docker("service", "rm", *stale, check=False)
            time.sleep(5)  # their tasks' containers and the stacks' networks go after them
    for kind, ls in (
        ("container", ["ps", "-a"]),
        ("network", ["network", "ls"]),
        ("volume", ["volume", "ls"]),
    ):
        out = docker(*ls, "--filter", "label=dshub.project", "--format", "{{json .}}").stdout
        names = []
        for line in out.splitlines():
            row = json.loads(line)
            labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
            project = labels.get("dshub.project", "")
            if _stale(project):
                names.append(row.get("ID") if kind == "container" else row.get("Name"))
                projects.add(project)
        if names:
            rm = ["rm", "-f"] if kind == "container" else [kind, "rm"]
            docker(*rm, *names, check=False)
    for project in sorted(projects):
        remove_network_policy(project)


def remove_network_policy(project: str) -> None:
    """A stack's firewall chains (spawner/services/netpolicy.py), which outlive its containers."""
    docker(
        "run", "--rm", "--network", "host", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL",
        "--label", f"dshub.project={project}",
        f"dshub/netpolicy:{VERSION}", "remove", "--project", project,
        check=False,
    )  # fmt: skip


@dataclass
class Stack:
    workdir: Path
    overrides: dict[str, str] = field(default_factory=dict)
    # Extra compose files (e.g. compose/dev-oidc.yaml) and the variables they read.
    extra_files: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    # Text of the stack's profiles.yaml; None: none (one profile from the settings).
    profiles: str | None = None
    project: str = field(default_factory=lambda: f"{TEST_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}")
    port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    # With DSHUB_TLS on: the CA file the edge's certificate is checked against. A
    # self-signed stack's own certificate is fetched at `up` when this is None.
    ca_bundle: Path | None = None
    _admin_password: str | None = field(default=None, init=False, repr=False)
    _service_token: str | None = field(default=None, init=False, repr=False)
    # The development identity provider's URL for the browser (dev_oidc_stack only).
    oidc_url: str = field(default="", init=False)
    # The engine the stack runs on (a test node's socket); None: this machine's.
    engine: str | None = None

    def docker(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return docker(*args, check=check, stdin=stdin, host=self.engine)

    def __post_init__(self) -> None:
        self.pool = self.workdir / "pool"
        self.settings_file = self.workdir / "settings.env"
        self.config_dir = self.workdir / "config"
        self.config_dir.mkdir(exist_ok=True)
        if self.profiles is not None:
            (self.config_dir / "profiles.yaml").write_text(self.profiles)
        self.render()

    @property
    def url(self) -> str:
        """Where tests reach the hub: the edge's published port on 127.0.0.1."""
        if self.settings.tls == "off":
            return f"http://127.0.0.1:{self.port}"
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def server_name(self) -> str | None:
        """With TLS on: the name the edge's certificate is for (the host of DSHUB_PUBLIC_URL)."""
        return None if self.settings.tls == "off" else urlsplit(self.settings.public_url).hostname

    def session(self) -> HubSession:
        """A person's session with this stack's hub."""
        return HubSession(self.url, str(self.ca_bundle) if self.ca_bundle else None, self.server_name)

    def edge_http(self) -> requests.Session:
        """requests to the edge, https checked as a browser here would."""
        return edge_session(str(self.ca_bundle) if self.ca_bundle else None, self.server_name)

    def _base_env(self) -> dict[str, str]:
        return {
            "DSHUB_PROJECT": self.project,
            "DSHUB_HTTP_PORT": str(self.port),
            "DSHUB_HTTPS_PORT": str(self.https_port),
            "DSHUB_POOL_DIR": str(self.pool),
            "DSHUB_CONFIG_DIR": str(self.config_dir),
        }

    def compose_invocation(self, *args: str) -> tuple[list[str], dict[str, str]]:
        """For compose commands that need raw stdin (e.g. an archive): the command and its environment."""
        engine = {"DOCKER_HOST": self.engine} if self.engine else {}
        return compose_invocation(
            self.settings_file, *args, extra_files=self.extra_files, extra_env={**self.extra_env, **engine}
        )

    def compose(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        engine = {"DOCKER_HOST": self.engine} if self.engine else {}
        return compose(
            self.settings_file,
            *args,
            extra_files=self.extra_files,
            extra_env={**self.extra_env, **engine},
            check=check,
            stdin=stdin,
        )

    @contextmanager
    def running(self) -> Iterator[Stack]:
        """The stack up for the with block; all it made is removed afterwards, failure or not."""
        try:
            self.up()
            yield self
        finally:
            self.destroy()

    def up(self) -> None:
        self.compose("up", "-d", "--wait")
        self.until_served()

    def until_served(self) -> None:
        """Once started: the self-signed certificate to check the edge with, and the hub healthy behind it."""
        if self.settings.tls == "self-signed" and self.ca_bundle is None:
            self.ca_bundle = self.workdir / "self-signed.pem"
            show = "from spawner.hub.edge import named_pair; print(named_pair()[0].read_text(), end='')"
            served = self.hub_exec("python3", "-c", show)
            self.ca_bundle.write_text(served.stdout)
        self.wait_healthy()

    def reconfigure(self, **overrides: str) -> None:
        """Change settings and run `compose up` again, as `make up` after editing .env does."""
        self.render(**overrides)
        self.up()

    def render(self, **overrides: str) -> None:
        """Change settings and render them, as `make settings` after editing .env does."""
        self.overrides.update(overrides)
        env = {**self._base_env(), **self.overrides}
        self.settings = dshub_settings.load(env)
        self.settings_file.write_text(settings_cli.render(None, env))

    def recreate(self) -> None:
        """Down with the hub's volumes (database, passwords, secrets), then up again; the pool stays."""
        self.compose("down", "-v")
        self._admin_password = self._service_token = None
        self.up()

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = self.edge_http().get(f"{self.url}/hub/health", headers=self.hub_host(), timeout=3)
                if health.status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"hub not healthy through the proxy within {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "80", check=False).stdout

    def hub_exec(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A command in the hub container, exit code passed on (compose exec here always gives 0)."""
        (hub,) = self.containers("hub")
        return subprocess.run(
            ["docker", *(["-H", self.engine] if self.engine else []), "exec", "-i", hub, *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )

    def service_api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The hub API as the roster service (admin of users, groups and servers), through the edge."""
        if self._service_token is None:
            self._service_token = self.hub_exec("cat", "/srv/dshub/data/secrets/roster-token").stdout.strip()
        return self.edge_http().request(
            method,
            f"{self.url}/hub/api{path}",
            headers={"Authorization": f"token {self._service_token}", **self.hub_host()},
            timeout=60,
            **kwargs,
        )

    def hub_host(self) -> dict[str, str]:
        """The Host header of requests for the hub, sent to 127.0.0.1.

        With per-user origins the edge serves the hub's pages only on the hub's own
        name (e.g. hub.localhost:<port>), which Python's resolver here does not know.
        """
        if not self.settings.user_subdomains:
            return {}
        return {"Host": urlsplit(self.settings.public_url).netloc}

    def initial_password(self, name: str) -> str:
        """The user's one-time initial password, as `make initial-password NAME=...` shows it;
        empty once it is used."""
        out = self.hub_exec("python3", "-m", "spawner.auth.localauth", "initial-password", name)
        return out.stdout.strip()

    def initial_passwords(self, names: list[str]) -> dict[str, str]:
        """Many users' initial passwords at once (a class), as the hub's command prints them."""
        out = self.hub_exec(
            "python3", "-m", "spawner.auth.localauth", "initial-password", "--with-names", *names
        )
        assert out.returncode == 0, out.stderr
        return dict(line.split(" ", 1) for line in out.stdout.splitlines())

    def admin_password(self) -> str:
        """The first admin's own password; the first call uses up the initial one to set it."""
        if self._admin_password is None:
            admin = self.settings.admin_users[0]
            chosen = f"{admin}-{uuid.uuid4().hex[:12]}"
            self.session().sign_in(admin, self.initial_password(admin), new_password=chosen)
            self._admin_password = chosen
        return self._admin_password

    def sign_up(self, name: str, password: str) -> HubSession:
        """The admin adds the user; the user's first sign-in with the initial password sets theirs."""
        admin = self.session()
        admin.sign_in(self.settings.admin_users[0], self.admin_password())
        assert admin.api("POST", f"/users/{name}").status_code == 201
        return self.first_sign_in(name, password)

    def first_sign_in(self, name: str, password: str) -> HubSession:
        """A new user's first sign-in: the one-time initial password, then their own."""
        person = self.session()
        person.sign_in(name, self.initial_password(name), new_password=password)
        return person

    def user_containers(self, name: str) -> list[str]:
        selectors = [f"label=dshub.project={self.project}", f"label=dshub.user={name}"]
        return self.docker(
            "ps", "-q", *(arg for sel in selectors for arg in ("--filter", sel))
        ).stdout.split()

    def user_container(self, name: str) -> str:
        (container,) = self.user_containers(name)
        return container

    def rstudio_build_record(self) -> str:
        """What the user image's build recorded about RStudio Server: 'installed: ...' or 'absent: why'."""
        probe = self.docker(
            "run", "--rm", "--label", f"dshub.project={self.project}", "--entrypoint", "sh",
            self.settings.user_image, "-c", f"cat {RSTUDIO_RECORD} 2>/dev/null || echo 'absent: no record'",
        )  # fmt: skip
        return probe.stdout.strip()

    def has_rserver(self) -> bool:
        """Whether the user image has RStudio Server; an image that disagrees with its build record fails."""
        record = self.rstudio_build_record()
        probe = self.docker(
            "run", "--rm", "--label", f"dshub.project={self.project}", "--entrypoint", "sh",
            self.settings.user_image, "-c", "command -v rserver",
            check=False,
        )  # fmt: skip
        present = probe.returncode == 0
        assert present == record.startswith("installed:"), (
            f"the build recorded {record!r}, rserver present: {present}"
        )
        return present

    def containers(self, role: str) -> list[str]:
        selectors = [f"label=dshub.project={self.project}", f"label=dshub.role={role}"]
        out = self.docker("ps", "-aq", *(arg for sel in selectors for arg in ("--filter", sel))).stdout
        return out.split()

    def destroy(self) -> None:
        ids = self.docker("ps", "-aq", "--filter", f"label=dshub.project={self.project}").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)
        self.compose("down", "-v", "--remove-orphans", check=False)
        remove_network_policy(self.project)
        shutil.rmtree(self.workdir, ignore_errors=True)


class SwarmStack(Stack):
    """The stack in swarm mode, deployed as `make swarm-up` does, on this engine's swarm."""

    def _base_env(self) -> dict[str, str]:
        return {**super()._base_env(), "DSHUB_MODE": "swarm"}

    def _swarmstack(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd, env = self.compose_invocation()
        done = subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "python"),
                "-m",
                "spawner.cli.swarmstack",
                *args,
                *(["--", *cmd] if args[0] == "up" else []),
            ],
            env={**env, **self.settings.as_env()},
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"swarmstack {args[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def up(self) -> None:
        self._swarmstack("up", "--stack-file", str(self.workdir / "stack.yaml"))
        self.until_served()

    def logs(self) -> str:
        out = [
            self.docker("service", "logs", "--tail", "80", f"{self.project}_{name}", check=False)
            for name in ("hub", "proxy")
        ]
        return "\n".join(o.stdout + o.stderr for o in out)

    def services(self, role: str = "user-server") -> list[str]:
        selectors = [f"label=dshub.project={self.project}", f"label=dshub.role={role}"]
        return self.docker(
            "service", "ls", "-q", *(a for sel in selectors for a in ("--filter", sel))
        ).stdout.split()

    def destroy(self) -> None:
        self._swarmstack("down", "--users")
        deadline = time.monotonic() + 60
        while self.docker("ps", "-aq", "--filter", f"label=dshub.project={self.project}").stdout.strip():
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        super().destroy()
        # Made by the swarm's tasks, not by compose: compose down leaves them.
        volumes = self.docker(
            "volume", "ls", "-q", "--filter", f"label=dshub.project={self.project}", check=False
        ).stdout.split()
        if volumes:
            self.docker("volume", "rm", *volumes, check=False)


def dev_oidc_stack(workdir: Path, **overrides: str) -> Stack:
    """A stack signing in through the development OpenID Connect provider, reached two ways.

    The browser reaches the provider at ``stack.oidc_url`` (127.0.0.1); the hub over the
    project network as ``http://oidc:9400``. Only members of the provider's group
    ``students`` may enter.
    """
    oidc_port = free_port()
    stack = Stack(
        workdir,
        overrides={
            "DSHUB_AUTHENTICATOR": "generic",
            "DSHUB_OIDC_ISSUER": f"http://127.0.0.1:{oidc_port}",
            "DSHUB_OIDC_BACKCHANNEL_URL": "http://oidc:9400",
            "DSHUB_OAUTH_CLIENT_ID": "dshub-dev",
            "DSHUB_OAUTH_CLIENT_SECRET": "dev-only-secret",
            "DSHUB_OAUTH_ALLOWED_GROUPS": "students",
            **overrides,
        },
        extra_files=("dev-oidc.yaml",),
        extra_env={"dshub_oidc_port": str(oidc_port)},
    )
    stack.oidc_url = f"http://127.0.0.1:{oidc_port}"
    return stack
