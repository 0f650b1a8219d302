"""IPython extension: say in the next cell that the previous kernel ran out of memory.

When a kernel passes the server's memory limit, the kernel (not the whole
server) is killed by the engine and JupyterLab only says "the kernel died". The
container's memory cgroup counts such kills; a kernel that starts after a new
one tells its user why, with the limit, in the output of their first cell.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# cgroup v2, then v1: the container's own memory controller.
COUNTERS = (Path("/sys/fs/cgroup/memory.events"), Path("/sys/fs/cgroup/memory/memory.oom_control"))
# Kills already told about. /tmp is the container's own, like the kill counter.
SEEN = Path("/tmp/.dshub-oom-kills-seen")  # noqa: S108


def oom_kills() -> int | None:
    for path in COUNTERS:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return None


def limit_text() -> str:
    try:
        limit = int(os.environ["MEM_LIMIT"])  # bytes, set by the hub
    except (KeyError, ValueError):
        return "its limit"
    return f"{limit / 2**20:.0f} MiB" if limit < 2**30 else f"{limit / 2**30:.1f} GiB"


def load_ipython_extension(ip: Any) -> None:
    kills = oom_kills()
    if kills is None:
        return
    try:
        seen = int(SEEN.read_text())
    except (OSError, ValueError):
        seen = 0
    if kills <= seen:
        return
    SEEN.write_text(str(kills))
    message = (
        f"dshub: your previous kernel was stopped because this server ran out of memory "
        f"({limit_text()}). Its variables are gone. Use less memory (smaller data, del large "
        f"objects), or stop this server and start it with a profile that has more memory.\n"
    )

    def tell(*_: Any) -> None:
        ip.events.unregister("pre_run_cell", tell)
        sys.stderr.write(message)

    ip.events.register("pre_run_cell", tell)
