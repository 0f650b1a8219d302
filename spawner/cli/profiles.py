"""Check a profiles file by hand, or print the schema it is checked against.

``python -m spawner.cli.profiles check FILE``; ``... schema`` (docs/profiles.md explains it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spawner.config import settings as dshub_settings
from spawner.config.profiles import SCHEMA, Defaults, ProfileError, parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spawner.cli.profiles", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a profiles file")
    check.add_argument("file", type=Path)
    sub.add_parser("schema", help="print the JSON schema of profiles.yaml")
    args = parser.parse_args(argv)
    if args.command == "schema":
        print(json.dumps(SCHEMA, indent=2))
        return 0
    defaults = Defaults.from_settings(dshub_settings.load({}))
    try:
        profiles = parse(args.file.read_text(), defaults)
    except (OSError, ProfileError) as e:
        print(f"dshub: {args.file}: {e}", file=sys.stderr)
        return 2
    for p in profiles.profiles:
        print(f"{p.name}: {p.image}, {p.summary()}, groups: {', '.join(p.groups) or 'everyone'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
