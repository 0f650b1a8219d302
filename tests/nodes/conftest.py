import pytest

from tests.support.stack import docker, require_images, sweep_test_leftovers


@pytest.fixture(scope="session", autouse=True)
def _engine_and_images():
    if docker("info", check=False).returncode:
        pytest.fail("no Docker engine answers: `make test-nodes` starts one (scripts/engine.sh)")
    require_images("hub", "proxy", "netpolicy", "lab", "swarm-node")
    sweep_test_leftovers()
    yield
    sweep_test_leftovers()
