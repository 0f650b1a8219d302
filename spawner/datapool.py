"""The host data pool: safe names, per-user uids, and link-safe directory work.

Layout: ``<pool>/users/<escaped-name>``, mode 0700, owned by the user's own uid and
gid. The pool is the record of who has which uid: an existing folder keeps its
owner, so uids survive hub restarts and even the loss of the hub database.

Names come from an identity provider and are hostile: every path component is an
escaped name (the same escaping as container names), and every directory is
opened relative to a trusted parent with ``O_NOFOLLOW``, so a link a user planted
is never followed by the hub.
"""

from __future__ import annotations

import hashlib
import os
import stat
import string
import threading
from dataclasses import dataclass
from pathlib import Path

from escapism import escape

# Longer escaped names are cut and suffixed with a hash, keeping paths and container
# names short. Escaping never yields "--" (a "-" is always followed by two hex
# digits), so a hashed name can never equal an escaped one.
MAX_ESCAPED = 100
_SAFE = frozenset(string.ascii_lowercase + string.digits)
# uids that are never handed out even inside the configured range.
_RESERVED_IDS = frozenset({65534, 65535})
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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
class Account:
    """Where a user's files are and which ids own them."""

    name: str
    uid: int
    gid: int
    path: Path  # as the hub sees it
    host_path: Path  # as the engine sees it, for the bind mount


class DataPool:
    """The pool as mounted in the hub (``root``) and as the engine sees it (``host_root``)."""

    def __init__(self, root: Path, host_root: Path, uid_min: int, uid_max: int) -> None:
        if uid_min < 1000 or uid_min >= uid_max:
            raise ValueError(f"bad uid range {uid_min}..{uid_max}")
        self.root = root
        self.host_root = host_root
        self.uid_min = uid_min
        self.uid_max = uid_max
        # The hub is one process; this lock makes "find a free uid, create the
        # folder" atomic across its executor threads.
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, object]) -> DataPool:
        # traitlets deep-copies config values into each spawner; all spawners must
        # share one pool, or each would get its own lock and could hand out one uid twice.
        return self

    def user_path(self, username: str) -> Path:
        return self.root / "users" / escape_name(username)

    def ensure_user(self, username: str) -> Account:
        """The user's account, creating their folder (and uid) on first use."""
        entry = escape_name(username)
        with self._open_dir(self._ensure_dir(self.root, "users", mode=0o755)) as users_fd:
            with self._lock:
                ids = self._existing_owner(users_fd, entry)
                if ids is None:
                    uid = self._free_uid(users_fd)
                    self._make_private_dir(users_fd, entry, uid, uid)
                    ids = (uid, uid)
        return Account(
            name=username,
            uid=ids[0],
            gid=ids[1],
            path=self.root / "users" / entry,
            host_path=self.host_root / "users" / entry,
        )

    def _existing_owner(self, parent_fd: int, entry: str) -> tuple[int, int] | None:
        try:
            st = os.stat(entry, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            raise PoolError(
                f"users/{entry} in the pool is not a directory (a link or a file): "
                "an admin must move it away before this user can start a server"
            )
        if st.st_uid < 1000 or st.st_uid in _RESERVED_IDS:
            raise PoolError(
                f"users/{entry} in the pool is owned by uid {st.st_uid}, a system account: "
                "an admin must chown it to the user's own uid (or move it away)"
            )
        return st.st_uid, st.st_gid

    def _free_uid(self, users_fd: int) -> int:
        taken = set()
        with os.scandir(users_fd) as entries:
            for e in entries:
                st = e.stat(follow_symlinks=False)
                taken.add(st.st_uid)
                taken.add(st.st_gid)
        for uid in range(self.uid_min, self.uid_max + 1):
            if uid not in taken and uid not in _RESERVED_IDS:
                return uid
        raise PoolError(
            f"no free uid left in {self.uid_min}..{self.uid_max}: widen DSHUB_UID_MIN/DSHUB_UID_MAX"
        )

    @staticmethod
    def _make_private_dir(parent_fd: int, entry: str, uid: int, gid: int) -> None:
        os.mkdir(entry, mode=0o700, dir_fd=parent_fd)
        fd = os.open(entry, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o700)
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


class _DirFd:
    """An open directory descriptor as a context manager."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
