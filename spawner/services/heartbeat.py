"""What every service of the stack shares: its command line and its heartbeat.

A service touches a stamp file after each good round; its healthcheck (compose
runs ``python -m spawner.services.heartbeat STAMP``) is healthy while the stamp
is recent. The check runs every two seconds for the life of the stack, so it
imports nothing but the standard library: importing the service itself (the
engine's client, the settings) cost ~0.45 CPU-seconds a time, a fifth of a core
for each service.
"""

from __future__ import annotations

import argparse
import logging
import sys
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
    commands: Mapping[str, Callable[[argparse.Namespace], None]],
    argv: list[str] | None,
    add_options: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
) -> int:
    """``python -m spawner.services.<name> COMMAND``: its own commands."""
    parser = argparse.ArgumentParser(
        prog=f"python -m spawner.services.{name}", description=doc.split("\n")[0]
    )
    parser.add_argument("command", choices=list(commands))
    add_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {name}: %(message)s")
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(0 if healthy(Path(sys.argv[1])) else 1)
