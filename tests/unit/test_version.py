"""The version is written once (spawner/core/constants.py); the packaging metadata follows it."""

import tomllib
from pathlib import Path

from spawner.core.constants import VERSION

REPO = Path(__file__).resolve().parents[2]


def test_the_package_metadata_carries_the_images_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == VERSION, "pyproject.toml's version must be spawner/core/constants.py's"


def test_no_image_build_names_a_version_of_its_own():
    for dockerfile in (REPO / "images").glob("*/Dockerfile"):
        assert f":{VERSION}" not in dockerfile.read_text(), f"{dockerfile}: take the tag from compose"
