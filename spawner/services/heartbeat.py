"""What every service of the stack shares: its command line and its heartbeat.

A service touches a stamp file after each good round; its healthcheck (compose
runs ``python -m spawner.services.<service> healthy``) is healthy while the
stamp is recent.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

# A round runs every second or two; three missed ones make a service unhealthy.
HEALTHY_WITHIN = 10.0


def healthy(stamp: Path, within: float = HEALTHY_WITHIN) -> bool:
    """Whether the stamp was touched within the last ``within`` seconds."""
    try:
        return time.time() - stamp.stat().st_mtime < within
    except FileNotFoundError:
        return False


def service_main(
    name: str,
    doc: str,
    stamp: Path,
    commands: Mapping[str, Callable[[argparse.Namespace], None]],
    argv: list[str] | None,
    add_options: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
) -> int:
    """``python -m spawner.services.<name> COMMAND``: its own commands, and ``healthy``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m spawner.services.{name}", description=doc.split("\n")[0]
    )
    parser.add_argument("command", choices=[*commands, "healthy"])
    add_options(parser)
    args = parser.parse_args(argv)
    if args.command == "healthy":
        return 0 if healthy(stamp) else 1
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {name}: %(message)s")
    commands[args.command](args)
    return 0
