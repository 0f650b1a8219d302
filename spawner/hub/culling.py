"""Giving resources back: jupyterhub-idle-culler as a hub service.

A server's activity is what its Jupyter server reports to the hub: notebooks,
terminals and everything proxied by jupyter-server-proxy (RStudio, VS Code),
which records activity on every request and websocket message.
"""

from __future__ import annotations

import sys
from typing import Any

from spawner.core.constants import HUB_API_URL_IN_HUB

SERVICE = "idle-culler"


def check_interval(idle_timeout: int) -> int:
    """Seconds between activity reports and culler passes: a quarter of the timeout, 5 s..5 min.

    jupyterhub-singleuser reports activity every 5 min by default, so with a
    shorter timeout an active server would look idle to the culler.
    """
    if not idle_timeout:
        return 300
    return max(5, min(300, idle_timeout // 4))


def hub_service(idle_timeout: int, max_age: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The culler's service and its role, or None when culling is off."""
    if not idle_timeout:
        return None
    service = {
        "name": SERVICE,
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={idle_timeout}",
            f"--cull-every={check_interval(idle_timeout)}",
            f"--max-age={max_age}",
            # It runs in the hub's container: no name to resolve (in swarm mode the
            # hub's name resolves only once the hub is healthy, after this starts).
            f"--url={HUB_API_URL_IN_HUB}",
        ],
    }
    role = {
        "name": SERVICE,
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": [SERVICE],
    }
    return service, role
