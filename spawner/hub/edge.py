"""The edge proxy's configuration and its TLS material, made from the settings.

Traefik reads its static configuration (entry points, the ACME resolver) once,
when it starts, so it cannot come from the hub, which starts after it: the
one-shot ``edge-init`` service (compose/compose.yaml, the hub's image) writes it
into a volume Traefik reads, with what ``DSHUB_TLS`` needs:

* ``off``: plain http on one entry point, as before; allowed on a loopback
  address or behind a terminator named in ``DSHUB_TRUSTED_PROXIES``;
* ``self-signed``: a certificate for the hub's host (and ``*.<host>`` with
  per-user origins), made once and kept in the ``tls`` volume; made again only
  when the host changes or it nears its end;
* ``files``: the operator's certificate and key from ``DSHUB_CONFIG_DIR``; the
  hub looks at them every 10 seconds and installs a new pair when they change;
* ``acme``: Traefik's own ACME resolver (HTTP-01 or TLS-ALPN-01), its account
  and certificates kept in the ``acme`` volume.

With TLS on, the http entry point only redirects to https (and answers the ACME
HTTP-01 challenge), and the https entry point adds security headers to every
answer (:func:`edge_rules`).

Traefik runs unprivileged, so the certificate and key it serves are copies,
owned by its uid. They carry their digest in their names: Traefik skips a
reload whose configuration did not change, so a new certificate under the old
file name would never be served.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spawner.config import settings as dshub_settings
from spawner.config.layout import CONFIG_DIR, RULES_FILE

log = logging.getLogger(__name__)

EDGE_DIR = Path("/srv/dshub/edge")  # volume: Traefik's static configuration (read-only there)
STATIC_CONFIG_FILE = EDGE_DIR / "traefik.yaml"
# Swarm mode on loopback: the forwarder's configuration (forwarder_config).
FORWARDER_CONFIG_FILE = EDGE_DIR / "forwarder.yaml"
FORWARDER_RULES_FILE = EDGE_DIR / "forwarder-rules.yaml"
TLS_DIR = Path("/srv/dshub/tls")  # volume: the certificate and key Traefik serves (read-only there)
ACME_DIR = Path("/srv/dshub/acme")  # volume: Traefik's ACME account and certificates
ACME_STORAGE = ACME_DIR / "acme.json"
# In the directory Traefik watches, beside the hub's routes.
TLS_RULES_FILE = Path(RULES_FILE).parent / "dshub-tls.yaml"
TRAEFIK_VERSION = "3.7.15"
# As compose/compose.yaml names it (a unit test holds the two together).
PROXY_IMAGE = f"dshub/proxy:traefik-{TRAEFIK_VERSION}"
# Traefik's user in its image (images/proxy/Dockerfile).
PROXY_UID = 65534
HTTP_ENTRYPOINT = "http"
HTTPS_ENTRYPOINT = "https"
ACME_RESOLVER = "acme"
SECURITY_HEADERS = "dshub-security-headers"
# Ports inside the proxy's container; compose publishes them as DSHUB_HTTP_PORT / DSHUB_HTTPS_PORT.
CONTAINER_HTTP_PORT = 8000
CONTAINER_HTTPS_PORT = 8443
SELF_SIGNED_DAYS = 825
# A self-signed certificate this close to its end is made again at the next start.
RENEW_BEFORE = datetime.timedelta(days=30)
# How often the hub looks at the operator's certificate files (DSHUB_TLS=files).
FILES_CHECK_SECONDS = 10


class CertificateError(ValueError):
    """The operator's certificate or key cannot be served; the message says why."""


def web_entrypoint(settings: dshub_settings.Settings) -> str:
    """The entry point people's requests arrive on: every route of the hub goes there."""
    return HTTP_ENTRYPOINT if settings.tls == "off" else HTTPS_ENTRYPOINT


def public_host(settings: dshub_settings.Settings) -> str:
    return urlsplit(settings.public_url).hostname or ""


def static_config(settings: dshub_settings.Settings) -> dict[str, Any]:
    """Traefik's static configuration for these settings."""
    http: dict[str, Any] = {"address": f":{CONTAINER_HTTP_PORT}", "http": _request_headers()}
    entry_points: dict[str, Any] = {
        HTTP_ENTRYPOINT: http,
        # Only the hub talks to the API: it listens only on the control network (the
        # proxy's address there is named proxy-api), which user containers are not on.
        "auth_api": {"address": "proxy-api:8099", "http": _request_headers()},
    }
    config: dict[str, Any] = {
        "entryPoints": entry_points,
        "api": {"dashboard": False},
        # Routes are written by the hub into this directory, which Traefik watches.
        "providers": {
            "providersThrottleDuration": "0s",
            "file": {"directory": str(Path(RULES_FILE).parent), "watch": True},
        },
        "log": {"level": settings.log_level},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }
    if settings.monitoring:
        # Prometheus metrics (per router: requests, latency), on the control network too. Only
        # for Prometheus to read: every request updates them, with a router's and a service's labels.
        entry_points["metrics"] = {"address": "proxy-api:8082", "http": _request_headers()}
        config["metrics"] = {
            "prometheus": {"entryPoint": "metrics", "addRoutersLabels": True, "addServicesLabels": True}
        }
    # Without trusted addresses Traefik replaces X-Forwarded-* with what it sees itself.
    forwarded: dict[str, Any] = {"forwardedHeaders": {"trustedIPs": list(settings.trusted_proxies)}}
    if settings.swarm_forwarder:
        # The forwarder passes each connection's client address in a PROXY protocol
        # header; believed from the forwarder's own fixed address only.
        forwarded["proxyProtocol"] = {"trustedIPs": [f"{forwarder_address(settings)}/32"]}
    if settings.trusted_proxies or settings.swarm_forwarder:
        http.update(forwarded)
    if settings.tls == "off":
        if settings.trusted_proxies:
            # Behind a terminator the browser sees https: the same headers as dshub's own https.
            http["http"]["middlewares"] = [f"{SECURITY_HEADERS}@file"]
        return config
    http["http"]["redirections"] = {
        "entryPoint": {"to": f":{settings.https_port}", "scheme": "https", "permanent": True}
    }
    tls: dict[str, Any] = {}
    entry_points[HTTPS_ENTRYPOINT] = https = {
        "address": f":{CONTAINER_HTTPS_PORT}",
        "http": {**_request_headers(), "tls": tls, "middlewares": [f"{SECURITY_HEADERS}@file"]},
    }
    if settings.trusted_proxies or settings.swarm_forwarder:
        https.update(forwarded)
    if settings.tls == "acme":
        tls.update(certResolver=ACME_RESOLVER, domains=[{"main": public_host(settings)}])
        acme: dict[str, Any] = {"caServer": settings.acme_ca_server, "storage": str(ACME_STORAGE)}
        if settings.acme_email:
            acme["email"] = settings.acme_email
        if settings.acme_challenge == "http":
            acme["httpChallenge"] = {"entryPoint": HTTP_ENTRYPOINT}
        else:
            acme["tlsChallenge"] = {}
        config["certificatesResolvers"] = {ACME_RESOLVER: {"acme": acme}}
    return config


def forwarder_address(settings: dshub_settings.Settings) -> str:
    """The forwarder's fixed address on the edge network: its last; the swarm's tasks get the first half."""
    return str(ipaddress.IPv4Network(settings.swarm_edge_subnet)[-2])


def forwarder_config() -> tuple[dict[str, Any], dict[str, Any]]:
    """Static and dynamic configuration of the swarm mode's loopback forwarder (a Traefik too).

    A swarm publishes a service's ports on every address of a node, never on one
    (127.0.0.1), so with a loopback DSHUB_BIND_ADDRESS a container outside the
    swarm publishes them there and passes each connection on, bytes untouched
    (TLS included), to the stack's Traefik over the edge network, saying who the
    client is with a PROXY protocol header.
    """
    entry_points = {
        HTTP_ENTRYPOINT: {"address": f":{CONTAINER_HTTP_PORT}"},
        HTTPS_ENTRYPOINT: {"address": f":{CONTAINER_HTTPS_PORT}"},
    }
    static = {
        "entryPoints": entry_points,
        "providers": {"file": {"filename": str(FORWARDER_RULES_FILE)}},
        "log": {"level": "WARN"},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }
    routers = {
        name: {"entryPoints": [name], "rule": "HostSNI(`*`)", "service": name} for name in entry_points
    }
    services = {
        name: {
            "loadBalancer": {
                "serversTransport": "proxy-protocol",
                "servers": [{"address": f"proxy:{port}"}],
            }
        }
        for name, port in ((HTTP_ENTRYPOINT, CONTAINER_HTTP_PORT), (HTTPS_ENTRYPOINT, CONTAINER_HTTPS_PORT))
    }
    dynamic = {
        "tcp": {
            "routers": routers,
            "services": services,
            "serversTransports": {"proxy-protocol": {"proxyProtocol": {"version": 2}}},
        }
    }
    return static, dynamic


def _request_headers() -> dict[str, str]:
    """Drop request headers whose names alias others (X_Remote_User for X-Remote-User).

    Servers that turn header names into variables (CGI, WSGI, RStudio's and
    others) read such a name as the header it aliases, past anything Traefik
    checks or sets under the real name. Browsers never send them.
    """
    return {"aliasHeadersStrategy": "delete"}


def static_config_digest(settings: dshub_settings.Settings) -> str:
    """Changes exactly when Traefik's static configuration does (a label of the proxy's container)."""
    text = json.dumps(static_config(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def edge_rules(settings: dshub_settings.Settings, certificate: tuple[Path, Path] | None) -> dict[str, Any]:
    """Traefik's dynamic TLS rules: the security headers, and the certificate unless ACME makes it."""
    headers: dict[str, Any] = {
        "contentTypeNosniff": True,
        "referrerPolicy": "strict-origin-when-cross-origin",
        # Lab, RStudio and VS Code frame their own pages (VS Code's webviews), never others'.
        "customFrameOptionsValue": "SAMEORIGIN",
    }
    # A browser that saw HSTS for a self-signed certificate lets nobody click past it.
    if settings.hsts_seconds and settings.tls != "self-signed":
        headers["stsSeconds"] = settings.hsts_seconds
        headers["stsIncludeSubdomains"] = settings.user_subdomains
    rules: dict[str, Any] = {"http": {"middlewares": {SECURITY_HEADERS: {"headers": headers}}}}
    if certificate is not None:
        files = {"certFile": str(certificate[0]), "keyFile": str(certificate[1])}
        rules["tls"] = {"certificates": [files], "stores": {"default": {"defaultCertificate": dict(files)}}}
    return rules


def certificate_names(settings: dshub_settings.Settings) -> list[str]:
    """What a certificate for this hub must cover: its host, and its users' hosts below it."""
    host = public_host(settings)
    return [host, f"*.{host}"] if settings.user_subdomains else [host]


def _subject_alternative_names(names: list[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def make_self_signed(names: list[str]) -> tuple[bytes, bytes]:
    """A fresh key and a certificate for ``names``, signed by itself; PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(_subject_alternative_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def check_pair(cert_pem: bytes, key_pem: bytes) -> x509.Certificate:
    """The leaf certificate, when the chain parses and the key is its key."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as e:
        raise CertificateError(f"the certificate file holds no PEM certificate ({e})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"the key file holds no unencrypted PEM private key ({e})") from None
    leaf = chain[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise CertificateError("the key is not the key of the certificate (the first one in the file)")
    return leaf


def _covers(leaf: x509.Certificate, names: list[str]) -> bool:
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    present = {str(v) for v in sans.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    return set(names) <= present


def named_pair(rules_file: Path = TLS_RULES_FILE) -> tuple[Path, Path] | None:
    """The certificate and key the TLS rules tell Traefik to serve now."""
    try:
        rules = yaml.safe_load(rules_file.read_text()) or {}
        files = rules["tls"]["stores"]["default"]["defaultCertificate"]
        return Path(files["certFile"]), Path(files["keyFile"])
    except (FileNotFoundError, KeyError, TypeError, yaml.YAMLError):
        return None


def newest_pair(kind: str, tls_dir: Path = TLS_DIR) -> tuple[Path, Path] | None:
    """The newest pair of this kind (``self-signed`` or ``operator``) in the volume."""
    certs = sorted(tls_dir.glob(f"{kind}-cert-*.pem"), key=lambda p: p.stat().st_mtime, reverse=True)
    for cert in certs:
        key = cert.with_name(cert.name.replace("-cert-", "-key-", 1))
        if key.exists():
            return cert, key
    return None


def install_pair(
    kind: str, cert_pem: bytes, key_pem: bytes, tls_dir: Path = TLS_DIR, rules_file: Path = TLS_RULES_FILE
) -> tuple[Path, Path]:
    """Copy a pair for Traefik (its uid, key 0400), named by its digest; the paths.

    The pair the rules name now stays beside it: Traefik may still be reading it.
    """
    digest = hashlib.sha256(cert_pem + b"\0" + key_pem).hexdigest()[:16]
    cert, key = tls_dir / f"{kind}-cert-{digest}.pem", tls_dir / f"{kind}-key-{digest}.pem"
    tls_dir.mkdir(parents=True, exist_ok=True)
    if not (cert.exists() and key.exists()):
        for path, content, mode in ((key, key_pem, 0o400), (cert, cert_pem, 0o444)):
            _write_for_proxy(path, content, mode)
    keep = {cert, key, *(named_pair(rules_file) or ())}
    for stale in tls_dir.glob("*.pem"):
        if stale not in keep:
            stale.unlink()
    return cert, key


def _write_for_proxy(path: Path, content: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if os.geteuid() == 0:
            os.fchown(fd, PROXY_UID, PROXY_UID)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def ensure_self_signed(
    settings: dshub_settings.Settings, tls_dir: Path = TLS_DIR, rules_file: Path = TLS_RULES_FILE
) -> tuple[Path, Path]:
    """The self-signed pair in the volume, made when missing, for other names, or near its end."""
    names = certificate_names(settings)
    pair = newest_pair("self-signed", tls_dir)
    if pair is not None:
        leaf = x509.load_pem_x509_certificate(pair[0].read_bytes())
        fresh = leaf.not_valid_after_utc - RENEW_BEFORE > datetime.datetime.now(datetime.UTC)
        if fresh and _covers(leaf, names):
            return pair
    pair = install_pair("self-signed", *make_self_signed(names), tls_dir=tls_dir, rules_file=rules_file)
    log.info("Made a self-signed certificate for %s", ", ".join(names))
    return pair


def install_operator_files(
    settings: dshub_settings.Settings,
    config_dir: Path = CONFIG_DIR,
    tls_dir: Path = TLS_DIR,
    rules_file: Path = TLS_RULES_FILE,
) -> tuple[Path, Path]:
    """The operator's pair (DSHUB_TLS=files), checked and copied for Traefik.

    An expired certificate, or a key that is not the certificate's, is refused:
    the pair served now is better than either.
    """
    cert_pem = (config_dir / settings.tls_cert_file).read_bytes()
    key_pem = (config_dir / settings.tls_key_file).read_bytes()
    leaf = check_pair(cert_pem, key_pem)
    if leaf.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise CertificateError(f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    names = certificate_names(settings)
    if not _covers(leaf, names):
        # Served anyway: a name may be covered by a wildcard, or the operator is changing names.
        log.warning("The certificate in %s does not name all of %s", settings.tls_cert_file, ", ".join(names))
    return install_pair("operator", cert_pem, key_pem, tls_dir, rules_file)


def serve_operator_files(
    settings: dshub_settings.Settings,
    config_dir: Path = CONFIG_DIR,
    tls_dir: Path = TLS_DIR,
    rules_file: Path = TLS_RULES_FILE,
) -> bool:
    """Install the operator's pair and point Traefik at it; whether that changed what is served."""
    pair = install_operator_files(settings, config_dir, tls_dir, rules_file)
    if pair == named_pair(rules_file):
        return False
    write_rules(edge_rules(settings, pair), rules_file)
    return True


def write_rules(rules: dict[str, Any], path: Path = TLS_RULES_FILE) -> None:
    """Write aside and move in: Traefik loads each whole file once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(rules, f, sort_keys=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _write_config(path: Path, config: dict[str, Any]) -> None:
    aside = path.with_suffix(".tmp")
    aside.write_text(yaml.safe_dump(config, sort_keys=False))
    aside.chmod(0o644)
    aside.replace(path)


def prepare(settings: dshub_settings.Settings) -> None:
    """Everything Traefik needs before it starts (the edge-init service)."""
    EDGE_DIR.mkdir(parents=True, exist_ok=True)
    _write_config(STATIC_CONFIG_FILE, static_config(settings))
    if settings.swarm_forwarder:
        forwarder_static, forwarder_rules = forwarder_config()
        _write_config(FORWARDER_CONFIG_FILE, forwarder_static)
        _write_config(FORWARDER_RULES_FILE, forwarder_rules)
    if settings.tls == "self-signed":
        write_rules(edge_rules(settings, ensure_self_signed(settings)))
    elif settings.tls == "files":
        write_rules(edge_rules(settings, install_operator_files(settings)))
    elif settings.tls == "acme" or settings.trusted_proxies:
        write_rules(edge_rules(settings, None))
    else:
        TLS_RULES_FILE.unlink(missing_ok=True)


def follow_operator_files(settings: dshub_settings.Settings) -> None:
    """DSHUB_TLS=files: serve a new pair soon after the operator puts it in place (in the hub)."""

    def loop() -> None:
        while True:
            time.sleep(FILES_CHECK_SECONDS)
            try:
                if serve_operator_files(settings):
                    log.info("Serving the new certificate from %s", settings.tls_cert_file)
            except (OSError, CertificateError) as e:
                # Half-copied by the operator, say: the pair served now stays.
                log.error("Keeping the certificate served now: %s: %s", settings.tls_cert_file, e)
            except Exception:  # the watcher must outlive any surprise; the next look tries again
                log.exception("Could not check %s", settings.tls_cert_file)

    threading.Thread(target=loop, name="dshub-tls-files", daemon=True).start()


def forget_certificates(storage: Path = ACME_STORAGE) -> int:
    """Drop the ACME certificates (the account stays), so Traefik orders new ones at its next start."""
    if not storage.exists():
        return 0
    state = json.loads(storage.read_text() or "{}")
    dropped = 0
    for resolver in state.values():
        dropped += len(resolver.get("Certificates") or [])
        resolver["Certificates"] = []
    owner = storage.stat()
    fd, tmp = tempfile.mkstemp(dir=storage.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
    os.chown(tmp, owner.st_uid, owner.st_gid)
    os.chmod(tmp, 0o600)
    os.replace(tmp, storage)
    return dropped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.hub.edge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="write Traefik's static configuration and TLS material (edge-init)")
    sub.add_parser("forget-certificates", help="drop ACME certificates so the next start orders new ones")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="dshub edge: %(message)s")
    if args.command == "forget-certificates":
        dropped = forget_certificates()
        print(f"dshub: dropped {dropped} certificate(s); the proxy orders new ones at its start")
        return 0
    try:
        prepare(dshub_settings.load())
    except (dshub_settings.SettingsError, CertificateError, OSError) as e:
        print(f"dshub: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
