"""The reference deployment (bench/reference/): JupyterHub + CHP in one container.

Brought up per bench run like a dshub Stack: its own compose project (labelled
dshub.project=dshubb-...), network and 127.0.0.1 port; the bench drives it with
an admin service token.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.common import project_name, remove_labelled, user_image, wait_until
from spawner.config import settings as dshub_settings
from spawner.core.constants import VERSION
from tests.support.hub import HubSession
from tests.support.stack import COMPOSE_BIN, REPO, free_port

HERE = Path(__file__).parent / "reference"


def jupyterlab_version() -> str:
    """The JupyterLab release the lab image pins: the minimal image installs the same."""
    pins = (REPO / "images" / "lab" / "requirements.txt").read_text()
    match = re.search(r"^jupyterlab==(\S+)$", pins, re.MULTILINE)
    if not match:
        raise RuntimeError("images/lab/requirements.txt pins no jupyterlab==<version>")
    return match[1]


@dataclass
class Reference:
    user_image: str = field(default_factory=lambda: user_image("lab"))
    project: str = field(default_factory=lambda: project_name("ref"))
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    # JupyterHub's own defaults, unless a measure gives the reference dshub's.
    start_timeout: int = 60
    http_timeout: int = 30

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        base = dshub_settings.load(dshub_settings.parse_env_file(REPO / "build" / "settings.env"))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DSHUB_")},
            "BENCH_PROJECT": self.project,
            "BENCH_TAG": VERSION,
            "BENCH_TOKEN": self.token,
            "BENCH_PORT": str(self.port),
            "BENCH_USER_IMAGE": self.user_image,
            "BENCH_START_TIMEOUT": str(self.start_timeout),
            "BENCH_HTTP_TIMEOUT": str(self.http_timeout),
            "BASE_IMAGE": base.base_image,
            "BENCH_CA_BUNDLE": str(base.build_ca_bundle),
            "BENCH_JUPYTERLAB_VERSION": jupyterlab_version(),
        }
        cmd = [str(COMPOSE_BIN), "--project-directory", str(HERE), "-f", str(HERE / "compose.yaml"), *args]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if result.returncode:
            raise RuntimeError(f"reference {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def build(self) -> None:
        """The reference hub's image and the tools' (dshub/bench-*): load generator, minimal JupyterLab."""
        self.compose("--profile", "tools", "build", "hub", "wrk", "minimal-lab")

    def up(self, timeout: float = 120) -> None:
        self.compose("up", "-d")
        wait_until(self.healthy, timeout, 0.5, "reference hub healthy")

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/hub/health", timeout=3).status_code == 200
        except requests.ConnectionError:
            return False

    def admin(self) -> HubSession:
        """A session that calls the hub's API with the bench service's admin token."""
        session = HubSession(self.url)
        session.token = self.token
        return session

    def destroy(self) -> None:
        remove_labelled(self.project)
