"""Cold build time of the user images: datascience against the lean lab image.

Both are rebuilt without the build cache (the Debian base image stays), one after
the other in the same run; packages come from the registries as on a fresh machine.
"""

from __future__ import annotations

import time

from tests.support.stack import REPO, compose

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Cold build time of the user images"


def build_seconds(service: str, profile: str) -> float:
    started = time.monotonic()
    compose(REPO / "build" / "settings.env", "--profile", profile, "build", "--no-cache", service)
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
            TITLE,
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
