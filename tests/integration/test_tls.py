"""https at the edge (DSHUB_TLS) through the real Traefik: self-signed and the operator's files.

ACME is tested against a real ACME server in tests/e2e/test_acme.py.
"""

from __future__ import annotations

import time

from tests.support.certs import OwnCa, served_certificate
from tests.support.hub import login_xsrf
from tests.support.stack import LAB_IMAGE, Stack, docker


def test_self_signed_https_with_redirect_headers_and_websockets(tmp_path):
    stack = Stack(tmp_path, {"DSHUB_TLS": "self-signed", "DSHUB_USER_IMAGE": LAB_IMAGE})
    with stack.running():
        assert stack.ca_bundle is not None
        # Plain http only sends the browser to https, same path and query.
        plain = stack.edge_http().get(
            f"http://127.0.0.1:{stack.port}/hub/login?next=%2Fhub%2Fhome", allow_redirects=False, timeout=10
        )
        assert plain.status_code in (301, 308)
        assert (
            plain.headers["Location"] == f"https://127.0.0.1:{stack.https_port}/hub/login?next=%2Fhub%2Fhome"
        )

        page = stack.edge_http().get(f"{stack.url}/hub/login", timeout=10)
        assert page.status_code == 200
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["X-Frame-Options"] == "SAMEORIGIN"
        # Never HSTS for a certificate nobody's browser trusts.
        assert "Strict-Transport-Security" not in page.headers

        ada = stack.sign_up("ada", "ada-password-1")
        assert {c.name for c in ada.http.cookies} >= {"jupyterhub-session-id"}
        assert all(cookie.secure for cookie in ada.http.cookies)
        ada.start_server()
        # The kernel's websocket over wss, through the edge.
        assert ada.run("print(6 * 7)").strip() == "42"

        # Made once: recreating the edge serves the same certificate.
        first = served_certificate(stack.https_port, stack.ca_bundle)
        stack.compose("up", "-d", "--wait", "--force-recreate", "edge-init", "proxy")
        stack.wait_healthy()
        assert served_certificate(stack.https_port, stack.ca_bundle).serial_number == first.serial_number
        assert ada.run("print('still here')").strip() == "still here"


def test_operator_certificate_is_served_and_reloaded_without_restart(tmp_path):
    ca = OwnCa(tmp_path / "ca.pem")
    tls_dir = tmp_path / "stack" / "config" / "tls"
    first = ca.issue(tls_dir, ["127.0.0.1"])
    stack = Stack(tmp_path / "stack", {"DSHUB_TLS": "files", "DSHUB_HSTS_SECONDS": "600"}, ca_bundle=ca.path)
    with stack.running():
        page = stack.edge_http().get(f"{stack.url}/hub/login", timeout=10)
        assert page.status_code == 200
        assert page.headers["Strict-Transport-Security"] == "max-age=600"
        assert served_certificate(stack.https_port, ca.path).serial_number == first.serial_number
        (proxy,) = stack.containers("proxy")
        started = _started_at(proxy)

        # A key that is not the certificate's: refused, the served pair stays.
        good_key = (tls_dir / "privkey.pem").read_bytes()
        other = OwnCa(tmp_path / "other-ca.pem")
        other.issue(tmp_path / "other", ["127.0.0.1"])
        (tls_dir / "privkey.pem").write_bytes((tmp_path / "other" / "privkey.pem").read_bytes())
        _wait_for(lambda: "Keeping the certificate served now" in stack.compose("logs", "hub").stdout)
        assert served_certificate(stack.https_port, ca.path).serial_number == first.serial_number
        (tls_dir / "privkey.pem").write_bytes(good_key)

        # The operator renews: the new certificate is served, Traefik was not restarted.
        renewed = ca.issue(tls_dir, ["127.0.0.1"])
        _wait_for(
            lambda: served_certificate(stack.https_port, ca.path).serial_number == renewed.serial_number
        )
        assert _started_at(proxy) == started


def _started_at(container: str) -> str:
    return docker("inspect", "--format", "{{.State.StartedAt}}", container).stdout.strip()


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout}s")
        time.sleep(1)


def test_a_named_terminator_is_believed_for_the_browsers_address(tmp_path):
    stack = Stack(tmp_path, {"DSHUB_TLS": "self-signed"})
    with stack.running():
        # The test stands in for a TLS terminator: its connections reach Traefik from
        # the gateway of the proxy's network (the engine's port forwarder).
        (proxy,) = stack.containers("proxy")
        gateways = docker(
            "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", proxy
        ).stdout.split()
        stack.reconfigure(DSHUB_TRUSTED_PROXIES=",".join(gateways))
        # A new static configuration for Traefik replaced its container.
        assert stack.containers("proxy") != [proxy]

        def refused_sign_in(claimed_address: str, name: str) -> str:
            http = stack.edge_http()
            claimed = {"X-Forwarded-For": claimed_address}
            page = http.get(f"{stack.url}/hub/login", headers=claimed, timeout=30)
            xsrf = login_xsrf(page.text)
            form = {"username": name, "password": "x", "_xsrf": xsrf}
            answer = http.post(f"{stack.url}/hub/login", data=form, headers=claimed, timeout=30)
            assert answer.status_code == 403, answer.status_code
            return answer.text

        # 20 failures from one browser behind the terminator: that browser is throttled...
        for i in range(20):
            assert "Too many failed sign-ins" not in refused_sign_in("198.51.100.7", f"nobody{i}")
            time.sleep(0.15)  # under the edge's rate limit: this is about the hub's throttle
        assert "Too many failed sign-ins" in refused_sign_in("198.51.100.7", "nobody-else")
        # ...and another browser behind the same terminator is not.
        assert "Too many failed sign-ins" not in refused_sign_in("198.51.100.8", "somebody")
