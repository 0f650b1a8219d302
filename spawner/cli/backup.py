"""`make backup` / `make restore`: the hub's state and the pool in one dated archive.

What a restore on a fresh machine needs, taken consistently while the hub runs:

* the hub's SQLite databases (JupyterHub's: users, groups, shares, tokens; the
  OAuth identity bindings) through SQLite's online backup, never a file copy
  that could catch a write half-done;
* the password database (the same, or entry by entry for a non-SQLite dbm);
* the secrets (cookie secret, crypt key, proxy API password, service tokens,
  unused initial passwords): sessions, encrypted auth state and tokens stay valid;
* the pool, as GNU tar stores it: numeric owners (the uid model), modes (setgid
  group folders), links as links, never followed; and ``uids.record``.

and the operator's ``profiles.yaml`` (``DSHUB_CONFIG_DIR``, read-only in the hub:
``make restore`` puts it back on the host when the host has none). The archive is
a gzip'd tar on stdout; the Makefile writes it 0600, because it holds every
secret and every user's files.
``--no-pool`` leaves the pool out, for pools backed up by their own snapshots.

Restore runs in a one-off hub container with the hub stopped (``make restore``),
into empty volumes and, when the archive holds the pool, an empty pool: it
refuses to overwrite a pool that holds users, so a restore never mixes two
deployments' files.
"""

from __future__ import annotations

import argparse
import datetime
import dbm
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from spawner.config.layout import CONFIG_DIR, DATA_DIR, POOL_DIR

FORMAT = 1
SQLITE_FILES = ("jupyterhub.sqlite", "identities.sqlite")
PASSWORDS = "passwords.dbm"


def _sqlite_copy(source: Path, target: Path) -> None:
    # Made 0600 before SQLite opens it: the copy holds what the original does.
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _passwords_copy(source: Path, target: Path) -> None:
    if dbm.whichdb(str(source)) == "dbm.sqlite3":
        _sqlite_copy(source, target)
        return
    with dbm.open(str(source), "r") as src, dbm.open(str(target), "n", 0o600) as dst:
        for key in src.keys():
            dst[key] = src[key]


def stage_hub_state(data_dir: Path, stage: Path) -> list[str]:
    """Copy the hub's state into ``stage/hub``; the names of what was taken."""
    hub = stage / "hub"
    hub.mkdir(mode=0o700)
    taken = []
    for name in SQLITE_FILES:
        if (data_dir / name).exists():
            _sqlite_copy(data_dir / name, hub / name)
            taken.append(name)
    if (data_dir / PASSWORDS).exists() or dbm.whichdb(str(data_dir / PASSWORDS)):
        _passwords_copy(data_dir / PASSWORDS, hub / PASSWORDS)
        taken.append(PASSWORDS)
    if (data_dir / "secrets").is_dir():
        shutil.copytree(data_dir / "secrets", hub / "secrets", symlinks=True)
        taken.append("secrets")
    return taken


def create(
    out: int, data_dir: Path = DATA_DIR, pool: Path | None = POOL_DIR, config: Path = CONFIG_DIR
) -> None:
    """Write the archive (gzip'd tar) to the file descriptor ``out``."""
    with tempfile.TemporaryDirectory(prefix="dshub-backup-") as tmp:
        stage = Path(tmp)
        taken = stage_hub_state(data_dir, stage)
        manifest = {
            "format": FORMAT,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "hub": taken,
            "pool": pool is not None,
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        members = ["-C", str(stage), "manifest.json", "hub"]
        if (config / "profiles.yaml").is_file():
            members += ["-C", str(config.parent), f"{config.name}/profiles.yaml"]
        if pool is not None:
            members += ["-C", str(pool.parent), pool.name]
        # Users keep working meanwhile: a file that changes or goes while tar reads it
        # is GNU tar's exit code 1, a warning (that file as it was, or not at all);
        # only 2 and above mean the archive is broken.
        done = subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "--warning=no-file-changed", "-czpf", "-", *members],
            stdout=out,
            check=False,
        )
        if done.returncode > 1:
            raise RuntimeError(f"tar failed (exit code {done.returncode}): the archive is incomplete")


def restore(source: int, data_dir: Path = DATA_DIR, pool: Path = POOL_DIR) -> dict[str, object]:
    """Unpack an archive from the file descriptor ``source`` into empty hub state and pool."""
    if (data_dir / "jupyterhub.sqlite").exists():
        raise RuntimeError(f"the hub already has a database ({data_dir}): restore into fresh volumes")
    pool.mkdir(parents=True, exist_ok=True)
    # Unpacked inside the pool, so that its folders are moved in place, not copied:
    # the pool and the hub's volume are different filesystems.
    with tempfile.TemporaryDirectory(prefix=".dshub-restore-", dir=pool) as tmp:
        unpack = Path(tmp)
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-xzpf", "-", "-C", str(unpack)], stdin=source, check=True
        )
        manifest = json.loads((unpack / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            raise RuntimeError(f"archive format {manifest.get('format')!r}: this dshub reads format {FORMAT}")
        users = pool / "users"
        if manifest["pool"] and (
            (users.is_dir() and any(users.iterdir()))
            or (pool / "uids.record").exists()
            or (pool / "archive").exists()
        ):
            raise RuntimeError(
                f"the pool ({pool}) already holds users, archived users or a uid record: "
                "restore only into an empty pool"
            )
        for entry in (unpack / "hub").iterdir():
            target = data_dir / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # e.g. secrets a first start made before the restore
            shutil.move(entry, target)
        if manifest["pool"]:
            for entry in (unpack / POOL_DIR.name).iterdir():
                target = pool / entry.name
                if target.is_dir() and not target.is_symlink():
                    target.rmdir()  # an empty folder the hub made at its first start
                os.replace(entry, target)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.cli.backup", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("create", help="write the archive to stdout")
    make.add_argument("--no-pool", action="store_true", help="leave the pool out (snapshotted on its own)")
    sub.add_parser("restore", help="read an archive from stdin into fresh volumes and an empty pool")
    args = parser.parse_args(argv)
    try:
        if args.command == "create":
            if os.isatty(sys.stdout.fileno()):
                parser.error("the archive goes to stdout: redirect it to a file (make backup does)")
            create(sys.stdout.fileno(), pool=None if args.no_pool else POOL_DIR)
        else:
            manifest = restore(sys.stdin.fileno())
            print(f"restored the backup of {manifest['created']}: {', '.join(manifest['hub'])}", end="")
            print(" and the pool" if manifest["pool"] else " (no pool in it)")
    except (RuntimeError, OSError, sqlite3.Error, subprocess.CalledProcessError) as error:
        print(f"dshub: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
