"""DSHUB_TLS=acme against a real ACME server: Debian's pebble (compose/dev-acme.yaml).

Traefik orders the hub's certificate from pebble, which checks the name over
HTTP-01 on the edge's own http port, or TLS-ALPN-01 on its https port (it
resolves hub.dshub.test to the edge on a network of the test, as public DNS
would). Chromium, whose profile trusts the CA pebble signs with (put there with
NSS's certutil, as an operator's browser trusts Let's Encrypt's root), signs in,
starts a server and runs a cell in Lab over https and wss. `make
renew-certificates` then orders a new certificate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from cryptography import x509
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import (
    expect_shown_after_network_change,
    goto_after_network_change,
    launch,
    new_page,
    run_until_shown,
    screenshot,
    sign_in_first_time,
    wait_for_settled_interfaces,
    wait_for_url_after_network_change,
)
from tests.support.certs import OwnCa, served_certificate
from tests.support.stack import LAB_IMAGE, Stack, docker, free_port

HOST = "hub.dshub.test"
NAME = "ada"
PASSWORD = "ada-over-https"


@contextmanager
def acme_stack_with(workdir: Path, challenge: str) -> Iterator[Stack]:
    """A stack whose edge orders its certificate from pebble, checked by ``challenge`` (http or tls)."""
    # pebble's own https (its ACME directory) is signed by a CA of the test's.
    listener_ca = OwnCa(workdir / "pebble-listener-ca.pem", "pebble listener CA")
    certs = workdir / "pebble"
    listener_ca.issue(certs, ["pebble", "127.0.0.1"], cert_name="cert.pem", key_name="key.pem")
    # pebble runs unprivileged; this key guards nothing but the test's own server.
    certs.chmod(0o755)
    (certs / "key.pem").chmod(0o644)
    https_port, pebble_port = free_port(), free_port()
    stack = Stack(
        workdir,
        https_port=https_port,
        overrides={
            "DSHUB_TLS": "acme",
            "DSHUB_PUBLIC_URL": f"https://{HOST}:{https_port}",
            "DSHUB_ACME_CA_SERVER": "https://pebble:14000/dir",
            "DSHUB_ACME_CA_CERTIFICATE": str(listener_ca.path),
            "DSHUB_ACME_CHALLENGE": challenge,
            "DSHUB_ACME_EMAIL": "ops@dshub.test",
            "DSHUB_USER_IMAGE": LAB_IMAGE,
        },
        extra_files=("dev-acme.yaml",),
        extra_env={
            "dshub_pebble_certs": str(certs),
            "dshub_acme_host": HOST,
            "dshub_pebble_port": str(pebble_port),
        },
    )
    try:
        stack.compose("up", "-d", "--wait")
        # The root pebble issues under is made at its start: the browser and the
        # test's own calls trust it, nothing else.
        root = requests.get(
            f"https://127.0.0.1:{pebble_port}/roots/0", verify=str(listener_ca.path), timeout=10
        )
        root.raise_for_status()
        stack.ca_bundle = workdir / "pebble-root.pem"
        stack.ca_bundle.write_text(root.text)
        # Healthy over https for HOST only once the certificate is issued and served.
        stack.wait_healthy(timeout=180)
        yield stack
    finally:
        stack.destroy()


@pytest.fixture(scope="module")
def acme_stack(tmp_path_factory) -> Iterator[Stack]:
    with acme_stack_with(tmp_path_factory.mktemp("acme-stack", numbered=True), "http") as stack:
        assert stack.service_api("POST", f"/users/{NAME}").status_code == 201
        yield stack


def acme_state(stack: Stack) -> dict:
    (proxy,) = stack.containers("proxy")
    return json.loads(docker("exec", proxy, "cat", "/srv/dshub/acme/acme.json").stdout)


def test_certificate_is_issued_by_the_acme_server_and_kept(acme_stack):
    served = served_certificate(acme_stack.https_port, acme_stack.ca_bundle, HOST)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [HOST]
    assert "Pebble" in served.issuer.rfc4514_string()
    # Kept in the acme volume with the account, for the next start.
    stored = acme_state(acme_stack)["acme"]
    assert stored["Account"]["Email"] == "ops@dshub.test"
    assert [c["domain"]["main"] for c in stored["Certificates"]] == [HOST]
    # Kept across a restart of the edge: the same certificate, not a new order.
    acme_stack.compose("restart", "proxy")
    acme_stack.wait_healthy(timeout=120)
    assert (
        served_certificate(acme_stack.https_port, acme_stack.ca_bundle, HOST).serial_number
        == served.serial_number
    )
    # Plain http: only a redirect to the https name.
    plain = requests.get(f"http://127.0.0.1:{acme_stack.port}/hub/", allow_redirects=False, timeout=10)
    assert plain.headers["Location"] == f"https://127.0.0.1:{acme_stack.https_port}/hub/"
    # HSTS with a certificate browsers trust.
    page = acme_stack.edge_http().get(f"{acme_stack.url}/hub/login", timeout=10)
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.fixture
def trusting_browser(browser: Browser, acme_stack: Stack, tmp_path: Path) -> Iterator[Browser]:
    """Chromium with a profile whose NSS store trusts pebble's root, and HOST at 127.0.0.1."""
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    certutil = shutil.which("certutil")
    assert certutil, "certutil is missing: `make test` installs it (scripts/browser.sh)"
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run(
        [certutil, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "pebble", "-i", str(acme_stack.ca_bundle)],
        check=True,
    )
    trusting = launch(
        browser.browser_type,
        f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
        env={**os.environ, "HOME": str(home)},
    )
    try:
        yield trusting
    finally:
        trusting.close()


def first_sign_in_over_https(browser: Browser, stack: Stack) -> Page:
    page = new_page(browser)
    wait_for_settled_interfaces()
    goto_after_network_change(
        page, f"https://{HOST}:{stack.https_port}/hub/login?next={quote('/hub/spawn', safe='')}"
    )
    sign_in_first_time(page, NAME, stack.initial_password(NAME), PASSWORD)
    return page


def run_a_cell(page: Page, code: str, result: str) -> None:
    page.locator(".jp-LauncherCard", has_text="Python 3").first.click()
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").last).to_be_visible(
        timeout=120_000
    )
    cell = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    page.keyboard.type(code)
    run_until_shown(
        page, cell, page.locator(".jp-NotebookPanel:visible .jp-Notebook").get_by_text(result, exact=True)
    )


def test_browser_works_over_https_and_after_a_renewal(acme_stack, trusting_browser):
    page = first_sign_in_over_https(trusting_browser, acme_stack)
    lab = f"https://{HOST}:{acme_stack.https_port}/user/{NAME}/lab"
    # The server's container starting changes this host's interfaces (tests/support/browser.py).
    wait_for_url_after_network_change(page, f"{lab}**", again=lab)
    expect_shown_after_network_change(page, page.locator("#jp-main-dock-panel"))
    # The kernel's websocket over wss, through the edge, with a certificate the browser trusts.
    run_a_cell(page, "6 * 7", "42")
    screenshot(page, "lab-over-https")
    before = served_certificate(acme_stack.https_port, acme_stack.ca_bundle, HOST)

    # make renew-certificates, step by step with the test's settings.
    acme_stack.compose("stop", "proxy")
    forget = acme_stack.compose(
        "run", "--rm", "--no-deps", "-T", "--entrypoint", "python3", "edge-init",
        "-m", "spawner.hub.edge", "forget-certificates",
    )  # fmt: skip
    assert "dropped 1 certificate(s)" in forget.stdout
    acme_stack.compose("up", "-d", "--wait")
    acme_stack.wait_healthy(timeout=180)
    after = served_certificate(acme_stack.https_port, acme_stack.ca_bundle, HOST)
    assert after.serial_number != before.serial_number
    assert acme_state(acme_stack)["acme"]["Account"]["Email"] == "ops@dshub.test"

    # The same browser goes on working on the new certificate (a fresh workspace: the launcher).
    wait_for_settled_interfaces()
    goto_after_network_change(page, f"https://{HOST}:{acme_stack.https_port}/user/{NAME}/lab?reset")
    expect_shown_after_network_change(page, page.locator("#jp-main-dock-panel"))
    run_a_cell(page, "7 * 6 + 1", "43")


def test_certificate_by_the_tls_alpn_challenge(tmp_path):
    """TLS-ALPN-01: the CA checks the name on the https port alone (DSHUB_ACME_CHALLENGE=tls)."""
    with acme_stack_with(tmp_path, "tls") as stack:
        served = served_certificate(stack.https_port, stack.ca_bundle, HOST)
        assert "Pebble" in served.issuer.rfc4514_string()
        assert acme_state(stack)["acme"]["Certificates"][0]["domain"]["main"] == HOST
