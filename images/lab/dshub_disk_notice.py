"""JupyterLab notification: the user's files near (or over) their disk quota.

JupyterLab asks its server once per page load whether to show an update
notification (``/lab/api/update``); ``LabApp.check_for_updates_class`` decides
the answer. This class answers with the user's disk use instead of a version
check (which would also reach out to PyPI), and only near the quota: below
``DSHUB_DISK_WARN_PERCENT`` there is nothing to say.

The figures come from the hub at the server's start (``DSHUB_DISK_*``,
spawner/spawn/docker.py). Where the pool enforces the quota with project quotas,
``statvfs`` of the home reports the project's limit and live use, and that wins.
"""

from __future__ import annotations

import os

from jupyterlab.handlers.announcements import CheckForUpdateABC


def size(value: int) -> str:
    """As the hub writes sizes (spawner.core.units.size_for_people): 7.5M, 930M, 9.6G, 12G."""
    units = (("T", 2**40), ("G", 2**30), ("M", 2**20))
    unit, scale = next(((u, s) for u, s in units if value >= s), units[-1])
    number = value / scale
    text = f"{number:.1f}" if number < 10 else f"{number:.0f}"
    return text.removesuffix(".0") + unit


def live_use(home: str, quota: int) -> int | None:
    """Bytes used now, when the home's filesystem reports its project quota (the size is the quota)."""
    try:
        st = os.statvfs(home)
    except OSError:
        return None
    total = st.f_blocks * st.f_frsize
    if not quota <= total < quota + st.f_frsize:
        return None
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def notice(env: dict[str, str] | os._Environ[str]) -> str | None:
    """The notification's Markdown text, or None below the warning threshold."""
    try:
        quota = int(env["DSHUB_DISK_QUOTA"])
        used_at_start = int(env["DSHUB_DISK_USED"])
        warn = int(env["DSHUB_DISK_WARN_PERCENT"])
        refuse = int(env["DSHUB_DISK_REFUSE_PERCENT"])
    except (KeyError, ValueError):
        return None  # no quota
    live = live_use(env.get("HOME", "/home/jovyan"), quota)
    used = used_at_start if live is None else live
    percent = 100 * used / quota
    if percent < warn:
        return None
    verb = "use" if live is not None else "used"
    when = "" if live is not None else " when this server started"
    return (
        f"**Disk quota**: your files {verb} {size(used)}{when}, {percent:.0f}% of your "
        f"{size(quota)} quota. Delete or move what you no longer need: above {refuse}% "
        f"({size(quota * refuse // 100)}) no new server of yours can be started."
    )


class DiskQuotaNotice(CheckForUpdateABC):
    async def __call__(self) -> str | None:  # type: ignore[override]
        return notice(os.environ)
