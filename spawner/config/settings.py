"""Every deployment setting of dshub, typed and validated in one place.

Settings come from the environment (``DSHUB_*``), which compose fills from the
operator's ``.env`` after ``python -m spawner.cli.settings render`` validated it, so
a typo or a bad value stops ``make up`` before anything starts, with a message that
names the setting and the fix.

The table ``SETTINGS`` is the single source of truth: the parser, the validation
and the settings reference (``.env.example``, checked by a unit test) all come
from it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from spawner.core.constants import VERSION
from spawner.core.names import USERNAME_PATTERN, USERNAME_RULE
from spawner.core.units import (
    CPU_MAX,
    CPU_MIN,
    DISK_MAX,
    DISK_MIN,
    MEMORY_MIN,
    PIDS_MAX,
    PIDS_MIN,
    parse_size,
)

PREFIX = "DSHUB_"
REPO_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """A setting is missing, unknown or malformed. The message names it and the fix."""


@dataclass(frozen=True)
class Setting:
    """One setting. An empty default makes it optional: unset means ``empty``."""

    name: str
    default: str
    help: str
    parse: Callable[[str, str], Any]
    empty: Any = None


def _str(pattern: str, what: str) -> Callable[[str, str], str]:
    compiled = re.compile(pattern)

    def parse(name: str, raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise SettingsError(f"{name}={raw!r} is not {what}.")
        return raw

    return parse


def _int(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw, 10)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a whole number.") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={value} is out of range: use {low}..{high}.")
        return value

    return parse


def _cpu(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of CPUs (e.g. 1 or 0.5).") from None
    if not CPU_MIN <= value <= CPU_MAX:
        raise SettingsError(f"{name}={raw!r} is out of range: use {CPU_MIN}..{CPU_MAX} CPUs.")
    return value


def parse_memory(name: str, raw: str) -> int:
    """Bytes, from docker's notation (512M, 2G)."""
    value = parse_size(raw)
    if value is None:
        raise SettingsError(f"{name}={raw!r} is not a memory size: write e.g. 512M or 2G.")
    if value < MEMORY_MIN:
        raise SettingsError(f"{name}={raw!r} is below the 64M a Jupyter server needs.")
    return value


def parse_disk_size(name: str, raw: str) -> int:
    """Bytes of a disk quota, in docker's notation (500M, 10G, 1T): 1M to 1024T."""
    value = parse_size(raw)
    if value is None:
        raise SettingsError(f"{name}={raw!r} is not a disk size: write e.g. 500M, 10G or 1T.")
    if not DISK_MIN <= value <= DISK_MAX:
        raise SettingsError(f"{name}={raw!r} is out of range: use 1M..1024T.")
    return value


def _disk_quota(name: str, raw: str) -> int | None:
    """A quota, or None for none (written `none` or 0)."""
    return None if raw in ("none", "0") else parse_disk_size(name, raw)


def _ip(name: str, raw: str) -> str:
    try:
        # No IPv6 zone id (%eth0): it may hold any character, quotes included.
        if "%" in raw:
            raise ValueError(raw)
        ipaddress.ip_address(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an IP address (e.g. 127.0.0.1).") from None
    return raw


def _subnet(name: str, raw: str) -> str:
    try:
        network = ipaddress.IPv4Network(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an IPv4 network (e.g. 10.231.255.0/27).") from None
    if not 8 <= network.prefixlen <= 28:
        raise SettingsError(f"{name}={raw!r}: give a network of /8 to /28 (at least 16 addresses).")
    return str(network)


def _abs_path(name: str, raw: str) -> Path:
    path = Path(raw)
    # Braces too: DockerSpawner fills {placeholders} in the host config it is given.
    if not path.is_absolute() or ".." in path.parts or re.search(r"[\s'\"\\$`{}]", raw):
        raise SettingsError(
            f"{name}={raw!r} must be an absolute path without '..', spaces, quotes or braces."
        )
    return path


def _mounted_path(name: str, raw: str) -> Path:
    """A host path compose mounts with its short syntax, where ':' and ',' mean something."""
    path = _abs_path(name, raw)
    if re.search(r"[:,]", raw):
        raise SettingsError(f"{name}={raw!r} must not hold ':' or ',' (compose reads them in a mount).")
    return path


def _url(name: str, raw: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[^\s'\"\\]*)?", raw):
        raise SettingsError(f"{name}={raw!r} is not an http(s) URL.")
    return raw


_IDP_URL = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]+)?(/[^\s'\"\\]*)?")
# The development provider as the hub reaches it (compose/dev-oidc.yaml).
DEV_PROVIDER_HOST = "oidc"


def _idp_url(name: str, raw: str) -> str:
    """An identity provider's URL: https, plain http only to this machine or the dev provider.

    Sign-in codes, tokens and the claims that decide who is admin travel over these.
    """
    try:
        parts = urlsplit(raw) if _IDP_URL.fullmatch(raw) else None
    except ValueError:  # a bracketed host that is no IPv6 address
        parts = None
    if parts is None:
        raise SettingsError(f"{name}={raw!r} is not an http(s) URL.")
    if parts.scheme == "https" or _loopback_or_dev_provider(parts.hostname or ""):
        return raw
    raise SettingsError(
        f"{name}={raw!r} uses plain http, which would carry sign-in codes and tokens unencrypted: "
        f"use {'https' + raw[len('http') :]!r}. Plain http is accepted only for localhost, "
        f"127.0.0.0/8, ::1 and the development provider's service name {DEV_PROVIDER_HOST!r}."
    )


def _loopback_or_dev_provider(host: str) -> bool:
    if host in ("localhost", DEV_PROVIDER_HOST):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"{name}={raw!r} is not one of: {', '.join(choices)}.")
        return raw

    return parse


def _bool(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not true or false.")


def _list(pattern: str, what: str) -> Callable[[str, str], tuple[str, ...]]:
    """Comma-separated items, each matching ``pattern``."""
    item = _str(pattern, what)

    def parse(name: str, raw: str) -> tuple[str, ...]:
        items = tuple(part.strip() for part in raw.split(",") if part.strip())
        for part in items:
            item(name, part)
        if len(set(items)) != len(items):
            raise SettingsError(f"{name}={raw!r} lists an item twice.")
        return items

    return parse


def _egress(name: str, raw: str) -> tuple[str, ...]:
    """public, all, none, or comma-separated IPv4 networks (each written with its prefix)."""
    if raw in ("public", "all", "none"):
        return (raw,)
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        try:
            network = ipaddress.IPv4Network(part, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r}: {part!r} is not an IPv4 address or network; use public, all, none, "
                "or a comma-separated list such as 203.0.113.0/24,198.51.100.7."
            ) from None
        networks.append(str(network))
    return tuple(networks)


def _ipv4_networks(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated IPv4 networks (firewall rules: the deployment's networks are IPv4)."""
    networks = []
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        try:
            networks.append(str(ipaddress.IPv4Network(part, strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r}: {part!r} is not an IPv4 address or network (e.g. 10.0.0.0/24)."
            ) from None
    return tuple(networks)


def _networks(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated IPv4/IPv6 addresses or networks, none of them everyone."""
    networks = []
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r}: {part!r} is not an IP address or network (e.g. 10.0.0.5 or 192.0.2.0/24)."
            ) from None
        if network.prefixlen == 0:
            raise SettingsError(
                f"{name}={raw!r}: {part!r} is every address, so anyone could forge their address: "
                "name the terminator's own address or network."
            )
        networks.append(str(network))
    return tuple(networks)


def _secret(name: str, raw: str) -> str:
    if len(raw) < 8 or any(ch.isspace() or ch in "'\"\\" for ch in raw):
        raise SettingsError(
            f"{name} must be at least 8 characters without spaces, quotes or backslashes (value not shown)."
        )
    return raw


# uids and gids: never a system id, always a valid Linux id.
_ID = _int(1000, 2**31 - 2)

IMAGE_PATTERN = r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?"
# Names as identity providers spell them (GitHub org:team, GitLab group/subgroup, ...).
IDP_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@:/ -]{0,127}"
DOMAIN_PATTERN = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+"
TLS_MODES = ("off", "self-signed", "files", "acme")
# A file inside DSHUB_CONFIG_DIR: no absolute path, no '..', nothing a shell or compose reads.
CONFIG_FILE_PATTERN = r"(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*"
MODES = ("single-host", "swarm")
AUTHENTICATORS = ("local", "github", "gitlab", "google", "azuread", "generic")

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DSHUB_PROJECT",
        "dshub",
        "Name of this deployment: prefix of its containers, networks and volumes, "
        "and the label value that `make down`/`make clean` and the tests select by.",
        _str(r"[a-z][a-z0-9-]{0,29}", "a lowercase name (letters, digits, '-'; max 30)"),
    ),
    Setting(
        "DSHUB_MODE",
        "single-host",
        "single-host: the hub starts each user's server as a container on this machine's engine "
        "(make up). swarm: as a service of the Docker Swarm this machine manages, on whichever node "
        "has room, with the same uid, files, limits and profiles (make swarm-up; docs/scale-out.md).",
        _choice(*MODES),
    ),
    Setting(
        "DSHUB_SWARM_EDGE_SUBNET",
        "10.231.255.0/27",
        "Swarm mode with a loopback DSHUB_BIND_ADDRESS: the overlay network between the local "
        "forwarder that publishes the edge on this machine and Traefik; Traefik believes the "
        "client addresses the forwarder passes on only from it. Change it if it overlaps a network "
        "of yours.",
        _subnet,
    ),
    Setting(
        "DSHUB_SWARM_NODE_NETWORKS",
        "",
        "Swarm mode: comma-separated IPv4 networks of the swarm's nodes and the pool's file server "
        "(e.g. 10.0.0.0/24). Users' servers never reach them, whatever DSHUB_USER_EGRESS allows. "
        "Besides these, each node's agent closes what it can see itself: the node, the managers, "
        "the nodes on the users' network and the NFS servers it mounts from; name the networks to "
        "close the rest too (other machines there).",
        _ipv4_networks,
        empty=(),
    ),
    Setting(
        "DSHUB_SWARM_ENCRYPT",
        "true",
        "Swarm mode: encrypt the overlay networks between nodes (IPsec; the nodes must let IP "
        "protocol 50 pass between them). false only on a network of the nodes' own that nobody "
        "else can reach or listen on: the edge talks plain http to users' servers over it.",
        _bool,
    ),
    Setting(
        "DSHUB_BIND_ADDRESS",
        "127.0.0.1",
        "Host address the edge proxy listens on. 127.0.0.1 keeps the hub local; "
        "use 0.0.0.0 (with TLS in front) to serve a network.",
        _ip,
    ),
    Setting(
        "DSHUB_HTTP_PORT",
        "8000",
        "Host port the edge proxy publishes.",
        _int(1, 65535),
    ),
    Setting(
        "DSHUB_POOL_DIR",
        str(REPO_ROOT / "data" / "pool"),
        "Absolute host path of the data pool: users' files live in <pool>/users/<name>. "
        "Default: data/pool in the checkout (git-ignored).",
        _mounted_path,
    ),
    Setting(
        "DSHUB_PUBLIC_URL",
        "",
        "URL people open, as their browser sees it (e.g. https://hub.example.edu). "
        "Default: http://<DSHUB_BIND_ADDRESS>:<DSHUB_HTTP_PORT>. OAuth callbacks are built from it.",
        _url,
    ),
    Setting(
        "DSHUB_USER_SUBDOMAINS",
        "false",
        "true: each user's server gets an origin of its own, <user>.<host of DSHUB_PUBLIC_URL> "
        "(e.g. ada.hub.example.edu), and the hub keeps its host to itself, so a script in a server "
        "shared with you can never act as you on the hub. Needs DSHUB_PUBLIC_URL with a host name, "
        "a wildcard DNS record *.<that host> and, for https, a wildcard certificate: see "
        "docs/operating.md, Per-user origins. Recommended wherever you can have those.",
        _bool,
    ),
    Setting(
        "DSHUB_TLS",
        "off",
        "How the edge proxy serves https. acme: certificates from an ACME CA (Let's Encrypt by "
        "default), renewed automatically; needs DSHUB_PUBLIC_URL with the hub's DNS name, reachable "
        "from the CA on DSHUB_HTTP_PORT 80 (or DSHUB_HTTPS_PORT 443 with DSHUB_ACME_CHALLENGE=tls). "
        "files: your certificate and key (DSHUB_TLS_CERT_FILE, DSHUB_TLS_KEY_FILE), reloaded when "
        "they change. self-signed: a certificate made once, for trials and internal networks. "
        "With TLS on, plain http only redirects to https. off: plain http, allowed only with a "
        "loopback DSHUB_BIND_ADDRESS or behind a TLS terminator named in DSHUB_TRUSTED_PROXIES. "
        "See docs/production.md.",
        _choice(*TLS_MODES),
    ),
    Setting(
        "DSHUB_HTTPS_PORT",
        "8443",
        "Host port the edge proxy serves https on (with DSHUB_TLS other than off); 443 in production.",
        _int(1, 65535),
    ),
    Setting(
        "DSHUB_TLS_CERT_FILE",
        "tls/fullchain.pem",
        "DSHUB_TLS=files: the certificate chain (PEM), a path inside DSHUB_CONFIG_DIR. The hub "
        "checks it every 10 seconds and the proxy serves a new one without a restart.",
        _str(CONFIG_FILE_PATTERN, "a relative path inside DSHUB_CONFIG_DIR (letters, digits, ._-/)"),
    ),
    Setting(
        "DSHUB_TLS_KEY_FILE",
        "tls/privkey.pem",
        "DSHUB_TLS=files: the certificate's private key (PEM), a path inside DSHUB_CONFIG_DIR; it "
        "may stay readable by root only.",
        _str(CONFIG_FILE_PATTERN, "a relative path inside DSHUB_CONFIG_DIR (letters, digits, ._-/)"),
    ),
    Setting(
        "DSHUB_ACME_CA_SERVER",
        "https://acme-v02.api.letsencrypt.org/directory",
        "DSHUB_TLS=acme: the ACME directory URL. Let's Encrypt's staging directory "
        "(https://acme-staging-v02.api.letsencrypt.org/directory) is good for a first try.",
        _url,
    ),
    Setting(
        "DSHUB_ACME_EMAIL",
        "",
        "DSHUB_TLS=acme: contact address for the ACME account (expiry notices); optional.",
        _str(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "an e-mail address"),
    ),
    Setting(
        "DSHUB_ACME_CHALLENGE",
        "http",
        "DSHUB_TLS=acme: how the CA checks the name. http (HTTP-01): the CA connects to port 80, "
        "so DSHUB_HTTP_PORT must be reachable as port 80. tls (TLS-ALPN-01): port 443 only.",
        _choice("http", "tls"),
    ),
    Setting(
        "DSHUB_ACME_CA_CERTIFICATE",
        "",
        "DSHUB_TLS=acme with a private ACME CA (step-ca, a test CA): absolute host path of the PEM "
        "certificate that the ACME directory's own https is signed with. Empty: the system's CAs.",
        _mounted_path,
    ),
    Setting(
        "DSHUB_HSTS_SECONDS",
        "31536000",
        "Strict-Transport-Security max-age sent with https (acme and files; never with a "
        "self-signed certificate, which browsers would then refuse to let anyone click through). "
        "0 sends none.",
        _int(0, 2 * 365 * 24 * 3600),
    ),
    Setting(
        "DSHUB_TRUSTED_PROXIES",
        "",
        "Comma-separated addresses or networks (e.g. 10.0.0.5,192.0.2.0/24) of a TLS terminator or "
        "load balancer in front of dshub: only from these are X-Forwarded-For/-Proto believed, so "
        "sign-in throttling and logs see the browser's address. Needed for DSHUB_TLS=off on a "
        "non-loopback DSHUB_BIND_ADDRESS. Empty: forwarded headers from anyone are replaced.",
        _networks,
        empty=(),
    ),
    Setting(
        "DSHUB_ADMIN_USERS",
        "",
        "Comma-separated admins. With local sign-in the default is 'admin', whose initial "
        "password is generated on first start (`make admin-password`). With OAuth: usernames "
        "as the provider gives them; no default.",
        _list(USERNAME_PATTERN, f"a lowercase username ({USERNAME_RULE})"),
        empty=(),
    ),
    Setting(
        "DSHUB_AUTHENTICATOR",
        "local",
        "How people sign in. local: the built-in user list (admins add users, a new user sets "
        "a password at first sign-in). github, gitlab, google, azuread, generic (any OpenID "
        "Connect provider): OAuth, see docs/auth.md.",
        _choice(*AUTHENTICATORS),
    ),
    Setting(
        "DSHUB_OAUTH_CLIENT_ID",
        "",
        "OAuth client id from the provider's app registration (required with OAuth).",
        # No quote: the rendered settings file quotes values with "'".
        _str(r"[!-&(-\[\]-~]{1,256}", "a client id (printable, no spaces, quotes or backslashes)"),
    ),
    Setting(
        "DSHUB_OAUTH_CLIENT_SECRET",
        "",
        "OAuth client secret (required with OAuth). Keep .env private (chmod 600).",
        _secret,
    ),
    Setting(
        "DSHUB_OAUTH_CALLBACK_URL",
        "",
        "Redirect URL registered at the provider. Default: <DSHUB_PUBLIC_URL>/hub/oauth_callback.",
        _url,
    ),
    Setting(
        "DSHUB_OAUTH_ALLOWED_USERS",
        "",
        "Comma-separated usernames allowed to sign in with OAuth.",
        _list(IDP_NAME_PATTERN, "a username"),
        empty=(),
    ),
    Setting(
        "DSHUB_OAUTH_ALLOWED_GROUPS",
        "",
        "Comma-separated groups whose members may sign in: generic/azuread groups claim, "
        "GitHub organizations or org:team, GitLab groups. Not for google.",
        _list(IDP_NAME_PATTERN, "a group name"),
        empty=(),
    ),
    Setting(
        "DSHUB_OAUTH_ADMIN_GROUPS",
        "",
        "Comma-separated groups whose members are admins (generic, azuread, GitHub org:team).",
        _list(IDP_NAME_PATTERN, "a group name"),
        empty=(),
    ),
    Setting(
        "DSHUB_OAUTH_INSTRUCTORS_FROM_IDP",
        "false",
        "true: members of the provider's group named DSHUB_INSTRUCTORS_GROUP become instructors "
        "(they may write the course folder); only if nobody but you can create or join that "
        "group, see docs/auth.md. false: the provider's group of that name is ignored and "
        "instructors are made on the hub (make roster, admin page). For generic, azuread and GitHub teams.",
        _bool,
    ),
    Setting(
        "DSHUB_OAUTH_ALLOW_ALL",
        "false",
        "true lets every account of the provider in. With no allow rule and this false, "
        "only admins can sign in (fail closed).",
        _bool,
    ),
    Setting(
        "DSHUB_OAUTH_USERNAME_CLAIM",
        "",
        "Claim that becomes the username (generic, azuread, google). Default: "
        "preferred_username (google: email). An email claim is only used when email_verified is true.",
        _str(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", "a claim name"),
    ),
    Setting(
        "DSHUB_OAUTH_GROUPS_CLAIM",
        "groups",
        "Claim listing the user's groups (generic, azuread).",
        _str(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", "a claim name"),
    ),
    Setting(
        "DSHUB_OAUTH_SCOPES",
        "openid profile email",
        "Space-separated scopes requested from a generic provider.",
        _str(r"[!-&(-\[\]-~]+( [!-&(-\[\]-~]+)*", "space-separated scopes (no quotes or backslashes)"),
    ),
    Setting(
        "DSHUB_OAUTH_LOGIN_SERVICE",
        "",
        "Provider name on the login button. Default: GitHub, GitLab, Google, Microsoft Entra ID, "
        "or 'your organisation' for generic.",
        _str(r"[^\x00-\x1f<>'\"\\$`]{1,64}", "a short display name (no quotes, <, >, $)"),
    ),
    Setting(
        "DSHUB_OAUTH_LOGOUT_URL",
        "",
        "Where the browser goes after hub logout, to end the provider session too: a URL, or "
        "'idp' for the generic provider's end_session_endpoint. Default: the hub's login page.",
        lambda name, raw: raw if raw == "idp" else _url(name, raw),
    ),
    Setting(
        "DSHUB_OAUTH_PASS_TOKEN",
        "false",
        "true hands the user's OAuth access token to their server as OAUTH_ACCESS_TOKEN "
        "(e.g. to clone from the same GitLab).",
        _bool,
    ),
    Setting(
        "DSHUB_OIDC_ISSUER",
        "",
        "generic: issuer URL as the browser reaches it; endpoints come from its "
        "/.well-known/openid-configuration. This and the other provider URLs must be https "
        "(plain http only to localhost, 127.0.0.0/8, ::1 or the development provider 'oidc').",
        _idp_url,
    ),
    Setting(
        "DSHUB_OIDC_BACKCHANNEL_URL",
        "",
        "generic: the issuer URL as the hub container reaches it, when that differs from "
        "DSHUB_OIDC_ISSUER (e.g. an IdP in the same compose project).",
        _idp_url,
    ),
    Setting(
        "DSHUB_OAUTH_AUTHORIZE_URL",
        "",
        "generic without discovery: authorization endpoint (browser-facing).",
        _idp_url,
    ),
    Setting(
        "DSHUB_OAUTH_TOKEN_URL",
        "",
        "generic without discovery: token endpoint (reached by the hub).",
        _idp_url,
    ),
    Setting(
        "DSHUB_OAUTH_USERDATA_URL",
        "",
        "generic without discovery: userinfo endpoint (reached by the hub).",
        _idp_url,
    ),
    Setting(
        "DSHUB_GITLAB_URL",
        "https://gitlab.com",
        "gitlab: base URL of the GitLab instance (self-hosted or gitlab.com).",
        _idp_url,
    ),
    Setting(
        "DSHUB_GOOGLE_HOSTED_DOMAINS",
        "",
        "google: comma-separated Workspace domains whose accounts may sign in.",
        _list(DOMAIN_PATTERN, "a domain name"),
        empty=(),
    ),
    Setting(
        "DSHUB_AZUREAD_TENANT_ID",
        "",
        "azuread: the directory (tenant) id (required with azuread).",
        _str(r"[A-Za-z0-9.-]{1,64}", "a tenant id or domain"),
    ),
    Setting(
        "DSHUB_UID_MIN",
        "20000",
        "Lowest uid (and gid) given to a user. Each user gets their own, recorded as "
        "the owner of <pool>/users/<name>.",
        _ID,
    ),
    Setting(
        "DSHUB_UID_MAX",
        "59999",
        "Highest uid (and gid) given to a user.",
        _ID,
    ),
    Setting(
        "DSHUB_GID_MIN",
        "60000",
        "Lowest gid given to a group folder; the range must not overlap the users' uid range.",
        _ID,
    ),
    Setting(
        "DSHUB_GID_MAX",
        "64999",
        "Highest gid given to a group folder.",
        _ID,
    ),
    Setting(
        "DSHUB_GROUP_FOLDERS",
        "*",
        "Hub groups that get a shared folder <pool>/groups/<group>, mounted at /srv/groups/<group> "
        "for members (~/groups links there): '*' for every group, or a comma-separated list.",
        lambda name, raw: ("*",) if raw == "*" else _list(IDP_NAME_PATTERN, "a group name")(name, raw),
        empty=(),
    ),
    Setting(
        "DSHUB_INSTRUCTORS_GROUP",
        "instructors",
        "Hub group whose members may write <pool>/shared (course material, read-only for others).",
        _str(IDP_NAME_PATTERN, "a group name"),
    ),
    Setting(
        "DSHUB_USER_IMAGE",
        f"dshub/datascience:{VERSION}",
        "Image of user containers: dshub/datascience (JupyterLab, R, VS Code, RStudio when "
        "available) or the lean dshub/lab.",
        _str(IMAGE_PATTERN, "an image reference (name[:tag])"),
    ),
    Setting(
        "DSHUB_MEM_LIMIT",
        "2G",
        "Memory limit of each user container (docker notation: 512M, 2G).",
        parse_memory,
    ),
    Setting(
        "DSHUB_CPU_LIMIT",
        "1",
        "CPU limit of each user container, in CPUs (0.5 = half a core).",
        _cpu,
    ),
    Setting(
        "DSHUB_PIDS_LIMIT",
        "512",
        "Most processes and threads in one user container (stops fork bombs).",
        _int(PIDS_MIN, PIDS_MAX),
    ),
    Setting(
        "DSHUB_DISK_QUOTA",
        "",
        "Disk quota of each user's pool folder, shared by all their servers (e.g. 10G); empty or "
        "none: no quota. profiles.yaml may set another per group (limits.disk_per_group). The hub "
        "counts each folder: a warning at start and in JupyterLab above DSHUB_DISK_QUOTA_WARN, no "
        "new server above DSHUB_DISK_QUOTA_REFUSE; a hard limit with DSHUB_DISK_QUOTA_ENFORCE. "
        "See docs/profiles.md, Disk quotas.",
        _disk_quota,
    ),
    Setting(
        "DSHUB_DISK_QUOTA_WARN",
        "90",
        "Percent of their disk quota above which a user is warned (when their server starts and "
        "in JupyterLab).",
        _int(1, 100),
    ),
    Setting(
        "DSHUB_DISK_QUOTA_REFUSE",
        "110",
        "Percent of their disk quota above which no new server of the user starts (running "
        "servers keep running, so they can clean up).",
        _int(100, 1000),
    ),
    Setting(
        "DSHUB_DISK_QUOTA_ENFORCE",
        "off",
        "project: the quota service of the stack makes each user's quota a hard limit with the "
        "pool filesystem's project quotas (XFS mounted with prjquota, or ext4 with the project "
        "feature); writes beyond it fail. off: quotas are counted and shown, never enforced by "
        "the filesystem.",
        _choice("off", "project"),
    ),
    Setting(
        "DSHUB_NETWORK_POLICY",
        "on",
        "on: user containers reach only the hub's API and, as DSHUB_USER_EGRESS says, the "
        "outside world; never each other, Traefik, the host or metadata addresses (a service of "
        "the stack keeps the host firewall so; in swarm mode an agent on every node keeps each "
        "server's own). off: no policy (only for trials).",
        _bool,
    ),
    Setting(
        "DSHUB_USER_EGRESS",
        "public",
        "What user containers may reach beyond the host: public (everything but private, "
        "link-local and other non-public ranges), all, none, or comma-separated IPv4 networks, "
        "then the only destinations allowed (e.g. 10.1.2.3,10.8.0.0/16 for an internal mirror).",
        _egress,
    ),
    Setting(
        "DSHUB_MONITORING",
        "false",
        "true runs Prometheus with the stack (compose profile monitoring): the hub's metrics, "
        "Traefik's per-router requests and latency, each user server's CPU and memory. "
        "See docs/operating.md (Monitoring).",
        _bool,
    ),
    Setting(
        "DSHUB_PROMETHEUS_PORT",
        "9090",
        "Port on 127.0.0.1 where Prometheus's UI and API answer (with DSHUB_MONITORING=true).",
        _int(1, 65535),
    ),
    Setting(
        "DSHUB_SIGNIN_RATE",
        "20",
        "Requests per second one address may send to the sign-in page, enforced by the edge "
        "proxy before the hub sees them (bursts of twice that pass). A class behind one NAT "
        "address shares it: raise it for very large classes. 0 turns the limit off.",
        _int(0, 100000),
    ),
    Setting(
        "DSHUB_START_TIMEOUT",
        "120",
        "Seconds a user container may take to answer before the spawn fails.",
        _int(10, 3600),
    ),
    Setting(
        "DSHUB_CONFIG_DIR",
        str(REPO_ROOT / "config"),
        "Absolute host path of the operator's config files, mounted read-only into the hub. "
        "Its profiles.yaml (see docs/profiles.md) lists what users may choose at spawn; the hub "
        "re-reads it when it changes. Without that file there is one profile made of "
        "DSHUB_USER_IMAGE, DSHUB_MEM_LIMIT, DSHUB_CPU_LIMIT and DSHUB_PIDS_LIMIT.",
        _mounted_path,
    ),
    Setting(
        "DSHUB_CULL_IDLE_TIMEOUT",
        "3600",
        "Seconds without activity (notebooks, terminals, RStudio, VS Code) after which a "
        "user's server is stopped by the idle culler; 0 turns culling off. Files are kept.",
        lambda name, raw: 0 if raw == "0" else _int(30, 30 * 24 * 3600)(name, raw),
    ),
    Setting(
        "DSHUB_CULL_MAX_AGE",
        "0",
        "Seconds after which a server is stopped even when active (e.g. 43200 for 12 h); 0: no limit.",
        lambda name, raw: 0 if raw == "0" else _int(60, 365 * 24 * 3600)(name, raw),
    ),
    Setting(
        "DSHUB_LOG_LEVEL",
        "INFO",
        "Log level of the hub and the proxy.",
        _choice("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Setting(
        "DSHUB_BASE_IMAGE",
        "debian:trixie-slim",
        "Debian image all dshub images build FROM. Pulled if a registry is reachable, "
        "otherwise made locally with debootstrap under this name.",
        _str(IMAGE_PATTERN, "an image reference (name[:tag])"),
    ),
    Setting(
        "DSHUB_DEBIAN_SUITE",
        "trixie",
        "Debian suite debootstrap uses to make the base image.",
        _str(r"[a-z]+", "a Debian suite name (e.g. trixie)"),
    ),
    Setting(
        "DSHUB_DEBIAN_MIRROR",
        "",
        "Debian mirror debootstrap makes the base image from (only when DSHUB_BASE_IMAGE cannot be "
        "pulled); apt in the image builds then uses it too. Default: the mirror the host's own apt "
        "uses (its first Debian `deb` entry in /etc/apt/sources.list and sources.list.d/), through "
        "the host apt's proxy if it has one (Acquire::http::Proxy).",
        _url,
    ),
    Setting(
        "DSHUB_BUILD_CA_BUNDLE",
        "/etc/ssl/certs/ca-certificates.crt",
        "Host CA bundle handed to image builds as a BuildKit secret, so pip and npm "
        "work behind a TLS-intercepting proxy. Never stored in an image.",
        _abs_path,
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Validated settings; attribute names are the setting names without the prefix."""

    values: Mapping[str, Any] = field(default_factory=dict)
    # Canonical text of each setting, as rendered for compose and the hub.
    raw: Mapping[str, str] = field(default_factory=dict)

    def __getattr__(self, attr: str) -> Any:
        try:
            return self.values[PREFIX + attr.upper()]
        except KeyError:
            raise AttributeError(attr) from None

    @property
    def network(self) -> str:
        return f"{self.project}-users"

    @property
    def swarm_forwarder(self) -> bool:
        """Swarm mode on loopback: a local forwarder publishes the edge (swarm cannot bind one address)."""
        return self.mode == "swarm" and ipaddress.ip_address(self.bind_address).is_loopback

    @property
    def oauth(self) -> bool:
        return self.authenticator != "local"

    @property
    def subdomain_host(self) -> str:
        """JupyterHub.subdomain_host: the hub's scheme://host[:port]; empty without per-user origins."""
        if not self.user_subdomains:
            return ""
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc.lower()}"

    def as_env(self) -> dict[str, str]:
        return dict(self.raw)


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, '#' comments, optional quotes: the subset compose reads the same."""
    result: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingsError(f"{path}:{lineno}: expected KEY=value, got {line!r}.")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        result[key] = value
    return result


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Validate every DSHUB_* variable; reject unknown ones; fill in defaults."""
    environ = os.environ if environ is None else environ
    errors: list[str] = []
    for key in sorted(environ):
        if key.startswith(PREFIX) and key not in _BY_NAME:
            close = [n for n in _BY_NAME if n.split("_", 1)[1][:4] == key.split("_", 1)[1][:4]]
            hint = f" Did you mean {close[0]}?" if close else ""
            errors.append(f"{key} is not a dshub setting.{hint} See .env.example for the list.")
    values: dict[str, Any] = {}
    raw_values: dict[str, str] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.name, "").strip() or setting.default
        raw_values[setting.name] = raw
        if raw == "":
            values[setting.name] = setting.empty
            continue
        try:
            values[setting.name] = setting.parse(setting.name, raw)
        except SettingsError as e:
            errors.append(f"{e} {setting.name}: {setting.help}")
    if not errors:
        errors.extend(_check_combinations(values, environ))
    if errors:
        raise SettingsError("invalid dshub settings:\n  " + "\n  ".join(errors))
    _derive(values, raw_values)
    return Settings(values, raw_values)


def _check_combinations(values: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    errors = []
    if values["DSHUB_UID_MIN"] >= values["DSHUB_UID_MAX"]:
        errors.append("DSHUB_UID_MIN must be below DSHUB_UID_MAX: widen the uid range.")
    if values["DSHUB_GID_MIN"] >= values["DSHUB_GID_MAX"]:
        errors.append("DSHUB_GID_MIN must be below DSHUB_GID_MAX: widen the gid range.")
    elif not (
        values["DSHUB_GID_MAX"] < values["DSHUB_UID_MIN"] or values["DSHUB_GID_MIN"] > values["DSHUB_UID_MAX"]
    ):
        errors.append(
            "DSHUB_GID_MIN..DSHUB_GID_MAX overlaps DSHUB_UID_MIN..DSHUB_UID_MAX: separate the ranges."
        )
    if values["DSHUB_USER_SUBDOMAINS"]:
        errors.extend(_subdomain_problems(values["DSHUB_PUBLIC_URL"]))
    errors.extend(_tls_problems(values, environ))
    if values["DSHUB_MODE"] == "swarm":
        errors.extend(_swarm_problems(values))
    if values["DSHUB_CULL_MAX_AGE"] and not values["DSHUB_CULL_IDLE_TIMEOUT"]:
        errors.append("DSHUB_CULL_MAX_AGE needs the culler: set DSHUB_CULL_IDLE_TIMEOUT above 0.")
    kind = values["DSHUB_AUTHENTICATOR"]
    oauth_only = [
        s.name
        for s in SETTINGS
        if (s.name.startswith(("DSHUB_OAUTH_", "DSHUB_OIDC_", "DSHUB_GOOGLE_", "DSHUB_AZUREAD_")))
        and environ.get(s.name, "").strip() not in ("", s.default)
    ]
    if kind == "local":
        if oauth_only:
            errors.append(
                f"{', '.join(oauth_only)} only apply to OAuth sign-in, but DSHUB_AUTHENTICATOR=local: "
                "set DSHUB_AUTHENTICATOR (github, gitlab, google, azuread, generic) or remove them."
            )
        return errors
    for required in ("DSHUB_OAUTH_CLIENT_ID", "DSHUB_OAUTH_CLIENT_SECRET"):
        if values[required] is None:
            errors.append(f"{required} is required with DSHUB_AUTHENTICATOR={kind}: see docs/auth.md.")
    if kind == "generic":
        endpoints = ("DSHUB_OAUTH_AUTHORIZE_URL", "DSHUB_OAUTH_TOKEN_URL", "DSHUB_OAUTH_USERDATA_URL")
        explicit = [e for e in endpoints if values[e]]
        if values["DSHUB_OIDC_ISSUER"] and explicit:
            errors.append(f"set either DSHUB_OIDC_ISSUER or {', '.join(endpoints)}, not both.")
        elif not values["DSHUB_OIDC_ISSUER"] and len(explicit) != len(endpoints):
            errors.append(
                "DSHUB_AUTHENTICATOR=generic needs DSHUB_OIDC_ISSUER (discovery) "
                f"or all of {', '.join(endpoints)}."
            )
        if values["DSHUB_OIDC_BACKCHANNEL_URL"] and not values["DSHUB_OIDC_ISSUER"]:
            errors.append("DSHUB_OIDC_BACKCHANNEL_URL only works together with DSHUB_OIDC_ISSUER.")
    elif values["DSHUB_OAUTH_LOGOUT_URL"] == "idp":
        errors.append("DSHUB_OAUTH_LOGOUT_URL=idp needs DSHUB_AUTHENTICATOR=generic; give a URL instead.")
    if kind == "azuread" and not values["DSHUB_AZUREAD_TENANT_ID"]:
        errors.append("DSHUB_AZUREAD_TENANT_ID is required with DSHUB_AUTHENTICATOR=azuread.")
    if kind == "google" and values["DSHUB_OAUTH_ALLOWED_GROUPS"]:
        errors.append(
            "DSHUB_OAUTH_ALLOWED_GROUPS is not supported with google (Google groups need a "
            "Workspace service account): use DSHUB_GOOGLE_HOSTED_DOMAINS or DSHUB_OAUTH_ALLOWED_USERS."
        )
    if kind in ("gitlab", "google") and values["DSHUB_OAUTH_ADMIN_GROUPS"]:
        errors.append(f"DSHUB_OAUTH_ADMIN_GROUPS is not supported with {kind}: use DSHUB_ADMIN_USERS.")
    # Where these settings are matched against synced groups, the ignored instructors
    # group would silently never match.
    synced = {
        "generic": ("DSHUB_OAUTH_ADMIN_GROUPS", "DSHUB_OAUTH_ALLOWED_GROUPS"),
        "azuread": ("DSHUB_OAUTH_ADMIN_GROUPS", "DSHUB_OAUTH_ALLOWED_GROUPS"),
        "github": ("DSHUB_OAUTH_ADMIN_GROUPS",),
    }
    instructors = values["DSHUB_INSTRUCTORS_GROUP"]
    for name in () if values["DSHUB_OAUTH_INSTRUCTORS_FROM_IDP"] else synced.get(kind, ()):
        if instructors in values[name]:
            errors.append(
                f"{name} names {instructors!r} (DSHUB_INSTRUCTORS_GROUP), a group that is ignored from "
                "the provider while DSHUB_OAUTH_INSTRUCTORS_FROM_IDP=false: set that to true (its "
                "members then are instructors too) or name another group."
            )
    for name in ("DSHUB_OIDC_ISSUER", "DSHUB_OIDC_BACKCHANNEL_URL"):
        if values[name] and values[name].endswith("/"):
            errors.append(f"{name} must not end with '/': write it as the issuer claim does.")
    return errors


def _swarm_problems(values: dict[str, Any]) -> list[str]:
    problems = []
    bind = ipaddress.ip_address(values["DSHUB_BIND_ADDRESS"])
    if not (bind.is_loopback or bind.is_unspecified):
        problems.append(
            f"DSHUB_BIND_ADDRESS={bind} with DSHUB_MODE=swarm: a swarm publishes ports on all of a "
            "node's addresses or (through a local forwarder) on loopback only: use 0.0.0.0 and a "
            "firewall, or 127.0.0.1 behind a terminator (docs/scale-out.md)."
        )
    if values["DSHUB_DISK_QUOTA_ENFORCE"] == "project":
        problems.append(
            "DSHUB_DISK_QUOTA_ENFORCE=project does not work with DSHUB_MODE=swarm yet (the quota "
            "service marks folders on one host's filesystem): set the pool's quotas on the file "
            "server, or use DSHUB_DISK_QUOTA without enforcement."
        )
    return problems


# Settings that mean something only in one DSHUB_TLS mode.
_TLS_MODE_SETTINGS = {
    "files": ("DSHUB_TLS_CERT_FILE", "DSHUB_TLS_KEY_FILE"),
    "acme": ("DSHUB_ACME_CA_SERVER", "DSHUB_ACME_EMAIL", "DSHUB_ACME_CHALLENGE", "DSHUB_ACME_CA_CERTIFICATE"),
}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _tls_problems(values: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Plain http only where nobody can listen in; https with what each mode needs."""
    tls = values["DSHUB_TLS"]
    bind = ipaddress.ip_address(values["DSHUB_BIND_ADDRESS"])
    public = values["DSHUB_PUBLIC_URL"]
    problems = []
    for mode, names in _TLS_MODE_SETTINGS.items():
        given = [n for n in names if environ.get(n, "").strip() not in ("", _BY_NAME[n].default)]
        if given and tls != mode:
            problems.append(f"{', '.join(given)} only apply to DSHUB_TLS={mode}, but DSHUB_TLS={tls}.")
    if public is None and bind.is_unspecified:
        problems.append(
            f"DSHUB_BIND_ADDRESS={bind} listens on every address, so the hub cannot tell its own "
            "address: set DSHUB_PUBLIC_URL to the URL people open (e.g. https://hub.example.edu)."
        )
    if tls == "off":
        if values["DSHUB_TRUSTED_PROXIES"]:
            if public is None or not public.startswith("https://"):
                problems.append(
                    "DSHUB_TRUSTED_PROXIES says a TLS terminator stands in front of dshub: set "
                    "DSHUB_PUBLIC_URL to the https URL it serves (e.g. https://hub.example.edu)."
                )
        elif not bind.is_loopback:
            problems.append(
                f"DSHUB_TLS=off serves plain http, and DSHUB_BIND_ADDRESS={bind} is not a loopback "
                "address: passwords and cookies would cross the network readable by anyone on the "
                "way. Set DSHUB_TLS=acme (or files, or self-signed), or, if a TLS terminator stands "
                "in front of dshub, name its address in DSHUB_TRUSTED_PROXIES."
            )
        return problems
    if public is not None and not public.startswith("https://"):
        problems.append(
            f"DSHUB_TLS={tls} serves https: DSHUB_PUBLIC_URL={public!r} must start with https://."
        )
    if values["DSHUB_HTTPS_PORT"] == values["DSHUB_HTTP_PORT"]:
        problems.append(
            "DSHUB_HTTPS_PORT and DSHUB_HTTP_PORT are the same port: give https a port of its own."
        )
    if tls == "acme":
        host = urlsplit(public).hostname if public else None
        if host is None or not re.fullmatch(DOMAIN_PATTERN, host) or _is_ip(host):
            problems.append(
                "DSHUB_TLS=acme needs DSHUB_PUBLIC_URL with the hub's DNS name (e.g. "
                "https://hub.example.edu): an ACME CA certifies names, not addresses."
            )
        if values["DSHUB_USER_SUBDOMAINS"]:
            problems.append(
                "DSHUB_TLS=acme cannot cover per-user origins (DSHUB_USER_SUBDOMAINS=true): every "
                "user's host would need a certificate of its own. Use DSHUB_TLS=files with a "
                "wildcard certificate for the hub's name and *.<that name>."
            )
    return problems


# Room for a 63-character user label and its dot within DNS's 253 characters.
_MAX_HUB_HOST = 253 - 64


def _subdomain_problems(public_url: str | None) -> list[str]:
    """Per-user origins live below the hub's host name: DSHUB_PUBLIC_URL must give one."""
    fix = (
        "set DSHUB_PUBLIC_URL to the address people open, with the hub's own host name "
        "(e.g. https://hub.example.edu; http://hub.localhost:8000 to try it on this machine)"
    )
    if public_url is None:
        return [f"DSHUB_USER_SUBDOMAINS=true needs DSHUB_PUBLIC_URL: {fix}."]
    parts = urlsplit(public_url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [
            f"DSHUB_USER_SUBDOMAINS=true: DSHUB_PUBLIC_URL={public_url!r} is an IP address, "
            f"and users' servers need names below the hub's: {fix}."
        ]
    problems = []
    if not re.fullmatch(DOMAIN_PATTERN, host):
        problems.append(
            f"DSHUB_USER_SUBDOMAINS=true: the host of DSHUB_PUBLIC_URL={public_url!r} is not a name of "
            f"at least two labels (browsers and cookies need that for the users' names below it): {fix}."
        )
    elif len(host) > _MAX_HUB_HOST:
        problems.append(
            f"DSHUB_USER_SUBDOMAINS=true: the host of DSHUB_PUBLIC_URL is {len(host)} characters long; "
            f"users' host names add up to 64 more and DNS allows 253: use a name of at most {_MAX_HUB_HOST}."
        )
    if parts.path not in ("", "/"):
        problems.append(
            f"DSHUB_USER_SUBDOMAINS=true: DSHUB_PUBLIC_URL={public_url!r} has a path; with per-user "
            "origins the hub is served at the root of its own host: remove the path."
        )
    return problems


def _default_public_url(values: dict[str, Any]) -> str:
    """The bind address and the port served: fine for a hub on this machine."""
    bind = ipaddress.ip_address(values["DSHUB_BIND_ADDRESS"])
    host = f"[{bind}]" if bind.version == 6 else str(bind)
    if values["DSHUB_TLS"] == "off":
        return f"http://{host}:{values['DSHUB_HTTP_PORT']}"
    port = values["DSHUB_HTTPS_PORT"]
    return f"https://{host}" if port == 443 else f"https://{host}:{port}"


def _derive(values: dict[str, Any], raw_values: dict[str, str]) -> None:
    """Defaults that depend on other settings."""

    def derive(name: str, value: Any) -> None:
        values[name] = value
        raw_values[name] = ",".join(value) if isinstance(value, tuple) else str(value)

    if values["DSHUB_PUBLIC_URL"] is None:
        derive("DSHUB_PUBLIC_URL", _default_public_url(values))
    if values["DSHUB_AUTHENTICATOR"] == "local" and not values["DSHUB_ADMIN_USERS"]:
        derive("DSHUB_ADMIN_USERS", ("admin",))
    if values["DSHUB_AUTHENTICATOR"] != "local" and values["DSHUB_OAUTH_CALLBACK_URL"] is None:
        derive("DSHUB_OAUTH_CALLBACK_URL", values["DSHUB_PUBLIC_URL"].rstrip("/") + "/hub/oauth_callback")
