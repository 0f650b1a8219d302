import pytest

from tests.support.stack import Stack, docker, require_images, sweep_test_leftovers


@pytest.fixture(scope="session", autouse=True)
def _engine_and_images():
    if docker("info", check=False).returncode:
        pytest.fail("no Docker engine answers: `make test` starts one (scripts/engine.sh)")
    require_images("hub", "proxy", "netpolicy", "quota", "lab", "datascience")
    sweep_test_leftovers()
    yield
    sweep_test_leftovers()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("stack", numbered=True)).running() as stack:
        yield stack
