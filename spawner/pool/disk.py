"""Disk quotas, as the hub counts them: each user's pool folder against their quota.

A quota is a size per user, for their whole pool folder (all their servers share
it): ``DSHUB_DISK_QUOTA``, or what ``profiles.yaml`` gives their groups
(:meth:`spawner.config.profiles.Profiles.disk_quota`). Everywhere it is a soft limit:

* at every start the hub measures the folder; above ``DSHUB_DISK_QUOTA_WARN``
  percent the spawn page warns, above ``DSHUB_DISK_QUOTA_REFUSE`` percent no new
  server starts, with a message that names the use and the quota;
* the server gets the figures (``DSHUB_DISK_*``), and JupyterLab shows the
  warning as a notification (images/lab/dshub_disk_notice.py);
* ``make usage`` shows each running user's use against their quota.

With ``DSHUB_DISK_QUOTA_ENFORCE=project`` it is a hard limit too: the hub writes
each user's quota to :data:`LIMITS_FILE`, and the quota service
(:mod:`spawner.services.quota`) makes it the folder's project quota. Then the
filesystem itself reports the folder's use (``statvfs`` of a folder in a
project gives the project's limit and use): no walk at all.

Otherwise the folder is walked, never following a link, and the walk stops after
:data:`SCAN_LIMIT` entries: a user with millions of small files costs a bounded
time, and their figure is then a lower bound ("at least"), still enough to refuse.
Walks run on :data:`WALKERS` threads of their own, never on the hub's event loop
or its engine threads, and starts of one user at once share one walk.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from spawner.core.units import size_for_people

# Entries (files, folders, links) looked at in one folder's walk: about 2 s on a
# warm cache, longer on a cold disk.
SCAN_LIMIT = 1_000_000
# Deeper folders are not counted (the figure says "at least"): one descriptor per level.
MAX_DEPTH = 256
WALKERS = 2
# Written by the hub, read by the quota service: escaped folder name -> bytes (0: no limit).
LIMITS_FILE = "limits.json"


@dataclass(frozen=True)
class DiskUsage:
    """Bytes a folder holds; ``complete`` False: the walk stopped early, so at least this."""

    used: int
    complete: bool = True
    # True: the filesystem's project quota holds the folder to its quota.
    enforced: bool = False


@dataclass(frozen=True)
class QuotaState:
    """A folder's use against its quota, and what the hub makes of it."""

    usage: DiskUsage
    quota: int | None
    warn_percent: int
    refuse_percent: int

    @property
    def percent(self) -> float:
        return 100.0 * self.usage.used / self.quota if self.quota else 0.0

    @property
    def refused(self) -> bool:
        return self.quota is not None and self.usage.used > self.quota * self.refuse_percent / 100

    @property
    def warned(self) -> bool:
        return self.quota is not None and self.percent >= self.warn_percent

    def summary(self) -> str:
        """For the spawn page: "Your files use 1.2G of your 10G disk quota (12%)"."""
        if self.quota is None:
            return f"Your files use {self._used()}"
        quota = size_for_people(self.quota)
        return f"Your files use {self._used()} of your {quota} disk quota ({self.percent:.0f}%)"

    def warning(self) -> str:
        """Near the quota: what it means and what to do."""
        return (
            f"{self.summary()}. Delete or move what you no longer need: above "
            f"{self._refuse_size()} no new server of yours can be started."
        )

    def refusal(self) -> str:
        return (
            f"{self.summary()}, over the {self._refuse_size()} up to which a server can start. "
            "Delete files from a server that is still running, or ask an admin to raise your quota."
        )

    def _refuse_size(self) -> str:
        assert self.quota is not None
        return f"{self.refuse_percent}% ({size_for_people(self.quota * self.refuse_percent // 100)})"

    def _used(self) -> str:
        return (
            size_for_people(self.usage.used)
            if self.usage.complete
            else f"at least {size_for_people(self.usage.used)}"
        )


class _ScanLimit(Exception):
    """More entries than a walk may count."""


def tree_usage(dir_fd: int, limit: int = SCAN_LIMIT) -> DiskUsage:
    """Bytes on disk under an open directory, links never followed, at most ``limit`` entries.

    Folders are opened relative to their parent with O_NOFOLLOW: a folder the user
    swaps for a link while it is walked is skipped, never entered. One folder per
    level is open at a time (the names of the others wait), so a user's tree costs
    the hub at most MAX_DEPTH file descriptors however wide it is; a folder that
    cannot be entered, or a tree deeper than that, makes the figure "at least".
    """
    total = os.fstat(dir_fd).st_blocks * 512
    seen = 0
    complete = True

    def scan(fd: int) -> list[str]:
        """Count a folder's entries; the names of its subfolders, to enter later."""
        nonlocal total, seen, complete
        folders = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    seen += 1
                    if seen > limit:
                        raise _ScanLimit
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # gone while we walked
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        folders.append(entry.name)
        except OSError:
            complete = False
        return folders

    # (open folder, names of its subfolders not yet entered), one per level.
    frames: list[tuple[int, list[str]]] = []
    try:
        frames.append((os.dup(dir_fd), []))
        frames[-1][1].extend(scan(frames[-1][0]))
        while frames:
            fd, pending = frames[-1]
            if not pending:
                os.close(fd)
                frames.pop()
                continue
            name = pending.pop()
            if len(frames) >= MAX_DEPTH:
                complete = False
                continue
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                complete = False  # gone, or now a link
                continue
            frames.append((child, []))
            frames[-1][1].extend(scan(child))
    except _ScanLimit:
        complete = False
    finally:
        for fd, _ in frames:
            os.close(fd)
    return DiskUsage(total, complete=complete)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def project_usage(dir_fd: int, quota: int | None) -> DiskUsage | None:
    """The folder's use as its project quota reports it, if that quota holds it to ``quota``.

    Only a sign that the limit is in force: the owner of a file may move it to
    another project (FS_IOC_FSSETXATTR), out of this count, so the hub's figure
    always comes from walking the folder.

    On a folder in a project with an enforced limit, XFS and ext4 answer statvfs
    with the project's limit as the size and its use as the used blocks. A size
    equal to the quota (up to a block: limits are kept in blocks) is the proof.
    """
    if quota is None:
        return None
    st = os.fstatvfs(dir_fd)
    total = st.f_blocks * st.f_frsize
    if not quota <= total < quota + st.f_frsize:
        return None
    return DiskUsage((st.f_blocks - st.f_bfree) * st.f_frsize, enforced=True)


def measure(path: Path, quota: int | None, limit: int = SCAN_LIMIT) -> DiskUsage:
    """A user's folder by a bounded walk, and whether a project quota holds it."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return DiskUsage(0)  # a first start: the folder is made later
    try:
        walked = tree_usage(fd, limit)
        return replace(walked, enforced=project_usage(fd, quota) is not None)
    finally:
        os.close(fd)


class UsageMeter:
    """Measures folders on threads of its own; requests for a folder share one measure.

    A figure is reused only by a request made before that measure began, so it
    is never older than the request: a user who just deleted files is counted
    afresh. Two starts of one user at once (a named server and the default one,
    a double click) share one walk; a class starting at once walks on
    ``walkers`` threads, never on the hub's event loop or its engine threads.
    """

    def __init__(self, walkers: int = WALKERS) -> None:
        self.executor = ThreadPoolExecutor(walkers, thread_name_prefix="disk-usage")
        self._lock = threading.Lock()
        self._folder_locks: dict[Path, threading.Lock] = {}
        self._figures: dict[tuple[Path, int | None], tuple[float, DiskUsage]] = {}

    def measure(self, path: Path, quota: int | None) -> DiskUsage:
        """Blocking: call it through :attr:`executor`."""
        asked = time.monotonic()
        with self._lock:
            folder_lock = self._folder_locks.setdefault(path, threading.Lock())
        with folder_lock:
            key = (path, quota)
            known = self._figures.get(key)
            if known is not None and known[0] >= asked:
                return known[1]
            began = time.monotonic()
            usage = measure(path, quota)
            self._figures[key] = (began, usage)
            return usage


class LimitsFile:
    """The hub's side of :data:`LIMITS_FILE`: each folder's quota, for the quota service.

    Rewritten whole (a new file renamed over the old) so the service never reads
    half of it; only the hub writes it, under a lock.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LIMITS_FILE
        self._lock = threading.Lock()

    def set(self, folder: str, quota: int | None) -> None:
        with self._lock:
            limits = read_limits(self.path)
            wanted = quota or 0
            if limits.get(folder) == wanted:
                return
            limits[folder] = wanted
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(limits, sort_keys=True, indent=0) + "\n")
            os.replace(tmp, self.path)


def read_limits(path: Path) -> dict[str, int]:
    """The limits file; empty when there is none yet. A malformed one is an error, never half-read."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in data.items()
    ):
        raise ValueError(f"{path} must map folder names to byte counts")
    return data
