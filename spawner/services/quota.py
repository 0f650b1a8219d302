"""The quota service: each user's folder held to their disk quota by the filesystem.

With ``DSHUB_DISK_QUOTA_ENFORCE=project`` this runs as a service of the stack
(compose profile ``quota``), the only part with CAP_SYS_ADMIN (which setting a
quota limit needs), so the hub needs none. The hub writes each user's quota to
the limits file (:class:`spawner.pool.disk.LimitsFile`) when it starts their server;
this service makes that the hard limit of the folder's *project quota*:

* the folder's project id is its owner's uid (never issued twice, see
  :mod:`spawner.pool.datapool`), set with the inherit flag on the folder and on
  everything already in it, so whatever is created there later is counted too;
* the project's block limit is the quota; a write beyond it fails (EDQUOT).

It works on XFS mounted with ``prjquota`` and on ext4 with the ``project``
feature mounted with ``prjquota`` (both keep project ids in the inode and take
the same calls: the ``FS_IOC_FSSETXATTR`` ioctl and ``quotactl_fd``). The kernel
interfaces are used directly, through descriptors: ``xfs_quota -x -c 'project
-s'`` walks the tree by path as root, and a folder a user swaps for a link
while it runs would lead it into someone else's files. Here every entry is
opened relative to its parent with ``O_NOFOLLOW``.

Every ``INTERVAL`` seconds the service reads the limits file and puts back any
limit that differs and the project id of each user's folder itself; the files
inside are marked once, when the folder is first seen (``adopted.json``: clear
it after putting files back from a backup), and touches :data:`APPLIED`, its
healthcheck. On a pool without enforced
project quotas it logs what to do and stays unhealthy, so ``make up`` stops there.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import os
import re
import signal
import stat
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from spawner.config import settings as dshub_settings
from spawner.config.layout import POOL_DIR, QUOTA_DIR
from spawner.pool.disk import LIMITS_FILE, read_limits
from spawner.services import heartbeat

log = logging.getLogger("dshub.quota")

INTERVAL = 1.0
# A full check of every folder, even when the limits file did not change.
RECHECK_SECONDS = 60.0
APPLIED = Path("/run/dshub-quota-applied")
# Folders whose whole tree has its project id, kept by the service: a folder is
# walked once, not at every start of the service.
ADOPTED_FILE = "adopted.json"
_FOLDER = re.compile(r"[a-z0-9-]{1,200}")

# <linux/fs.h>: struct fsxattr (28 bytes) and its ioctls.
_FSXATTR = struct.Struct("=IIIII8x")
FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FS_XFLAG_PROJINHERIT = 0x00000200
# <linux/quota.h>, <linux/dqblk_xfs.h>: quotactl commands of the XFS interface.
SYS_QUOTACTL_FD = 443  # the same number on every architecture (Linux 5.14+)
PRJQUOTA = 2
Q_XGETQUOTA = 0x5803
Q_XSETQLIM = 0x5804
Q_XGETQSTAT = 0x5805
FS_DQUOT_VERSION = 1
FS_PROJ_QUOTA = 2
FS_DQ_BHARD = 1 << 3
FS_QUOTA_PDQ_ACCT = 1 << 4
FS_QUOTA_PDQ_ENFD = 1 << 5
# struct fs_disk_quota (112 bytes) up to the block counts; the rest is zero.
_DQUOT = struct.Struct("=bbHIQQQQQQ")
_DQUOT_SIZE = 112
BASIC_BLOCK = 512
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)


class QuotaError(RuntimeError):
    """Project quotas cannot be used on the pool; the message says what to do."""


def quotactl(fd: int, command: int, project: int, buffer: ctypes.Array[ctypes.c_char] | None) -> None:
    if _libc.syscall(SYS_QUOTACTL_FD, fd, (command << 8) | PRJQUOTA, project, buffer) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def get_project(fd: int) -> tuple[int, bool]:
    """The project id of an open file or folder, and whether it passes it on to new entries."""
    buffer = bytearray(_FSXATTR.size)
    fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buffer)
    xflags, _, _, project, _ = _FSXATTR.unpack(buffer)
    return project, bool(xflags & FS_XFLAG_PROJINHERIT)


def set_project(fd: int, project: int, inherit: bool) -> None:
    buffer = bytearray(_FSXATTR.size)
    fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buffer)
    xflags, extsize, nextents, _, cowextsize = _FSXATTR.unpack(buffer)
    if inherit:
        xflags |= FS_XFLAG_PROJINHERIT
    fcntl.ioctl(fd, FS_IOC_FSSETXATTR, _FSXATTR.pack(xflags, extsize, nextents, project, cowextsize))


def dquot(project: int, hard_bytes: int) -> bytes:
    """struct fs_disk_quota setting only the block hard limit (in 512-byte blocks; 0: none)."""
    head = _DQUOT.pack(
        FS_DQUOT_VERSION, FS_PROJ_QUOTA, FS_DQ_BHARD, project, -(-hard_bytes // BASIC_BLOCK), 0, 0, 0, 0, 0
    )
    return head.ljust(_DQUOT_SIZE, b"\0")


def get_limit(fs_fd: int, project: int) -> int:
    """The project's block hard limit in bytes (0: none, or a project never limited)."""
    buffer = ctypes.create_string_buffer(_DQUOT_SIZE)
    try:
        quotactl(fs_fd, Q_XGETQUOTA, project, buffer)
    except OSError as e:
        if e.errno == errno.ENOENT:  # no record of the project yet
            return 0
        raise
    return _DQUOT.unpack_from(buffer.raw)[4] * BASIC_BLOCK


def set_limit(fs_fd: int, project: int, hard_bytes: int) -> None:
    quotactl(fs_fd, Q_XSETQLIM, project, ctypes.create_string_buffer(dquot(project, hard_bytes), _DQUOT_SIZE))


def same_limit(live: int, wanted: int) -> bool:
    """Whether a limit read back is the one wanted: filesystems round it up to their block (<= 64K)."""
    return live == wanted == 0 or (wanted > 0 and 0 <= live - wanted < 65536)


def check_enforced(fs_fd: int, where: Path) -> None:
    """Raise QuotaError unless the filesystem holding fs_fd enforces project quotas."""
    buffer = ctypes.create_string_buffer(128)
    fix = (
        f"put the pool ({where}) on XFS mounted with -o prjquota (fstab: defaults,prjquota), or on "
        "ext4 made with -O quota,project and mounted with -o prjquota; or set DSHUB_DISK_QUOTA_ENFORCE=off"
    )
    try:
        quotactl(fs_fd, Q_XGETQSTAT, 0, buffer)
    except OSError as e:
        if e.errno == errno.ENOSYS:
            raise QuotaError(
                f"the pool's filesystem has no quota support in this kernel (quotactl: {e.strerror}): {fix}."
            ) from None
        raise QuotaError(f"project quotas are not on for the pool (quotactl: {e.strerror}): {fix}.") from None
    flags = struct.unpack_from("=H", buffer.raw, 2)[0]
    if flags & (FS_QUOTA_PDQ_ACCT | FS_QUOTA_PDQ_ENFD) != FS_QUOTA_PDQ_ACCT | FS_QUOTA_PDQ_ENFD:
        raise QuotaError(f"project quotas are not enforced on the pool: {fix}.")


def adopt(folder_fd: int, project: int) -> int:
    """Give the folder and everything in it the project id (folders: with inherit). Entries done.

    The folder itself first: whatever is created meanwhile inherits the id. Only
    regular files and folders can take one (a link's few bytes stay uncounted);
    each is opened relative to its parent with O_NOFOLLOW and checked open, so a
    link swapped in is never followed. Open folders are at most the tree's depth.
    """
    set_project(folder_fd, project, inherit=True)
    done = 1
    # Each level: its descriptor and the names of the folders in it still to visit.
    stack: list[tuple[int, list[str]]] = [(os.dup(folder_fd), [])]
    try:
        _visit(stack[-1], project)
        while stack:
            fd, folders = stack[-1]
            if not folders:
                os.close(stack.pop()[0])
                continue
            try:
                child = os.open(folders.pop(), _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # gone, or now a link
            set_project(child, project, inherit=True)
            stack.append((child, []))
            done += 1 + _visit(stack[-1], project)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return done


def _visit(level: tuple[int, list[str]], project: int) -> int:
    """Set the project of the regular files of a folder; list its folders to visit."""
    fd, folders = level
    done = 0
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue  # a link, a socket, a pipe: no project id of their own
                child = os.open(entry.name, _FILE_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                if stat.S_ISREG(os.fstat(child).st_mode):
                    set_project(child, project, inherit=False)
                    done += 1
            finally:
                os.close(child)
    return done


@dataclass
class Enforcer:
    """Applies the limits file to the pool; remembers which folders are adopted."""

    pool: Path
    state_dir: Path
    uid_min: int
    uid_max: int

    def __post_init__(self) -> None:
        self.adopted_path = self.state_dir / ADOPTED_FILE
        try:
            self.adopted: dict[str, int] = json.loads(self.adopted_path.read_text())
        except (FileNotFoundError, ValueError):
            self.adopted = {}

    def apply(self) -> list[str]:
        """One round over every folder of the limits file; the problems, one line each."""
        fs_fd = os.open(self.pool, _DIR_FLAGS)
        try:
            check_enforced(fs_fd, self.pool)
            limits = read_limits(self.state_dir / LIMITS_FILE)
            users_fd = os.open("users", _DIR_FLAGS, dir_fd=fs_fd)
            try:
                return [
                    problem
                    for folder, quota in sorted(limits.items())
                    if (problem := self._apply_one(fs_fd, users_fd, folder, quota))
                ]
            finally:
                os.close(users_fd)
        finally:
            os.close(fs_fd)

    def _apply_one(self, fs_fd: int, users_fd: int, folder: str, quota: int) -> str | None:
        if not _FOLDER.fullmatch(folder):
            return f"users/{folder!r}: not a folder name the hub makes; skipped"
        try:
            fd = os.open(folder, _DIR_FLAGS, dir_fd=users_fd)
        except FileNotFoundError:
            return None  # archived or not made yet: nothing to hold
        except OSError as e:
            return f"users/{folder}: cannot be opened ({e.strerror}): an admin must look at it"
        try:
            project = os.fstat(fd).st_uid
            if not self.uid_min <= project <= self.uid_max:
                return (
                    f"users/{folder} is owned by uid {project}, outside DSHUB_UID_MIN..DSHUB_UID_MAX: "
                    "no project quota set"
                )
            current, inherits = get_project(fd)
            if self.adopted.get(folder) != project:
                entries = adopt(fd, project)
                self.adopted[folder] = project
                self._save_adopted()
                log.info("users/%s: project %d set on %d entries", folder, project, entries)
            elif (current, inherits) != (project, True):
                # The folder's own mark only: its content was marked when it was adopted, and
                # walking it again each time its owner resets this would stall every other folder.
                set_project(fd, project, inherit=True)
                log.info("users/%s: project %d set again on the folder", folder, project)
            # A first adoption of a large folder takes a while: still alive.
            APPLIED.touch()
            if not same_limit(get_limit(fs_fd, project), quota):
                set_limit(fs_fd, project, quota)
                log.info("users/%s: project %d limited to %s", folder, project, quota or "no limit")
        except OSError as e:
            return f"users/{folder}: {e.strerror}"
        finally:
            os.close(fd)
        return None

    def _save_adopted(self) -> None:
        tmp = self.adopted_path.with_name(f".{ADOPTED_FILE}.tmp")
        tmp.write_text(json.dumps(self.adopted, sort_keys=True) + "\n")
        os.replace(tmp, self.adopted_path)


def run(enforcer: Enforcer) -> None:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    limits = enforcer.state_dir / LIMITS_FILE
    applied_stamp: float | None = None
    next_full = 0.0
    reported = ""

    def report(problems: list[str]) -> None:
        nonlocal reported
        text = "\n".join(problems)
        if text and text != reported:
            log.error("%s", text)
        reported = text

    while not stopping:
        stamp = limits.stat().st_mtime if limits.exists() else 0.0
        if stamp != applied_stamp or time.monotonic() >= next_full:
            try:
                report(enforcer.apply())
            except (QuotaError, OSError, ValueError) as e:
                # Unhealthy: make up stops here, and no one believes a limit holds.
                report([str(e)])
                APPLIED.unlink(missing_ok=True)
                applied_stamp = None
                time.sleep(5 * INTERVAL)
                continue
            applied_stamp, next_full = stamp, time.monotonic() + RECHECK_SECONDS
        APPLIED.touch()
        time.sleep(INTERVAL)


def enforce() -> None:
    settings = dshub_settings.load()
    run(Enforcer(POOL_DIR, QUOTA_DIR, settings.uid_min, settings.uid_max))


def main(argv: list[str] | None = None) -> int:
    return heartbeat.service_main("quota", __doc__, {"run": lambda args: enforce()}, argv)


if __name__ == "__main__":
    sys.exit(main())
