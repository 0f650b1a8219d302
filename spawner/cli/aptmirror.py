"""The Debian mirror this host's own apt uses, for making the base image with debootstrap.

A machine behind a mirror or a caching proxy then needs no setting, and no mirror's
name is written into dshub. ``python -m spawner.cli.aptmirror`` prints the mirror, or
says to set DSHUB_DEBIAN_MIRROR and exits 1 when the host has none to offer.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ETC_APT = Path("/etc/apt")
OS_RELEASE = Path("/etc/os-release")
# apt reads sources.list.d/ files with these names only, in this order.
_PART_NAME = re.compile(r"[A-Za-z0-9_.-]+\.(list|sources)")
SET_MIRROR = (
    "set DSHUB_DEBIAN_MIRROR in .env to the URL of a Debian mirror this machine reaches "
    "(like DSHUB_DEBIAN_MIRROR=http://<mirror>/debian) and run make again."
)


@dataclass(frozen=True)
class Entry:
    """One `deb` source as apt reads it (deb-src and disabled entries never become one)."""

    uri: str
    suites: tuple[str, ...]
    signed_by: str


def one_line_entries(text: str) -> Iterator[Entry]:
    """`deb [options] uri suite [component...]` lines of a .list file."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        options: dict[str, str] = {}
        rest = words[1:]
        if rest[0].startswith("["):
            end = next((i for i, w in enumerate(rest) if w.endswith("]")), len(rest) - 1)
            for option in " ".join(rest[: end + 1]).strip("[] ").split():
                key, _, value = option.partition("=")
                options[key.lower()] = value
            rest = rest[end + 1 :]
        if len(rest) >= 2:
            yield Entry(rest[0], (rest[1],), options.get("signed-by", ""))


def deb822_entries(text: str) -> Iterator[Entry]:
    """Stanzas of a .sources file (deb822): Types, URIs, Suites, Signed-By, Enabled."""
    stanzas: list[dict[str, str]] = [{}]
    key = ""
    for line in text.splitlines():
        if not line.strip():
            stanzas.append({})
        elif line.startswith("#"):
            continue
        elif line[0].isspace() and key:  # continuation, e.g. an inline Signed-By key
            stanzas[-1][key] += "\n" + line.strip()
        elif ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            key = key.lower()
            stanzas[-1][key] = value
    for fields in stanzas:
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        uris, suites = fields.get("uris", "").split(), tuple(fields.get("suites", "").split())
        if uris and suites:
            yield Entry(uris[0], suites, fields.get("signed-by", ""))


def _is_debian(entry: Entry) -> bool:
    # Third-party repositories name their own key; Debian's own entries name the Debian
    # archive keyring or (older one-line files) no key at all. debian-security is a
    # separate archive without the suite debootstrap needs.
    return (not entry.signed_by or "debian-archive-keyring" in entry.signed_by) and not all(
        suite.endswith("-security") for suite in entry.suites
    )


def _mirror_list_uri(text: str) -> str | None:
    """The first mirror of an apt mirror list (the `mirror+file:` method of cloud images)."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            return words[0]
    return None


def debian_mirror(sources: Iterable[tuple[str, str]], read: Callable[[str], str]) -> str | None:
    """URI of the first Debian `deb` entry, given (file name, text) pairs in apt's order.

    ``read`` returns a file's text (for mirror lists that a `mirror+file:` URI names).
    """
    for name, text in sources:
        for entry in (deb822_entries if name.endswith(".sources") else one_line_entries)(text):
            if not _is_debian(entry):
                continue
            uri = entry.uri
            if uri.startswith("mirror+file:"):
                try:
                    uri = _mirror_list_uri(read(uri.removeprefix("mirror+file:").removeprefix("//"))) or ""
                except OSError:
                    continue
            if uri.startswith(("http://", "https://")):
                return uri.rstrip("/")
    return None


def host_sources(etc_apt: Path = ETC_APT) -> list[tuple[str, str]]:
    """The host's apt source files, as (name, text), in the order apt reads them."""
    files = [etc_apt / "sources.list"]
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if _PART_NAME.fullmatch(p.name))
    return [(p.name, p.read_text(errors="replace")) for p in files if p.is_file()]


def is_debian_host(os_release: Path = OS_RELEASE) -> bool:
    """Only a Debian host's apt mirror is a Debian mirror (a derivative's carries its own suites)."""
    try:
        text = os_release.read_text()
    except OSError:
        return False
    return re.search(r"^ID=\"?debian\"?$", text, re.MULTILINE) is not None


def main() -> int:
    if not is_debian_host(OS_RELEASE):
        problem = f"this host is not Debian ({OS_RELEASE}), so its apt has no Debian mirror"
    elif (mirror := debian_mirror(host_sources(ETC_APT), lambda path: Path(path).read_text())) is None:
        problem = (
            f"this host's apt names no Debian mirror (no http(s) `deb` entry for Debian in "
            f"{ETC_APT}/sources.list or {ETC_APT}/sources.list.d/)"
        )
    else:
        print(mirror)
        return 0
    print(f"dshub: cannot make the base image: {problem}; {SET_MIRROR}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
