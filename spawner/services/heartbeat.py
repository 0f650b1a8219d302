"""A service's heartbeat: a file it touches after each good round, read by its healthcheck.

The network policy and the quota services (compose healthchecks run
``python -m spawner.<service> healthy``) are healthy while their stamp is recent.
"""

from __future__ import annotations

import time
from pathlib import Path

# A round runs every second or two; three missed ones make a service unhealthy.
HEALTHY_WITHIN = 10.0


def healthy(stamp: Path, within: float = HEALTHY_WITHIN) -> bool:
    """Whether the stamp was touched within the last ``within`` seconds."""
    try:
        return time.time() - stamp.stat().st_mtime < within
    except FileNotFoundError:
        return False
