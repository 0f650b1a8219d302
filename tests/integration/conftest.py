import pytest

from spawner import settings as dshub_settings
from tests.support.stack import Stack, docker, sweep_test_leftovers


@pytest.fixture(scope="session", autouse=True)
def _engine_and_images():
    if docker("info", check=False).returncode:
        pytest.fail("no Docker engine answers: `make test` starts one (scripts/engine.sh)")
    for image in ("hub", "proxy", "lab"):
        ref = f"dshub/{image}:{dshub_settings.VERSION}"
        if docker("image", "inspect", ref, check=False).returncode:
            pytest.fail(f"image {ref} is missing: run `make build` (make test does)")
    sweep_test_leftovers()
    yield
    sweep_test_leftovers()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("stack", numbered=True))
    try:
        stack.up()
        yield stack
    finally:
        stack.destroy()
