"""Roster import and off-boarding for instructors, through the hub's REST API.

Run inside the hub container (``make roster FILE=class.csv``, ``make archive NAME=bob``),
where the hub API and the pool are at hand and a service token with just the
scopes it needs is kept with the other secrets.

CSV columns: ``username,groups,role``; groups separated by ``;``; role is one of
student, instructor (member of DSHUB_INSTRUCTORS_GROUP), admin. Usernames follow
the hub's one username rule (spawner.core.names): a name is normalised the same way
the hub does it, and one that breaks the rule is reported with its line. An
import is all-or-nothing: if any row is bad, every bad row is reported and
nothing is applied. It is idempotent and additive (it never removes users or
memberships), and it reports exactly what it changed, with the one-time initial
password of each user it created when the hub uses its built-in sign-in (printed
this once; ``make initial-password NAME=...`` shows it again until it is used).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from spawner.config import settings as dshub_settings
from spawner.config.layout import initial_passwords_dir, secrets_dir
from spawner.config.secrets import ensure_secret
from spawner.core.constants import HUB_API_URL_IN_HUB
from spawner.core.names import InvalidUsername, checked_username, normalize_username, shown
from spawner.pool.datapool import DataPool, escape_name

ROLES = ("student", "instructor", "admin")
SERVICE = "dshub-roster"
TOKEN_SECRET = "roster-token"  # noqa: S105 -- the secret's file name, not a secret


def hub_service(secrets: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The roster's hub service and its role: only the scopes it needs."""
    service = {"name": SERVICE, "api_token": ensure_secret(secrets, TOKEN_SECRET)}
    role = {
        "name": SERVICE,
        "scopes": ["admin:users", "admin:groups", "admin:servers"],
        "services": [SERVICE],
    }
    return service, role


@dataclass(frozen=True)
class Member:
    name: str
    groups: tuple[str, ...]
    role: str


@dataclass
class Roster:
    members: list[Member] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse(text: str, instructors_group: str) -> Roster:
    """Rows to members; every problem is collected, none stops the reading."""
    roster = Roster()
    reader = csv.DictReader(io.StringIO(text))
    missing = {"username", "groups", "role"} - set(reader.fieldnames or [])
    if missing:
        roster.errors.append(
            f"header: missing column(s) {', '.join(sorted(missing))} (need username,groups,role)"
        )
        return roster
    seen: dict[str, int] = {}
    for lineno, row in enumerate(reader, start=2):
        role = (row.get("role") or "").strip().lower() or "student"
        groups = tuple(g.strip() for g in (row.get("groups") or "").split(";") if g.strip())
        problems = []
        name = None
        try:
            name = checked_username(row.get("username") or "")
        except InvalidUsername as refused:
            problems.append(f"bad username {refused}")
        if name in seen:
            problems.append(f"duplicate of line {seen[name]} ({name})")
        bad_groups = [shown(g) for g in groups if not re.fullmatch(dshub_settings.IDP_NAME_PATTERN, g)]
        if bad_groups:
            problems.append(f"bad group name(s) {', '.join(bad_groups)}")
        if role not in ROLES:
            problems.append(f"unknown role {role!r} (use {', '.join(ROLES)})")
        if problems or name is None:
            roster.errors.append(f"line {lineno}: " + "; ".join(problems))
            continue
        seen[name] = lineno
        if role == "instructor" and instructors_group not in groups:
            groups = (*groups, instructors_group)
        roster.members.append(Member(name, groups, role))
    return roster


class Hub:
    """The few hub API calls the roster needs."""

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.session.request(method, f"{self.api_url}{path}", timeout=60, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"hub API {method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None

    def users(self) -> dict[str, dict[str, Any]]:
        return {u["name"]: u for u in self.call("GET", "/users?limit=100000")}

    def groups(self) -> dict[str, dict[str, Any]]:
        return {g["name"]: g for g in self.call("GET", "/groups?limit=100000")}


def apply(roster: Roster, hub: Hub) -> tuple[list[str], list[str]]:
    """Make the hub hold everything in the roster; return what changed and who was created."""
    changes = []
    created: list[str] = []
    users = hub.users()
    new = [m for m in roster.members if m.name not in users]
    for admin in (False, True):
        names = [m.name for m in new if (m.role == "admin") == admin]
        if names:
            hub.call("POST", "/users", json={"usernames": names, "admin": admin})
            created.extend(names)
            changes.append(f"created {'admin' if admin else 'user'}(s): {', '.join(names)}")
    for m in roster.members:
        if m.role == "admin" and m.name in users and not users[m.name]["admin"]:
            hub.call("PATCH", f"/users/{quote(m.name, safe='')}", json={"admin": True})
            changes.append(f"made admin: {m.name}")
    groups = hub.groups()
    wanted: dict[str, list[str]] = {}
    for m in roster.members:
        for g in m.groups:
            wanted.setdefault(g, []).append(m.name)
    for group, names in sorted(wanted.items()):
        if group not in groups:
            hub.call("POST", f"/groups/{quote(group, safe='')}")
            changes.append(f"created group: {group}")
            present: set[str] = set()
        else:
            present = set(groups[group]["users"])
        missing = [n for n in names if n not in present]
        if missing:
            hub.call("POST", f"/groups/{quote(group, safe='')}/users", json={"users": missing})
            changes.append(f"added to {group}: {', '.join(missing)}")
    return changes, created


def initial_passwords(names: list[str], folder: Path) -> list[str]:
    """``name: password`` for each user whose one-time initial password is still unused."""
    found = []
    for name in names:
        path = folder / escape_name(name)
        if path.is_file():
            found.append(f"{name}: {path.read_text().strip()}")
    return found


def archive(name: str, hub: Hub, pool: DataPool, remove_from_hub: bool, today: datetime.date) -> list[str]:
    """Off-board a user: optionally remove them from the hub, then archive their folder."""
    changes = []
    if name in hub.users():
        if not remove_from_hub:
            raise RuntimeError(f"{name} is still a hub user: remove them first, or pass --remove-from-hub")
        hub.call("DELETE", f"/users/{quote(name, safe='')}/server")
        for _ in range(120):
            if not hub.call("GET", f"/users/{quote(name, safe='')}")["servers"]:
                break
            time.sleep(0.5)
        hub.call("DELETE", f"/users/{quote(name, safe='')}")
        changes.append(f"removed from the hub: {name}")
    target = pool.archive_user(name, today.isoformat())
    changes.append(f"archived {name}'s folder to {target}")
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.cli.roster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="create users and groups from a CSV (- for stdin)")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    arc = sub.add_parser("archive", help="move a user's folder to <pool>/archive/<name>-<date>")
    arc.add_argument("name")
    arc.add_argument("--remove-from-hub", action="store_true", help="stop and delete the hub user first")
    parser.add_argument("--api-url", default=HUB_API_URL_IN_HUB)
    args = parser.parse_args(argv)

    settings = dshub_settings.load()
    hub = Hub(args.api_url, ensure_secret(secrets_dir(), TOKEN_SECRET))
    try:
        if args.command == "import":
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
            roster = parse(text, settings.instructors_group)
            if roster.errors:
                print("roster NOT applied; fix these rows:", *roster.errors, sep="\n  ", file=sys.stderr)
                return 1
            changes, created = ([], []) if args.dry_run else apply(roster, hub)
            print(f"{len(roster.members)} row(s) valid" + (" (dry run)" if args.dry_run else ""))
            passwords = initial_passwords(created, initial_passwords_dir())
            if passwords:
                print("initial passwords (each works once; hand them out privately):", *passwords, sep="\n  ")
        else:
            # Not checked against the rule: a user named before it existed can be off-boarded too.
            name = normalize_username(args.name)
            changes = archive(
                name, hub, DataPool.from_settings(settings), args.remove_from_hub, datetime.date.today()
            )
    except (RuntimeError, OSError) as error:
        print(f"dshub: {error}", file=sys.stderr)
        return 1
    print("\n".join(changes) if changes else "no changes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
