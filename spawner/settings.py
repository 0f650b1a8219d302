"""Every deployment setting of dshub, typed and validated in one place.

Settings come from the environment (``DSHUB_*``), which compose fills from the
operator's ``.env``. ``python -m spawner.settings render`` reads ``.env`` plus the
process environment, validates everything and writes the complete, defaulted set
that compose and the hub use, so a typo or a bad value stops ``make up`` before
anything starts, with a message that names the setting and the fix.

The table ``SETTINGS`` is the single source of truth: the parser, the validation
and the settings reference (``.env.example``, checked by a unit test) all come
from it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "DSHUB_"
REPO_ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"


class SettingsError(ValueError):
    """A setting is missing, unknown or malformed. The message names it and the fix."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    help: str
    parse: Callable[[str, str], Any]


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
    if not 0.01 <= value <= 1024:
        raise SettingsError(f"{name}={raw!r} is out of range: use 0.01..1024 CPUs.")
    return value


_MEMORY = re.compile(r"([1-9][0-9]*)([KMGT]?)", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _memory(name: str, raw: str) -> int:
    """Bytes, from docker's notation (512M, 2G)."""
    match = _MEMORY.fullmatch(raw)
    if not match:
        raise SettingsError(f"{name}={raw!r} is not a memory size: write e.g. 512M or 2G.")
    value = int(match[1]) * _MEMORY_UNITS[match[2].upper()]
    if value < 64 * 2**20:
        raise SettingsError(f"{name}={raw!r} is below the 64M a Jupyter server needs.")
    return value


def _ip(name: str, raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an IP address (e.g. 127.0.0.1).") from None
    return raw


def _abs_path(name: str, raw: str) -> Path:
    path = Path(raw)
    if not path.is_absolute() or ".." in path.parts:
        raise SettingsError(f"{name}={raw!r} must be an absolute path without '..'.")
    return path


def _url(name: str, raw: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[^\s]*)?", raw):
        raise SettingsError(f"{name}={raw!r} is not an http(s) URL.")
    return raw


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"{name}={raw!r} is not one of: {', '.join(choices)}.")
        return raw

    return parse


# JupyterHub lowercases usernames; the admin must be a name a person can type.
USERNAME_PATTERN = r"[a-z0-9][a-z0-9._@-]{0,63}"
IMAGE_PATTERN = r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DSHUB_PROJECT",
        "dshub",
        "Name of this deployment: prefix of its containers, networks and volumes, "
        "and the label value that `make down`/`make clean` and the tests select by.",
        _str(r"[a-z][a-z0-9-]{0,29}", "a lowercase name (letters, digits, '-'; max 30)"),
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
        _abs_path,
    ),
    Setting(
        "DSHUB_ADMIN_USER",
        "admin",
        "The first admin. Their initial password is generated on first start: "
        "`make admin-password` shows it.",
        _str(USERNAME_PATTERN, "a lowercase username (a-z, 0-9, '.', '_', '@', '-'; max 64)"),
    ),
    Setting(
        "DSHUB_AUTHENTICATOR",
        "local",
        "How people sign in. local: the built-in user list (admins add users, "
        "a new user sets a password at first sign-in).",
        _choice("local"),
    ),
    Setting(
        "DSHUB_UID_MIN",
        "20000",
        "Lowest uid (and gid) given to a user. Each user gets their own, recorded as "
        "the owner of <pool>/users/<name>.",
        _int(1000, 2**31 - 2),
    ),
    Setting(
        "DSHUB_UID_MAX",
        "59999",
        "Highest uid (and gid) given to a user.",
        _int(1000, 2**31 - 2),
    ),
    Setting(
        "DSHUB_USER_IMAGE",
        f"dshub/lab:{VERSION}",
        "Image of user containers.",
        _str(IMAGE_PATTERN, "an image reference (name[:tag])"),
    ),
    Setting(
        "DSHUB_MEM_LIMIT",
        "2G",
        "Memory limit of each user container (docker notation: 512M, 2G).",
        _memory,
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
        _int(32, 1_000_000),
    ),
    Setting(
        "DSHUB_START_TIMEOUT",
        "120",
        "Seconds a user container may take to answer before the spawn fails.",
        _int(10, 3600),
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
        "http://deb.debian.org/debian",
        "Debian mirror for debootstrap and for apt inside image builds.",
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

    def __getattr__(self, attr: str) -> Any:
        try:
            return self.values[PREFIX + attr.upper()]
        except KeyError:
            raise AttributeError(attr) from None

    @property
    def network(self) -> str:
        return f"{self.project}-users"

    def as_env(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.values.items()}


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
    for setting in SETTINGS:
        raw = environ.get(setting.name, "")
        if raw == "":
            raw = setting.default
        if raw is None:
            errors.append(f"{setting.name} is required: set it in .env ({setting.help})")
            continue
        try:
            values[setting.name] = setting.parse(setting.name, raw)
        except SettingsError as e:
            errors.append(f"{e} {setting.name}: {setting.help}")
    if not errors and values["DSHUB_UID_MIN"] >= values["DSHUB_UID_MAX"]:
        errors.append("DSHUB_UID_MIN must be below DSHUB_UID_MAX: widen the uid range.")
    if errors:
        raise SettingsError("invalid dshub settings:\n  " + "\n  ".join(errors))
    return Settings(values)


def render(env_file: Path | None, environ: Mapping[str, str]) -> str:
    """Complete, validated KEY=value lines; the process environment wins over the file."""
    merged = parse_env_file(env_file) if env_file and env_file.exists() else {}
    merged.update({k: v for k, v in environ.items() if k.startswith(PREFIX)})
    settings = load(merged)
    return "".join(f"{k}={v}\n" for k, v in settings.as_env().items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.settings", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    render_cmd = sub.add_parser("render", help="validate .env and print the complete settings")
    render_cmd.add_argument("--env-file", type=Path, default=REPO_ROOT / ".env")
    render_cmd.add_argument("--output", type=Path, help="write here (mode 0644) instead of stdout")
    args = parser.parse_args(argv)
    try:
        text = render(args.env_file, os.environ)
    except SettingsError as e:
        print(f"dshub: {e}", file=sys.stderr)
        return 2
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
