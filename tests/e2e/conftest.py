import pytest
from playwright.sync_api import sync_playwright

from tests.support.browser import launch, new_page
from tests.support.stack import dev_oidc_stack, require_images, sweep_test_leftovers


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = launch(playwright.chromium)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = new_page(browser, {"width": 1280, "height": 800})
    yield page
    page.context.close()


@pytest.fixture(scope="session", autouse=True)
def _images():
    require_images("hub", "proxy", "netpolicy", "lab", "datascience", "oidc-dev", "pebble")
    sweep_test_leftovers()
    yield
    sweep_test_leftovers()


@pytest.fixture(scope="module")
def oidc_stack(tmp_path_factory):
    """The hub signing in through the dev OpenID Connect provider, reached two ways."""
    stack = dev_oidc_stack(
        tmp_path_factory.mktemp("oidc-stack", numbered=True),
        DSHUB_OAUTH_ADMIN_GROUPS="staff",
        DSHUB_OAUTH_LOGOUT_URL="idp",
    )
    with stack.running():
        yield stack
