"""Cold build time of the user images: datascience against the lean lab image.

Both are rebuilt without the build cache (the Debian base image stays), one after
the other in the same run; packages come from the registries as on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
import time

from spawner import settings as dshub_settings
from tests.support.stack import REPO


def build_seconds(service: str, profile: str) -> float:
    settings_file = REPO / "build" / "settings.env"
    env = {**os.environ, "dshub_tag": dshub_settings.VERSION, "dshub_settings_file": str(settings_file)}
    started = time.monotonic()
    subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "docker-compose"),
            "--project-directory",
            str(REPO / "compose"),
            "-f",
            str(REPO / "compose" / "compose.yaml"),
            "--env-file",
            str(settings_file),
            "--profile",
            profile,
            "build",
            "--no-cache",
            service,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.monotonic() - started


def run() -> tuple[str, list[dict[str, object]]]:
    lab = build_seconds("lab", "build")
    datascience = build_seconds("datascience", "build-on-lab")
    rows = [
        {"image": "lab", "seconds": round(lab, 1)},
        {"image": "datascience", "seconds": round(datascience, 1)},
    ]
    text = "\n".join(
        [
            "## Cold build time of the user images",
            "",
            "`docker compose build --no-cache`, base image present, packages from the registries.",
            "datascience builds FROM lab; its time excludes lab's.",
            "",
            "| image | seconds | ratio to lab |",
            "| --- | ---: | ---: |",
            f"| dshub/lab | {lab:.0f} | 1.00 |",
            f"| dshub/datascience | {datascience:.0f} | {datascience / lab:.2f} |",
            "",
        ]
    )
    return text, rows
