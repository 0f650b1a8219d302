"""The host data pool: safe names, per-user uids, group gids, link-safe directory work.

Layout (docs/datapool.md)::

    <pool>/users/<user>     0700  user's uid:gid      private files, the user's HOME
    <pool>/groups/<group>   2770  root:<group gid>    a group's shared folder (setgid)
    <pool>/shared           2775  root:<instructors>  course material, read-only for students
    <pool>/archive/<user>-<date>                      off-boarded users' folders, untouched
    <pool>/uids.record      0600  root                every uid ever issued, append-only

The pool is the record of who has which id: an existing folder keeps its owner
(users) or group (groups), so ids survive hub restarts and even the loss of the
hub database. ``uids.record`` also remembers the uids of folders that are gone:
a uid is never issued twice, or a newcomer would own whatever files of a former
user remain elsewhere (backups, group folders, a shared server's /tmp).

Names come from an identity provider and are hostile: every path component is an
escaped name (the same escaping as container names), and every directory is
opened relative to a trusted parent with ``O_NOFOLLOW``, so a link a user planted
is never followed by the hub.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import os
import re
import stat
import string
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from escapism import escape

from spawner.config.layout import POOL_DIR
from spawner.core.names import shown

if TYPE_CHECKING:
    from spawner.config.settings import Settings

# Longer escaped names are cut and suffixed with a hash, keeping paths and container
# names short. Escaping never yields "--" (a "-" is always followed by two hex
# digits), so a hashed name can never equal an escaped one.
MAX_ESCAPED = 100
_SAFE = frozenset(string.ascii_lowercase + string.digits)
# uids that are never handed out even inside the configured range.
_RESERVED_IDS = frozenset({65534, 65535})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
RECORD_NAME = "uids.record"
_RECORD_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_RECORD_LINE = re.compile(r"([0-9]{1,10}) ([a-z0-9-]+) ([0-9]{4}-[0-9]{2}-[0-9]{2})")
_RECORD_FORMAT = "'<uid> <escaped name> <YYYY-MM-DD>'"


class PoolError(RuntimeError):
    """The pool cannot serve a user; the message says what an admin should check."""


def escape_name(name: str) -> str:
    """Docker- and path-safe, injective form of a user or group name.

    Same rule as DockerSpawner: lowercase letters and digits stay, everything else
    (including uppercase, so ``Alice`` and ``alice`` differ) becomes ``-xx`` per byte.
    """
    if not name:
        raise ValueError("an empty name cannot be escaped")
    escaped = escape(name, _SAFE, escape_char="-").lower()
    if len(escaped) <= MAX_ESCAPED:
        return escaped
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
    return f"{escaped[: MAX_ESCAPED - 34]}--{digest}"


@dataclass(frozen=True)
class GroupFolder:
    """A group's shared folder and the gid that owns it."""

    name: str
    escaped: str
    gid: int
    path: Path
    host_path: Path


@dataclass(frozen=True)
class Account:
    """Where a user's files are and which ids own them."""

    name: str
    uid: int
    gid: int
    path: Path  # as the hub sees it
    host_path: Path  # as the engine sees it, for the bind mount


class DataPool:
    """The pool as mounted in the hub (``root``) and as the engine sees it (``host_root``)."""

    def __init__(
        self,
        root: Path,
        host_root: Path,
        uid_min: int,
        uid_max: int,
        gid_min: int = 60000,
        gid_max: int = 64999,
    ) -> None:
        if uid_min < 1000 or uid_min >= uid_max:
            raise ValueError(f"bad uid range {uid_min}..{uid_max}")
        if gid_min < 1000 or gid_min >= gid_max or not (gid_max < uid_min or gid_min > uid_max):
            raise ValueError(f"bad gid range {gid_min}..{gid_max} (must not overlap {uid_min}..{uid_max})")
        self.root = root
        self.host_root = host_root
        self.uid_min = uid_min
        self.uid_max = uid_max
        self.gid_min = gid_min
        self.gid_max = gid_max
        # The hub is one process; this lock makes "find a free uid, record it, create
        # the folder" atomic across its executor threads.
        self._lock = threading.Lock()
        # Pools made before uids.record existed: their folders' uids are recorded
        # once per process, so a later deleted archive cannot free its uid.
        self._folders_recorded = False

    @classmethod
    def from_settings(cls, settings: Settings, root: Path = POOL_DIR) -> DataPool:
        """The pool as the hub container mounts it, with the configured id ranges."""
        return cls(
            root=root,
            host_root=settings.pool_dir,
            uid_min=settings.uid_min,
            uid_max=settings.uid_max,
            gid_min=settings.gid_min,
            gid_max=settings.gid_max,
        )

    def user_path(self, username: str) -> Path:
        return self.root / "users" / escape_name(username)

    def ensure_user(self, username: str) -> Account:
        """The user's account, creating their folder (and uid) on first use."""
        entry = escape_name(username)
        users = self._ensure_dir(self.root, "users", mode=0o755)
        with self._open_dir(self.root) as root_fd, self._open_dir(users) as users_fd:
            with self._lock:
                ids = self._existing_owner(users_fd, entry)
                if ids is None:
                    uid = self._free_uid(root_fd, entry)
                    self._make_dir(users_fd, entry, uid, uid, 0o700)
                    ids = (uid, uid)
                elif not self._folders_recorded:
                    with self._open_record(root_fd) as record:
                        self._record_folders(root_fd, record)
        return Account(
            name=username,
            uid=ids[0],
            gid=ids[1],
            path=self.root / "users" / entry,
            host_path=self.host_root / "users" / entry,
        )

    def ensure_group(self, group: str) -> GroupFolder:
        """The group's folder (setgid, 2770, root:gid), creating it and its gid on first use."""
        entry = escape_name(group)
        with self._open_dir(self._ensure_dir(self.root, "groups", mode=0o755)) as groups_fd:
            with self._lock:
                gid = self._existing_group(groups_fd, entry)
                if gid is None:
                    gid = self._free_id(groups_fd, self.gid_min, self.gid_max, "DSHUB_GID_MIN/DSHUB_GID_MAX")
                    self._make_dir(groups_fd, entry, 0, gid, 0o2770)
        return GroupFolder(
            name=group,
            escaped=entry,
            gid=gid,
            path=self.root / "groups" / entry,
            host_path=self.host_root / "groups" / entry,
        )

    def ensure_shared(self, instructors_gid: int) -> Path:
        """``<pool>/shared``: readable by everyone, writable by the instructors' gid. Host path."""
        self._ensure_dir(self.root, "shared", mode=0o700)
        with self._open_dir(self.root) as root_fd:
            self._own(root_fd, "shared", 0, instructors_gid, 0o2775)
        return self.host_root / "shared"

    def ensure_links(self, account: Account, links: dict[str, str]) -> None:
        """Links in the user's folder (e.g. ``groups`` -> ``/srv/groups``), owned by the user.

        Made only where the name is free: whatever the user keeps there (a folder, a
        file, their own link) stays as it is. They only lead people to the mounts,
        which never depend on them, so nothing in the folder is looked into.
        """
        with self._open_dir(self.root / "users") as users_fd:
            with _DirFd(os.open(account.path.name, _DIR_FLAGS, dir_fd=users_fd)) as home_fd:
                for name, target in links.items():
                    try:
                        # symlinkat: never follows, and fails on any existing entry, even a dangling link.
                        os.symlink(target, name, dir_fd=home_fd)
                    except FileExistsError:
                        continue
                    # lchown: never follows either. The user may swap in another entry between the
                    # two calls, but only one of their own: link(2) cannot reach across mounts, so
                    # no one else's file can be linked into their folder from their container.
                    os.chown(name, account.uid, account.gid, dir_fd=home_fd, follow_symlinks=False)

    def archive_user(self, username: str, stamp: str) -> Path:
        """Move the user's folder to ``<pool>/archive/<user>-<stamp>``; nothing inside is touched."""
        entry = escape_name(username)
        archive = self._ensure_dir(self.root, "archive", mode=0o700)
        with (
            self._open_dir(self.root) as root_fd,
            self._open_dir(self.root / "users") as users_fd,
            self._open_dir(archive) as archive_fd,
        ):
            st = os.stat(entry, dir_fd=users_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise PoolError(f"users/{entry} is not a directory: an admin must look at it")
            # An archive may be deleted some day: its uid must be in the record before.
            with self._lock, self._open_record(root_fd) as record:
                self._record_folders(root_fd, record)
            target = f"{entry}-{stamp}"
            suffix = 1
            while self._exists(archive_fd, target):
                suffix += 1
                target = f"{entry}-{stamp}-{suffix}"
            # rename moves the directory entry itself: links inside are neither followed nor changed.
            os.rename(entry, target, src_dir_fd=users_fd, dst_dir_fd=archive_fd)
        return archive / target

    @staticmethod
    def _exists(dir_fd: int, entry: str) -> bool:
        try:
            os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    @staticmethod
    def _existing_dir(parent_fd: int, where: str, entry: str) -> os.stat_result | None:
        """The entry's stat; None if absent; an error if it is a link or a file."""
        try:
            st = os.stat(entry, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            raise PoolError(
                f"{where}/{entry} in the pool is not a directory (a link or a file): "
                "an admin must move it away before it can be used"
            )
        return st

    def _existing_group(self, groups_fd: int, entry: str) -> int | None:
        st = self._existing_dir(groups_fd, "groups", entry)
        if st is None:
            return None
        if st.st_gid < 1000 or st.st_gid in _RESERVED_IDS:
            raise PoolError(f"groups/{entry} in the pool has gid {st.st_gid}, a system group: chgrp it")
        return st.st_gid

    def _existing_owner(self, parent_fd: int, entry: str) -> tuple[int, int] | None:
        st = self._existing_dir(parent_fd, "users", entry)
        if st is None:
            return None
        if st.st_uid < 1000 or st.st_uid in _RESERVED_IDS:
            raise PoolError(
                f"users/{entry} in the pool is owned by uid {st.st_uid}, a system account: "
                "an admin must chown it to the user's own uid (or move it away)"
            )
        return st.st_uid, st.st_gid

    def _free_uid(self, root_fd: int, entry: str) -> int:
        """The lowest uid never issued, already in the record (on disk) for ``entry``.

        Recorded before the folder exists, so a crash cannot leave a folder whose uid
        a later allocation would not see as taken.
        """
        with self._open_record(root_fd) as record:
            taken = self._record_folders(root_fd, record)
            uid = self._lowest_free(taken, self.uid_min, self.uid_max, "DSHUB_UID_MIN/DSHUB_UID_MAX")
            record.append([(uid, entry)])
        return uid

    def _record_folders(self, root_fd: int, record: _UidRecord) -> set[int]:
        """Every uid issued: the record's, after adding the owners of users/ and archive/ it lacks."""
        owners: dict[int, str] = {}
        for folder in ("users", "archive"):
            fd = self._open_child(root_fd, folder)
            if fd is None:
                continue
            with _DirFd(fd), os.scandir(fd) as entries:
                for e in entries:
                    st = e.stat(follow_symlinks=False)
                    for owner in (st.st_uid, st.st_gid):
                        if owner >= 1000 and owner not in _RESERVED_IDS:
                            owners.setdefault(owner, e.name)
        # Read after the scan: a uid issued meanwhile by another process is in the
        # record before its folder exists, so it is never appended twice.
        issued = record.read()
        record.append(sorted((uid, name) for uid, name in owners.items() if uid not in issued))
        self._folders_recorded = True
        return issued | owners.keys()

    def _open_record(self, root_fd: int) -> _UidRecord:
        return _UidRecord(root_fd, self.host_root / RECORD_NAME)

    def _open_child(self, root_fd: int, entry: str) -> int | None:
        """A directory directly under the pool root, or None if there is none."""
        try:
            return os.open(entry, _DIR_FLAGS, dir_fd=root_fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):  # a file; a link
                raise
            raise PoolError(f"{self.root / entry} must be a directory, not a link or file") from e

    @classmethod
    def _free_id(cls, parent_fd: int, low: int, high: int, settings: str) -> int:
        """Lowest id in low..high that owns (as user or group) no entry of the folder."""
        taken = set()
        with os.scandir(parent_fd) as entries:
            for e in entries:
                st = e.stat(follow_symlinks=False)
                taken.add(st.st_uid)
                taken.add(st.st_gid)
        return cls._lowest_free(taken, low, high, settings)

    @staticmethod
    def _lowest_free(taken: set[int], low: int, high: int, settings: str) -> int:
        for candidate in range(low, high + 1):
            if candidate not in taken and candidate not in _RESERVED_IDS:
                return candidate
        raise PoolError(f"no free id left in {low}..{high}: widen {settings}")

    @classmethod
    def _make_dir(cls, parent_fd: int, entry: str, uid: int, gid: int, mode: int) -> None:
        # Created 0700 so nobody can get in before it has its owner and final mode.
        os.mkdir(entry, mode=0o700, dir_fd=parent_fd)
        cls._own(parent_fd, entry, uid, gid, mode)

    @staticmethod
    def _own(parent_fd: int, entry: str, uid: int, gid: int, mode: int) -> None:
        """chown + chmod a directory through a descriptor that cannot be a link."""
        fd = os.open(entry, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    @staticmethod
    def _ensure_dir(root: Path, entry: str, mode: int) -> Path:
        """A root-owned directory directly under the (operator-controlled) pool root."""
        root.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(root, _DIR_FLAGS)
        try:
            try:
                os.mkdir(entry, mode=mode, dir_fd=root_fd)
            except FileExistsError:
                st = os.stat(entry, dir_fd=root_fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise PoolError(f"{root / entry} must be a directory, not a link or file") from None
        finally:
            os.close(root_fd)
        return root / entry

    @staticmethod
    def _open_dir(path: Path) -> _DirFd:
        return _DirFd(os.open(path, _DIR_FLAGS))


class _UidRecord:
    """``<pool>/uids.record``, open: every uid the pool issued, one line each, only appended to.

    Opened relative to the pool root's descriptor with ``O_NOFOLLOW``: a link planted
    at its place is refused, never followed. A line that cannot be parsed is an
    error, never skipped: skipping it could hand its uid out twice.
    """

    def __init__(self, root_fd: int, shown_path: Path) -> None:
        self.root_fd = root_fd
        self.path = shown_path
        try:
            self.fd = os.open(RECORD_NAME, _RECORD_FLAGS, 0o600, dir_fd=root_fd)
        except OSError as e:
            raise PoolError(
                f"{shown_path} cannot be opened ({e.strerror}): it must be a regular file, never a link; "
                "an admin must look at it"
            ) from e
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise PoolError(
                    f"{shown_path} must be a regular file owned by uid {os.geteuid()} "
                    "(whoever else can write it can make a uid be issued twice): an admin must look at it"
                )
            if stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(self.fd, 0o600)  # a copy restored from a backup may come back wider
        except BaseException:
            os.close(self.fd)
            raise

    def __enter__(self) -> _UidRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def read(self) -> set[int]:
        data = b""
        while chunk := os.pread(self.fd, 1 << 16, len(data)):
            data += chunk
        *lines, last = data.split(b"\n")
        uids = {self._parse(number, line) for number, line in enumerate(lines, start=1)}
        if last:
            # Appends are whole lines: a line without its newline is a torn write.
            raise self._error(len(lines) + 1, last, "the line is incomplete (no newline at its end)")
        return uids

    def append(self, issued: list[tuple[int, str]]) -> None:
        """Add lines and make them durable (file and its directory entry) before returning."""
        if not issued:
            return
        today = datetime.date.today().isoformat()
        data = "".join(f"{uid} {_record_name(name)} {today}\n" for uid, name in issued).encode("ascii")
        while data:
            data = data[os.write(self.fd, data) :]
        os.fsync(self.fd)
        os.fsync(self.root_fd)  # the file's own entry, the first time

    def _parse(self, number: int, line: bytes) -> int:
        match = _RECORD_LINE.fullmatch(line.decode("ascii", "replace"))
        if match is None:
            raise self._error(number, line, f"expected {_RECORD_FORMAT}")
        try:
            datetime.date.fromisoformat(match[3])
        except ValueError:
            raise self._error(number, line, f"{match[3]} is not a date") from None
        return int(match[1])

    def _error(self, number: int, line: bytes, problem: str) -> PoolError:
        return PoolError(
            f"{self.path}:{number}: cannot parse {shown(line.decode('utf-8', 'replace'))}: {problem}. "
            "An admin must correct the line, keeping its uid: every uid ever issued must stay "
            "in this file, or one could be handed out twice."
        )


def _record_name(entry: str) -> str:
    """A folder's name as one record field: hub-made names as they are, others escaped.

    Byte by byte, as :func:`escape_name` does, but never failing: a folder an admin
    named may not even be UTF-8.
    """
    if re.fullmatch(r"[a-z0-9-]+", entry):
        return entry
    return "".join(chr(b) if chr(b) in _SAFE else f"-{b:02x}" for b in os.fsencode(entry))


class _DirFd:
    """An open directory descriptor as a context manager."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
