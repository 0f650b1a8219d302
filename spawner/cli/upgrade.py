"""`make upgrade`: replace the hub with a new version while people keep working.

Runs on the host, after `make build` made the new images, with the compose
command line that `make` uses. The order is what keeps sessions alive:

1. back up the hub's state (database, passwords, secrets, profiles; not the
   pool, which an upgrade does not touch) with the running hub (a stopped one:
   with the new image), into ``backups/<project>-pre-upgrade-<date>.tar.gz``
   (0600);
2. stop the hub and migrate its database with the new image (JupyterHub's
   ``upgrade-db``, which also keeps a copy of the SQLite file beside it);
3. ``compose up``: the new hub (and whatever else changed) starts.

Users' servers are not touched: they keep running on their image until their
next start, which takes the new one. Traefik keeps serving their routes
throughout (the routes are in its rules volume), so open kernel, Lab and VS
Code connections go on; only what needs the hub itself (signing in, starting a
server, a server checking a new token) waits for the few seconds it is down.
Traefik is replaced only when its image or its static configuration changed
(its image is named after its Traefik version, its container carries the
configuration's digest): then open connections are cut once and Lab and VS
Code reconnect by themselves.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path


class UpgradeError(RuntimeError):
    """A step failed; the message says which and what was left as it was."""


def _compose(compose: list[str], *args: str, stdout: int | None = None) -> subprocess.CompletedProcess[bytes]:
    out = subprocess.PIPE if stdout is None else stdout
    return subprocess.run([*compose, *args], stdout=out, check=False)


def _hub_container(compose: list[str]) -> str:
    """The hub's running container, or ''."""
    return _compose(compose, "ps", "-q", "--status", "running", "hub").stdout.decode().strip()


def back_up(compose: list[str], backups: Path, project: str, hub: str) -> Path:
    """The hub's state before the upgrade, made by the running hub (else by a one-off of the new image)."""
    backups.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    archive = backups / f"{project}-pre-upgrade-{stamp}.tar.gz"
    partial = archive.with_name(archive.name + ".part")
    create = ("python3", "-m", "spawner.cli.backup", "create", "--no-pool")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        if hub:
            # docker exec, not compose exec: compose's exits 0 whatever the command did (engine 20.10).
            made = subprocess.run(["docker", "exec", "-i", hub, *create], stdout=out, check=False)
        else:
            made = _compose(compose, "run", "--rm", "--no-deps", "-T", "hub", *create, stdout=out.fileno())
    readable = subprocess.run(["tar", "-tzf", str(partial)], capture_output=True, check=False)
    if made.returncode or readable.returncode or not readable.stdout:
        partial.unlink()
        raise UpgradeError("the backup before the upgrade failed: nothing was changed")
    partial.rename(archive)
    return archive


def upgrade(compose: list[str], backups: Path, project: str) -> dict[str, float | str]:
    """Back up, migrate, replace; returns the backup's path and the seconds the hub was down."""
    hub = _hub_container(compose)
    archive = back_up(compose, backups, project, hub)
    print(f"dshub: backed up the hub's state to {archive}", flush=True)
    stopped = time.monotonic()
    # Also when it is not running: a hub restarting in a loop must not touch the database now.
    if _compose(compose, "stop", "hub", stdout=sys.stdout.fileno()).returncode:
        raise UpgradeError("could not stop the hub: nothing was changed")
    migrate = _compose(
        compose,
        "run", "--rm", "--no-deps", "-T", "hub",
        "jupyterhub", "upgrade-db", "-f", "/srv/dshub/jupyterhub_config.py",
        stdout=sys.stdout.fileno(),
    )  # fmt: skip
    if migrate.returncode:
        raise UpgradeError(
            f"the database migration failed; the hub is stopped. Restore its state with "
            f"`make restore FILE={archive}` (on fresh volumes) or start the old version again."
        )
    if _compose(compose, "up", "-d", "--wait", stdout=sys.stdout.fileno()).returncode:
        raise UpgradeError(f"the new version did not come up: see `make logs`; the backup is {archive}")
    return {"backup": str(archive), "hub_down_seconds": round(time.monotonic() - stopped, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.cli.upgrade", description=__doc__)
    parser.add_argument("--backups", type=Path, default=Path("backups"))
    parser.add_argument("--project", required=True)
    parser.add_argument("compose", nargs=argparse.REMAINDER, help="the compose command line, after --")
    args = parser.parse_args(argv)
    compose = args.compose[1:] if args.compose[:1] == ["--"] else args.compose
    try:
        result = upgrade(compose, args.backups, args.project)
    except UpgradeError as e:
        print(f"dshub: upgrade: {e}", file=sys.stderr)
        return 1
    print(f"dshub: upgraded; the hub was down {result['hub_down_seconds']} s, users' servers kept running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
