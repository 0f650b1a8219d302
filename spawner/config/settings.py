"""Every deployment setting of dshub, typed and validated in one place.

Settings come from the environment (``DSHUB_*``), which compose fills from the
operator's ``.env`` after ``python -m spawner.cli.settings render`` validated it, so
a typo or a bad value stops ``make up`` before anything starts, with a message that
names the setting and the fix.

The model :class:`Settings` is the single source of truth: each field's type is
its validation, its description the setting's help and its default the text an
operator would write, so the settings reference (``.env.example``, checked by a
unit test) comes from it too.

A pydantic model, not pydantic-settings: the settings have one way in, the
mapping :func:`load` is given (compose's environment, or the rendered file), and
``.env`` is read by :func:`parse_env_file` with exactly the syntax compose reads
it with. pydantic-settings' sources (the process environment, python-dotenv's own
.env syntax, secrets directories) would each be a second way in, and a .env line
the two readers take differently would mean one thing to the hub and another to
compose.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import urlsplit

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.functional_validators import ModelWrapValidatorHandler

from spawner.core.constants import VERSION
from spawner.core.names import USERNAME_PATTERN, USERNAME_RULE
from spawner.core.units import (
    CPU_MAX,
    CPU_MIN,
    DISK_MAX,
    DISK_MIN,
    MEMORY_MAX,
    MEMORY_MIN,
    PIDS_MAX,
    PIDS_MIN,
    parse_size,
)

PREFIX = "DSHUB_"
REPO_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """A setting is missing, unknown or malformed. The message names it and the fix."""


class _Conflicts(ValueError):
    """Settings each valid alone that do not go together; each problem names its fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# -- parsers of a setting's text: (its variable's name, the text) -> value ----------


def _pattern(pattern: str, what: str) -> Callable[[str, str], str]:
    compiled = re.compile(pattern)

    def parse(name: str, raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise SettingsError(f"{name}={raw!r} is not {what}.")
        return raw

    return parse


def _whole_number(name: str, raw: str) -> int:
    try:
        return int(raw, 10)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number.") from None


def _cpus(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of CPUs (e.g. 1 or 0.5).") from None


def parse_memory(name: str, raw: str) -> int:
    """Bytes, from docker's notation (512M, 2G)."""
    value = parse_size(raw)
    if value is None:
        raise SettingsError(f"{name}={raw!r} is not a memory size: write e.g. 512M or 2G.")
    if value < MEMORY_MIN:
        raise SettingsError(f"{name}={raw!r} is below the 64M a Jupyter server needs.")
    if value > MEMORY_MAX:
        raise SettingsError(f"{name}={raw!r} is out of range: use 64M..1024T.")
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


def _logout_url(name: str, raw: str) -> str:
    return raw if raw == "idp" else _url(name, raw)


def _bool(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not true or false.")


def _list(pattern: str, what: str) -> Callable[[str, str], tuple[str, ...]]:
    """Comma-separated items, each matching ``pattern``."""
    item = _pattern(pattern, what)

    def parse(name: str, raw: str) -> tuple[str, ...]:
        items = tuple(part.strip() for part in raw.split(",") if part.strip())
        for part in items:
            item(name, part)
        if len(set(items)) != len(items):
            raise SettingsError(f"{name}={raw!r} lists an item twice.")
        return items

    return parse


def _group_folders(name: str, raw: str) -> tuple[str, ...]:
    return ("*",) if raw == "*" else _list(IDP_NAME_PATTERN, "a group name")(name, raw)


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


def _auto_or_between(low: int, high: int) -> Callable[[str, str], int | None]:
    """A number, or auto (None): the hub works it out when it starts."""

    def parse(name: str, raw: str) -> int | None:
        if raw == "auto":
            return None
        value = _whole_number(name, raw)
        if not low <= value <= high:
            raise SettingsError(f"{name}={value} is out of range: use auto or {low}..{high}.")
        return value

    return parse


def _off_or_between(low: int, high: int) -> Callable[[str, str], int]:
    """Seconds, or 0 (written so) for off."""

    def parse(name: str, raw: str) -> int:
        value = _whole_number(name, raw)
        if raw != "0" and not low <= value <= high:
            raise SettingsError(f"{name}={value} is out of range: use 0 (off) or {low}..{high}.")
        return value

    return parse


def _secret(name: str, raw: str) -> str:
    if len(raw) < 8 or any(ch.isspace() or ch in "'\"\\" for ch in raw):
        raise SettingsError(
            f"{name} must be at least 8 characters without spaces, quotes or backslashes (value not shown)."
        )
    return raw


# -- the fields' types ---------------------------------------------------------------


def env_name(field_name: str) -> str:
    """The variable an operator writes for a field of :class:`Settings`."""
    return PREFIX + field_name.upper()


def _parsed(parse: Callable[[str, str], Any]) -> BeforeValidator:
    """A field validated by a parser of its text; an optional setting's default (None or ()) is no text.

    Anything else that is not text is refused: a value reaches the model only as its text.
    """

    def validate(raw: Any, info: ValidationInfo) -> Any:
        name = env_name(str(info.field_name))
        if isinstance(raw, str):
            return parse(name, raw)
        if raw is None or raw == ():
            return raw
        raise SettingsError(f"{name} must be given as text.")

    return BeforeValidator(validate)


def _matching(pattern: str, what: str) -> BeforeValidator:
    # Python's re, on the whole text, with a message saying what is expected: pydantic's own
    # `pattern` runs another regex engine, without the lookahead USERNAME_PATTERN and
    # CONFIG_FILE_PATTERN use.
    return _parsed(_pattern(pattern, what))


IMAGE_PATTERN = r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?"
# Names as identity providers spell them (GitHub org:team, GitLab group/subgroup, ...).
IDP_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@:/ -]{0,127}"
DOMAIN_PATTERN = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+"
# A file inside DSHUB_CONFIG_DIR: no absolute path, no '..', nothing a shell or compose reads.
CONFIG_FILE_PATTERN = r"(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*"
# No quote: the rendered settings file quotes values with "'".
_PRINTABLE = r"[!-&(-\[\]-~]"
TlsMode = Literal["off", "self-signed", "files", "acme"]
TLS_MODES: tuple[str, ...] = get_args(TlsMode)

_Whole = Annotated[int, _parsed(_whole_number)]
_Port = Annotated[_Whole, Field(ge=1, le=65535)]
# uids and gids: never a system id, always a valid Linux id.
_Id = Annotated[_Whole, Field(ge=1000, le=2**31 - 2)]
_Bool = Annotated[bool, _parsed(_bool)]
_Url = Annotated[str, _parsed(_url)]
_IdpUrl = Annotated[str, _parsed(_idp_url)]
_MountedPath = Annotated[Path, _parsed(_mounted_path)]
_Image = Annotated[str, _matching(IMAGE_PATTERN, "an image reference (name[:tag])")]
_ConfigFile = Annotated[
    str, _matching(CONFIG_FILE_PATTERN, "a relative path inside DSHUB_CONFIG_DIR (letters, digits, ._-/)")
]
_Claim = Annotated[str, _matching(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", "a claim name")]
_Groups = Annotated[tuple[str, ...], _parsed(_list(IDP_NAME_PATTERN, "a group name"))]


class Settings(BaseModel):
    """Validated settings; attribute names are the setting names without the prefix.

    Made by :func:`load`, from text only: each default is the text an operator would
    write (``None`` or ``()``: an optional setting, written as nothing).
    """

    # Defaults are text too, read by the same parsers; a field the model lacks is an error.
    model_config = ConfigDict(validate_default=True, extra="forbid")

    project: Annotated[
        str, _matching(r"[a-z][a-z0-9-]{0,29}", "a lowercase name (letters, digits, '-'; max 30)")
    ] = Field(
        "dshub",
        description="Name of this deployment: prefix of its containers, networks and volumes, "
        "and the label value that `make down`/`make clean` and the tests select by.",
    )
    mode: Literal["single-host", "swarm"] = Field(
        "single-host",
        description="single-host: the hub starts each user's server as a container on this machine's engine "
        "(make up). swarm: as a service of the Docker Swarm this machine manages, on whichever node "
        "has room, with the same uid, files, limits and profiles (make swarm-up; docs/scale-out.md).",
    )
    swarm_edge_subnet: Annotated[str, _parsed(_subnet)] = Field(
        "10.231.255.0/27",
        description="Swarm mode with a loopback DSHUB_BIND_ADDRESS: the overlay network between the local "
        "forwarder that publishes the edge on this machine and Traefik; Traefik believes the "
        "client addresses the forwarder passes on only from it. Change it if it overlaps a network "
        "of yours.",
    )
    swarm_node_networks: Annotated[tuple[str, ...], _parsed(_ipv4_networks)] = Field(
        (),
        description="Swarm mode: comma-separated IPv4 networks of the swarm's nodes and the pool's file "
        "server (e.g. 10.0.0.0/24). Users' servers never reach them, whatever DSHUB_USER_EGRESS allows. "
        "Besides these, each node's agent closes what it can see itself: the node, the managers, "
        "the nodes on the users' network and the NFS servers it mounts from; name the networks to "
        "close the rest too (other machines there).",
    )
    swarm_encrypt: _Bool = Field(
        "true",
        description="Swarm mode: encrypt the overlay networks between nodes (IPsec; the nodes must let IP "
        "protocol 50 pass between them). false only on a network of the nodes' own that nobody "
        "else can reach or listen on: the edge talks plain http to users' servers over it.",
    )
    bind_address: Annotated[str, _parsed(_ip)] = Field(
        "127.0.0.1",
        description="Host address the edge proxy listens on. 127.0.0.1 keeps the hub local; "
        "use 0.0.0.0 (with TLS in front) to serve a network.",
    )
    http_port: _Port = Field("8000", description="Host port the edge proxy publishes.")
    pool_dir: _MountedPath = Field(
        str(REPO_ROOT / "data" / "pool"),
        description="Absolute host path of the data pool: users' files live in <pool>/users/<name>. "
        "Default: data/pool in the checkout (git-ignored).",
    )
    # Unset (""): derived from the address served, after the checks that need to know.
    public_url: _Url = Field(
        "",
        validate_default=False,
        description="URL people open, as their browser sees it (e.g. https://hub.example.edu). "
        "Default: http://<DSHUB_BIND_ADDRESS>:<DSHUB_HTTP_PORT>. OAuth callbacks are built from it.",
    )
    user_subdomains: _Bool = Field(
        "false",
        description="true: each user's server gets an origin of its own, <user>.<host of DSHUB_PUBLIC_URL> "
        "(e.g. ada.hub.example.edu), and the hub keeps its host to itself, so a script in a server "
        "shared with you can never act as you on the hub. Needs DSHUB_PUBLIC_URL with a host name, "
        "a wildcard DNS record *.<that host> and, for https, a wildcard certificate: see "
        "docs/operating.md, Per-user origins. Recommended wherever you can have those.",
    )
    tls: TlsMode = Field(
        "off",
        description="How the edge proxy serves https. acme: certificates from an ACME CA (Let's Encrypt by "
        "default), renewed automatically; needs DSHUB_PUBLIC_URL with the hub's DNS name, reachable "
        "from the CA on DSHUB_HTTP_PORT 80 (or DSHUB_HTTPS_PORT 443 with DSHUB_ACME_CHALLENGE=tls). "
        "files: your certificate and key (DSHUB_TLS_CERT_FILE, DSHUB_TLS_KEY_FILE), reloaded when "
        "they change. self-signed: a certificate made once, for trials and internal networks. "
        "With TLS on, plain http only redirects to https. off: plain http, allowed only with a "
        "loopback DSHUB_BIND_ADDRESS or behind a TLS terminator named in DSHUB_TRUSTED_PROXIES. "
        "See docs/production.md.",
    )
    https_port: _Port = Field(
        "8443",
        description="Host port the edge proxy serves https on (with DSHUB_TLS other than off); "
        "443 in production.",
    )
    tls_cert_file: _ConfigFile = Field(
        "tls/fullchain.pem",
        description="DSHUB_TLS=files: the certificate chain (PEM), a path inside DSHUB_CONFIG_DIR. The hub "
        "checks it every 10 seconds and the proxy serves a new one without a restart.",
    )
    tls_key_file: _ConfigFile = Field(
        "tls/privkey.pem",
        description="DSHUB_TLS=files: the certificate's private key (PEM), a path inside DSHUB_CONFIG_DIR; "
        "it may stay readable by root only.",
    )
    acme_ca_server: _Url = Field(
        "https://acme-v02.api.letsencrypt.org/directory",
        description="DSHUB_TLS=acme: the ACME directory URL. Let's Encrypt's staging directory "
        "(https://acme-staging-v02.api.letsencrypt.org/directory) is good for a first try.",
    )
    acme_email: Annotated[
        str | None, _matching(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "an e-mail address")
    ] = Field(
        None,
        description="DSHUB_TLS=acme: contact address for the ACME account (expiry notices); optional.",
    )
    acme_challenge: Literal["http", "tls"] = Field(
        "http",
        description="DSHUB_TLS=acme: how the CA checks the name. http (HTTP-01): the CA connects to port 80, "
        "so DSHUB_HTTP_PORT must be reachable as port 80. tls (TLS-ALPN-01): port 443 only.",
    )
    acme_ca_certificate: Annotated[Path | None, _parsed(_mounted_path)] = Field(
        None,
        description="DSHUB_TLS=acme with a private ACME CA (step-ca, a test CA): absolute host path of the "
        "PEM certificate that the ACME directory's own https is signed with. Empty: the system's CAs.",
    )
    hsts_seconds: _Whole = Field(
        "31536000",
        ge=0,
        le=2 * 365 * 24 * 3600,
        description="Strict-Transport-Security max-age sent with https (acme and files; never with a "
        "self-signed certificate, which browsers would then refuse to let anyone click through). "
        "0 sends none.",
    )
    trusted_proxies: Annotated[tuple[str, ...], _parsed(_networks)] = Field(
        (),
        description="Comma-separated addresses or networks (e.g. 10.0.0.5,192.0.2.0/24) of a TLS terminator "
        "or load balancer in front of dshub: only from these are X-Forwarded-For/-Proto believed, so "
        "sign-in throttling and logs see the browser's address. Needed for DSHUB_TLS=off on a "
        "non-loopback DSHUB_BIND_ADDRESS. Empty: forwarded headers from anyone are replaced.",
    )
    admin_users: Annotated[
        tuple[str, ...], _parsed(_list(USERNAME_PATTERN, f"a lowercase username ({USERNAME_RULE})"))
    ] = Field(
        (),
        description="Comma-separated admins. With local sign-in the default is 'admin', whose initial "
        "password is generated on first start (`make admin-password`). With OAuth: usernames "
        "as the provider gives them; no default.",
    )
    authenticator: Literal["local", "github", "gitlab", "google", "azuread", "generic"] = Field(
        "local",
        description="How people sign in. local: the built-in user list (admins add users, a new user sets "
        "a password at first sign-in). github, gitlab, google, azuread, generic (any OpenID "
        "Connect provider): OAuth, see docs/auth.md.",
    )
    oauth_client_id: Annotated[
        str | None,
        _matching(_PRINTABLE + "{1,256}", "a client id (printable, no spaces, quotes or backslashes)"),
    ] = Field(
        None,
        description="OAuth client id from the provider's app registration (required with OAuth).",
    )
    oauth_client_secret: Annotated[str | None, _parsed(_secret)] = Field(
        None,
        repr=False,
        description="OAuth client secret (required with OAuth). Keep .env private (chmod 600).",
    )
    oauth_callback_url: Annotated[str | None, _parsed(_url)] = Field(
        None,
        description="Redirect URL registered at the provider. "
        "Default: <DSHUB_PUBLIC_URL>/hub/oauth_callback.",
    )
    oauth_allowed_users: Annotated[tuple[str, ...], _parsed(_list(IDP_NAME_PATTERN, "a username"))] = Field(
        (),
        description="Comma-separated usernames allowed to sign in with OAuth.",
    )
    oauth_allowed_groups: _Groups = Field(
        (),
        description="Comma-separated groups whose members may sign in: generic/azuread groups claim, "
        "GitHub organizations or org:team, GitLab groups. Not for google.",
    )
    oauth_admin_groups: _Groups = Field(
        (),
        description="Comma-separated groups whose members are admins (generic, azuread, GitHub org:team).",
    )
    oauth_instructors_from_idp: _Bool = Field(
        "false",
        description="true: members of the provider's group named DSHUB_INSTRUCTORS_GROUP become instructors "
        "(they may write the course folder); only if nobody but you can create or join that "
        "group, see docs/auth.md. false: the provider's group of that name is ignored and "
        "instructors are made on the hub (make roster, admin page). For generic, azuread and GitHub teams.",
    )
    oauth_allow_all: _Bool = Field(
        "false",
        description="true lets every account of the provider in. With no allow rule and this false, "
        "only admins can sign in (fail closed).",
    )
    oauth_username_claim: _Claim | None = Field(
        None,
        description="Claim that becomes the username (generic, azuread, google). Default: "
        "preferred_username (google: email). An email claim is only used when email_verified is true.",
    )
    oauth_groups_claim: _Claim = Field(
        "groups",
        description="Claim listing the user's groups (generic, azuread).",
    )
    oauth_scopes: Annotated[
        str,
        _matching(f"{_PRINTABLE}+( {_PRINTABLE}+)*", "space-separated scopes (no quotes or backslashes)"),
    ] = Field(
        "openid profile email",
        description="Space-separated scopes requested from a generic provider.",
    )
    oauth_login_service: Annotated[
        str | None, _matching(r"[^\x00-\x1f<>'\"\\$`]{1,64}", "a short display name (no quotes, <, >, $)")
    ] = Field(
        None,
        description="Provider name on the login button. Default: GitHub, GitLab, Google, Microsoft Entra ID, "
        "or 'your organisation' for generic.",
    )
    oauth_logout_url: Annotated[str | None, _parsed(_logout_url)] = Field(
        None,
        description="Where the browser goes after hub logout, to end the provider session too: a URL, or "
        "'idp' for the generic provider's end_session_endpoint. Default: the hub's login page.",
    )
    oauth_pass_token: _Bool = Field(
        "false",
        description="true hands the user's OAuth access token to their server as OAUTH_ACCESS_TOKEN "
        "(e.g. to clone from the same GitLab).",
    )
    oidc_issuer: _IdpUrl | None = Field(
        None,
        description="generic: issuer URL as the browser reaches it; endpoints come from its "
        "/.well-known/openid-configuration. This and the other provider URLs must be https "
        "(plain http only to localhost, 127.0.0.0/8, ::1 or the development provider 'oidc').",
    )
    oidc_backchannel_url: _IdpUrl | None = Field(
        None,
        description="generic: the issuer URL as the hub container reaches it, when that differs from "
        "DSHUB_OIDC_ISSUER (e.g. an IdP in the same compose project).",
    )
    oauth_authorize_url: _IdpUrl | None = Field(
        None,
        description="generic without discovery: authorization endpoint (browser-facing).",
    )
    oauth_token_url: _IdpUrl | None = Field(
        None,
        description="generic without discovery: token endpoint (reached by the hub).",
    )
    oauth_userdata_url: _IdpUrl | None = Field(
        None,
        description="generic without discovery: userinfo endpoint (reached by the hub).",
    )
    gitlab_url: _IdpUrl = Field(
        "https://gitlab.com",
        description="gitlab: base URL of the GitLab instance (self-hosted or gitlab.com).",
    )
    google_hosted_domains: Annotated[tuple[str, ...], _parsed(_list(DOMAIN_PATTERN, "a domain name"))] = (
        Field(
            (),
            description="google: comma-separated Workspace domains whose accounts may sign in.",
        )
    )
    azuread_tenant_id: Annotated[str | None, _matching(r"[A-Za-z0-9.-]{1,64}", "a tenant id or domain")] = (
        Field(
            None,
            description="azuread: the directory (tenant) id (required with azuread).",
        )
    )
    uid_min: _Id = Field(
        "20000",
        description="Lowest uid (and gid) given to a user. Each user gets their own, recorded as "
        "the owner of <pool>/users/<name>.",
    )
    uid_max: _Id = Field("59999", description="Highest uid (and gid) given to a user.")
    gid_min: _Id = Field(
        "60000",
        description="Lowest gid given to a group folder; the range must not overlap the users' uid range.",
    )
    gid_max: _Id = Field("64999", description="Highest gid given to a group folder.")
    group_folders: Annotated[tuple[str, ...], _parsed(_group_folders)] = Field(
        "*",
        description="Hub groups that get a shared folder <pool>/groups/<group>, mounted at "
        "/srv/groups/<group> for members (~/groups links there): '*' for every group, or a "
        "comma-separated list.",
    )
    instructors_group: Annotated[str, _matching(IDP_NAME_PATTERN, "a group name")] = Field(
        "instructors",
        description="Hub group whose members may write <pool>/shared (course material, read-only "
        "for others).",
    )
    user_image: _Image = Field(
        f"dshub/datascience:{VERSION}",
        description="Image of user containers: dshub/datascience (JupyterLab, R, VS Code, RStudio when "
        "available) or the lean dshub/lab.",
    )
    vscode_ai: _Bool = Field(
        "false",
        description="true: VS Code shows its AI chat and the features that lead to it. false: VS Code "
        "opens clean for a class, without them (a user may still turn them on in their own settings).",
    )
    mem_limit: Annotated[int, _parsed(parse_memory)] = Field(
        "2G",
        description="Memory limit of each user container (docker notation: 512M, 2G).",
    )
    cpu_limit: Annotated[float, _parsed(_cpus)] = Field(
        "1",
        ge=CPU_MIN,
        le=CPU_MAX,
        description="CPU limit of each user container, in CPUs (0.5 = half a core).",
    )
    pids_limit: _Whole = Field(
        "512",
        ge=PIDS_MIN,
        le=PIDS_MAX,
        description="Most processes and threads in one user container (stops fork bombs).",
    )
    disk_quota: Annotated[int | None, _parsed(_disk_quota)] = Field(
        None,
        description="Disk quota of each user's pool folder, shared by all their servers (e.g. 10G); empty or "
        "none: no quota. profiles.yaml may set another per group (limits.disk_per_group). The hub "
        "counts each folder: a warning at start and in JupyterLab above DSHUB_DISK_QUOTA_WARN, no "
        "new server above DSHUB_DISK_QUOTA_REFUSE; a hard limit with DSHUB_DISK_QUOTA_ENFORCE. "
        "See docs/profiles.md, Disk quotas.",
    )
    disk_quota_warn: _Whole = Field(
        "90",
        ge=1,
        le=100,
        description="Percent of their disk quota above which a user is warned (when their server starts and "
        "in JupyterLab).",
    )
    disk_quota_refuse: _Whole = Field(
        "110",
        ge=100,
        le=1000,
        description="Percent of their disk quota above which no new server of the user starts (running "
        "servers keep running, so they can clean up).",
    )
    disk_quota_enforce: Literal["off", "project"] = Field(
        "off",
        description="project: the quota service of the stack makes each user's quota a hard limit with the "
        "pool filesystem's project quotas (XFS mounted with prjquota, or ext4 with the project "
        "feature); writes beyond it fail. off: quotas are counted and shown, never enforced by "
        "the filesystem.",
    )
    network_policy: _Bool = Field(
        "on",
        description="on: user containers reach only the hub's API and, as DSHUB_USER_EGRESS says, the "
        "outside world; never each other, Traefik, the host or metadata addresses (a service of "
        "the stack keeps the host firewall so; in swarm mode an agent on every node keeps each "
        "server's own). off: no policy (only for trials).",
    )
    user_egress: Annotated[tuple[str, ...], _parsed(_egress)] = Field(
        "public",
        description="What user containers may reach beyond the host: public (everything but private, "
        "link-local and other non-public ranges), all, none, or comma-separated IPv4 networks, "
        "then the only destinations allowed (e.g. 10.1.2.3,10.8.0.0/16 for an internal mirror).",
    )
    monitoring: _Bool = Field(
        "false",
        description="true runs Prometheus with the stack (compose profile monitoring): the hub's metrics, "
        "Traefik's per-router requests and latency, each user server's CPU and memory. "
        "See docs/operating.md (Monitoring).",
    )
    prometheus_port: _Port = Field(
        "9090",
        description="Port on 127.0.0.1 where Prometheus's UI and API answer (with DSHUB_MONITORING=true).",
    )
    signin_rate: _Whole = Field(
        "20",
        ge=0,
        le=100000,
        description="Requests per second one address may send to the sign-in page, enforced by the edge "
        "proxy before the hub sees them (bursts of twice that pass). A class behind one NAT "
        "address shares it: raise it for very large classes. 0 turns the limit off.",
    )
    start_timeout: _Whole = Field(
        "120",
        ge=10,
        le=3600,
        description="Seconds a user's server may take to answer, from the moment its start begins "
        "(after any wait in line, DSHUB_START_CONCURRENCY), before the spawn fails.",
    )
    start_concurrency: Annotated[int | None, _parsed(_auto_or_between(0, 1000))] = Field(
        "auto",
        description="Servers starting at once, from their container's creation until they answer; "
        "the others wait in line in the order they asked, their spawn page showing their place, "
        "so a whole class arriving together is served first come, first served instead of all "
        "slowly at once. auto: twice the cores of the hub's machine (single-host), no limit in "
        "swarm mode (the servers start on other machines; set a number there, e.g. twice the "
        "cores of all nodes). 0: no limit.",
    )
    start_queue_timeout: _Whole = Field(
        "600",
        ge=10,
        le=7200,
        description="Seconds a start may wait in line for its turn (DSHUB_START_CONCURRENCY) before "
        "it fails with a message to try again later. On 2 cores the line moves by about one lab "
        "server every 2 s (BENCHMARKS.md, Login storm).",
    )
    config_dir: _MountedPath = Field(
        str(REPO_ROOT / "config"),
        description="Absolute host path of the operator's config files, mounted read-only into the hub. "
        "Its profiles.yaml (see docs/profiles.md) lists what users may choose at spawn; the hub "
        "re-reads it when it changes. Without that file there is one profile made of "
        "DSHUB_USER_IMAGE, DSHUB_MEM_LIMIT, DSHUB_CPU_LIMIT and DSHUB_PIDS_LIMIT.",
    )
    cull_idle_timeout: Annotated[int, _parsed(_off_or_between(30, 30 * 24 * 3600))] = Field(
        "3600",
        description="Seconds without activity (notebooks, terminals, RStudio, VS Code) after which a "
        "user's server is stopped by the idle culler; 0 turns culling off. Files are kept.",
    )
    cull_max_age: Annotated[int, _parsed(_off_or_between(60, 365 * 24 * 3600))] = Field(
        "0",
        description="Seconds after which a server is stopped even when active (e.g. 43200 for 12 h); "
        "0: no limit.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="Log level of the hub and the proxy.",
    )
    base_image: _Image = Field(
        "debian:trixie-slim",
        description="Debian image all dshub images build FROM. Pulled if a registry is reachable, "
        "otherwise made locally with debootstrap under this name.",
    )
    debian_suite: Annotated[str, _matching(r"[a-z]+", "a Debian suite name (e.g. trixie)")] = Field(
        "trixie",
        description="Debian suite debootstrap uses to make the base image.",
    )
    debian_mirror: _Url | None = Field(
        None,
        description="Debian mirror debootstrap makes the base image from (only when DSHUB_BASE_IMAGE cannot "
        "be pulled); apt in the image builds then uses it too. Default: the mirror the host's own apt "
        "uses (its first Debian `deb` entry in /etc/apt/sources.list and sources.list.d/), through "
        "the host apt's proxy if it has one (Acquire::http::Proxy).",
    )
    build_ca_bundle: Annotated[Path, _parsed(_abs_path)] = Field(
        "/etc/ssl/certs/ca-certificates.crt",
        description="Host CA bundle handed to image builds as a BuildKit secret, so pip and npm "
        "work behind a TLS-intercepting proxy. Never stored in an image.",
    )

    # The text of each setting, as rendered for compose and the hub (as_env).
    _text: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _checked_and_completed(cls, text: dict[str, str], handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Valid settings must go together; then the defaults that depend on others."""
        settings = handler(text)
        problems = settings._conflicts(text)
        if problems:
            raise _Conflicts(problems)
        settings._text = {name: text.get(name, default_text(f)) for name, f in cls.model_fields.items()}
        settings._derive()
        return settings

    @property
    def values(self) -> dict[str, Any]:
        """The settings by their variables' names."""
        return {env_name(name): getattr(self, name) for name in type(self).model_fields}

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
        return {env_name(name): text for name, text in self._text.items()}

    def _derive(self) -> None:
        """Defaults that depend on other settings."""
        if not self.public_url:
            self._set("public_url", self._default_public_url())
        if self.authenticator == "local" and not self.admin_users:
            self._set("admin_users", ("admin",))
        if self.oauth and self.oauth_callback_url is None:
            self._set("oauth_callback_url", self.public_url.rstrip("/") + "/hub/oauth_callback")

    def _set(self, name: str, value: str | tuple[str, ...]) -> None:
        setattr(self, name, value)
        self._text[name] = ",".join(value) if isinstance(value, tuple) else value

    def _default_public_url(self) -> str:
        """The bind address and the port served: fine for a hub on this machine."""
        bind = ipaddress.ip_address(self.bind_address)
        host = f"[{bind}]" if bind.version == 6 else str(bind)
        if self.tls == "off":
            return f"http://{host}:{self.http_port}"
        return f"https://{host}" if self.https_port == 443 else f"https://{host}:{self.https_port}"

    def _conflicts(self, text: Mapping[str, str]) -> list[str]:
        def changed(name: str) -> bool:
            return text.get(name) not in (None, default_text(type(self).model_fields[name]))

        errors = []
        if self.uid_min >= self.uid_max:
            errors.append("DSHUB_UID_MIN must be below DSHUB_UID_MAX: widen the uid range.")
        if self.gid_min >= self.gid_max:
            errors.append("DSHUB_GID_MIN must be below DSHUB_GID_MAX: widen the gid range.")
        elif not (self.gid_max < self.uid_min or self.gid_min > self.uid_max):
            errors.append(
                "DSHUB_GID_MIN..DSHUB_GID_MAX overlaps DSHUB_UID_MIN..DSHUB_UID_MAX: separate the ranges."
            )
        if self.user_subdomains:
            errors.extend(_subdomain_problems(self.public_url))
        errors.extend(self._tls_problems(changed))
        if self.mode == "swarm":
            errors.extend(self._swarm_problems())
        if self.cull_max_age and not self.cull_idle_timeout:
            errors.append("DSHUB_CULL_MAX_AGE needs the culler: set DSHUB_CULL_IDLE_TIMEOUT above 0.")
        errors.extend(self._sign_in_problems(changed))
        return errors

    def _sign_in_problems(self, changed: Callable[[str], bool]) -> list[str]:
        kind = self.authenticator
        values = self.values
        if kind == "local":
            oauth_only = [
                env_name(name)
                for name in type(self).model_fields
                if name.startswith(("oauth_", "oidc_", "google_", "azuread_")) and changed(name)
            ]
            if oauth_only:
                return [
                    f"{', '.join(oauth_only)} only apply to OAuth sign-in, but DSHUB_AUTHENTICATOR=local: "
                    "set DSHUB_AUTHENTICATOR (github, gitlab, google, azuread, generic) or remove them."
                ]
            return []
        errors = [
            f"{env_name(required)} is required with DSHUB_AUTHENTICATOR={kind}: see docs/auth.md."
            for required in ("oauth_client_id", "oauth_client_secret")
            if getattr(self, required) is None
        ]
        if kind == "generic":
            endpoints = ("DSHUB_OAUTH_AUTHORIZE_URL", "DSHUB_OAUTH_TOKEN_URL", "DSHUB_OAUTH_USERDATA_URL")
            explicit = [e for e in endpoints if values[e]]
            if self.oidc_issuer and explicit:
                errors.append(f"set either DSHUB_OIDC_ISSUER or {', '.join(endpoints)}, not both.")
            elif not self.oidc_issuer and len(explicit) != len(endpoints):
                errors.append(
                    "DSHUB_AUTHENTICATOR=generic needs DSHUB_OIDC_ISSUER (discovery) "
                    f"or all of {', '.join(endpoints)}."
                )
            if self.oidc_backchannel_url and not self.oidc_issuer:
                errors.append("DSHUB_OIDC_BACKCHANNEL_URL only works together with DSHUB_OIDC_ISSUER.")
        elif self.oauth_logout_url == "idp":
            errors.append("DSHUB_OAUTH_LOGOUT_URL=idp needs DSHUB_AUTHENTICATOR=generic; give a URL instead.")
        if kind == "azuread" and not self.azuread_tenant_id:
            errors.append("DSHUB_AZUREAD_TENANT_ID is required with DSHUB_AUTHENTICATOR=azuread.")
        if kind == "google" and self.oauth_allowed_groups:
            errors.append(
                "DSHUB_OAUTH_ALLOWED_GROUPS is not supported with google (Google groups need a "
                "Workspace service account): use DSHUB_GOOGLE_HOSTED_DOMAINS or DSHUB_OAUTH_ALLOWED_USERS."
            )
        if kind in ("gitlab", "google") and self.oauth_admin_groups:
            errors.append(f"DSHUB_OAUTH_ADMIN_GROUPS is not supported with {kind}: use DSHUB_ADMIN_USERS.")
        # Where these settings are matched against synced groups, the ignored instructors
        # group would silently never match.
        synced = {
            "generic": ("DSHUB_OAUTH_ADMIN_GROUPS", "DSHUB_OAUTH_ALLOWED_GROUPS"),
            "azuread": ("DSHUB_OAUTH_ADMIN_GROUPS", "DSHUB_OAUTH_ALLOWED_GROUPS"),
            "github": ("DSHUB_OAUTH_ADMIN_GROUPS",),
        }
        instructors = self.instructors_group
        for name in () if self.oauth_instructors_from_idp else synced.get(kind, ()):
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

    def _swarm_problems(self) -> list[str]:
        problems = []
        bind = ipaddress.ip_address(self.bind_address)
        if not (bind.is_loopback or bind.is_unspecified):
            problems.append(
                f"DSHUB_BIND_ADDRESS={bind} with DSHUB_MODE=swarm: a swarm publishes ports on all of a "
                "node's addresses or (through a local forwarder) on loopback only: use 0.0.0.0 and a "
                "firewall, or 127.0.0.1 behind a terminator (docs/scale-out.md)."
            )
        if self.disk_quota_enforce == "project":
            problems.append(
                "DSHUB_DISK_QUOTA_ENFORCE=project does not work with DSHUB_MODE=swarm yet (the quota "
                "service marks folders on one host's filesystem): set the pool's quotas on the file "
                "server, or use DSHUB_DISK_QUOTA without enforcement."
            )
        return problems

    def _tls_problems(self, changed: Callable[[str], bool]) -> list[str]:
        """Plain http only where nobody can listen in; https with what each mode needs."""
        tls = self.tls
        bind = ipaddress.ip_address(self.bind_address)
        public = self.public_url
        problems = []
        for mode, names in _TLS_MODE_SETTINGS.items():
            given = [env_name(n) for n in names if changed(n)]
            if given and tls != mode:
                problems.append(f"{', '.join(given)} only apply to DSHUB_TLS={mode}, but DSHUB_TLS={tls}.")
        if not public and bind.is_unspecified:
            problems.append(
                f"DSHUB_BIND_ADDRESS={bind} listens on every address, so the hub cannot tell its own "
                "address: set DSHUB_PUBLIC_URL to the URL people open (e.g. https://hub.example.edu)."
            )
        if tls == "off":
            if self.trusted_proxies:
                if not public.startswith("https://"):
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
        if public and not public.startswith("https://"):
            problems.append(
                f"DSHUB_TLS={tls} serves https: DSHUB_PUBLIC_URL={public!r} must start with https://."
            )
        if self.https_port == self.http_port:
            problems.append(
                "DSHUB_HTTPS_PORT and DSHUB_HTTP_PORT are the same port: give https a port of its own."
            )
        if tls == "acme":
            host = urlsplit(public).hostname
            if host is None or not re.fullmatch(DOMAIN_PATTERN, host) or _is_ip(host):
                problems.append(
                    "DSHUB_TLS=acme needs DSHUB_PUBLIC_URL with the hub's DNS name (e.g. "
                    "https://hub.example.edu): an ACME CA certifies names, not addresses."
                )
            if self.user_subdomains:
                problems.append(
                    "DSHUB_TLS=acme cannot cover per-user origins (DSHUB_USER_SUBDOMAINS=true): every "
                    "user's host would need a certificate of its own. Use DSHUB_TLS=files with a "
                    "wildcard certificate for the hub's name and *.<that name>."
                )
        return problems


def default_text(field: FieldInfo) -> str:
    """A field's default as an operator writes it: an optional setting's (None or ()) is no text."""
    return field.default if isinstance(field.default, str) else ""


# Settings that mean something only in one DSHUB_TLS mode.
_TLS_MODE_SETTINGS = {
    "files": ("tls_cert_file", "tls_key_file"),
    "acme": ("acme_ca_server", "acme_email", "acme_challenge", "acme_ca_certificate"),
}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# Room for a 63-character user label and its dot within DNS's 253 characters.
_MAX_HUB_HOST = 253 - 64


def _subdomain_problems(public_url: str) -> list[str]:
    """Per-user origins live below the hub's host name: DSHUB_PUBLIC_URL must give one."""
    fix = (
        "set DSHUB_PUBLIC_URL to the address people open, with the hub's own host name "
        "(e.g. https://hub.example.edu; http://hub.localhost:8000 to try it on this machine)"
    )
    if not public_url:
        return [f"DSHUB_USER_SUBDOMAINS=true needs DSHUB_PUBLIC_URL: {fix}."]
    parts = urlsplit(public_url)
    host = parts.hostname or ""
    if _is_ip(host):
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
    errors = [_unknown(key) for key in sorted(environ) if key.startswith(PREFIX) and not _field_of(key)]
    # An empty value, or only spaces, is unset: the default.
    text = {
        name: value.strip() for key, value in environ.items() if (name := _field_of(key)) and value.strip()
    }
    try:
        settings = Settings(**text)
    except ValidationError as e:
        errors.extend(_explained(e, text))
    else:
        if not errors:
            return settings
    raise SettingsError("invalid dshub settings:\n  " + "\n  ".join(errors))


def _field_of(variable: str) -> str | None:
    """The field a variable sets, if it is a setting's variable exactly (capitals and all)."""
    name = variable.removeprefix(PREFIX).lower()
    return name if name in Settings.model_fields and env_name(name) == variable else None


def _unknown(key: str) -> str:
    names = [env_name(name) for name in Settings.model_fields]
    close = [n for n in names if n.split("_", 1)[1][:4] == key.split("_", 1)[1][:4]]
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"{key} is not a dshub setting.{hint} See .env.example for the list."


def _explained(error: ValidationError, text: Mapping[str, str]) -> list[str]:
    """Each problem in the project's words, with the setting's help; never pydantic's wording."""
    messages = []
    for problem in error.errors(include_url=False):
        cause = problem.get("ctx", {}).get("error")
        if isinstance(cause, _Conflicts):
            messages.extend(cause.problems)
            continue
        name = str(problem["loc"][0])
        field = Settings.model_fields[name]
        message = str(cause) if isinstance(cause, SettingsError) else _worded(problem["type"], name, text)
        messages.append(f"{message} {env_name(name)}: {field.description}")
    return messages


def _worded(kind: str, name: str, text: Mapping[str, str]) -> str:
    """A problem found by pydantic itself (a bound, a choice), as the project words it."""
    field = Settings.model_fields[name]
    raw = text.get(name, default_text(field))
    # A field hidden from repr (the client secret) never shows its value.
    shown = f"{env_name(name)}={raw!r}" if field.repr else env_name(name)
    if kind in ("greater_than_equal", "less_than_equal"):
        low = next(m.ge for m in field.metadata if isinstance(m, Ge))
        high = next(m.le for m in field.metadata if isinstance(m, Le))
        return f"{env_name(name)}={raw} is out of range: use {low}..{high}."
    if kind == "literal_error":
        return f"{shown} is not one of: {', '.join(get_args(field.annotation))}."
    return f"{shown} is not a valid value."
