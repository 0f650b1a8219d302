"""Secrets generated on first start, kept 0600 in the hub's data volume.

Never committed, never in an image, never logged: callers get the value and hand
it to JupyterHub's config; nothing here prints it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def ensure_secret(directory: Path, name: str, nbytes: int = 32) -> str:
    """The secret stored as ``directory/name``, made (hex, ``nbytes`` random bytes) if absent."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / name
    try:
        fd = os.open(path, _FILE_FLAGS, 0o600)
    except FileExistsError:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)) as f:
            value = f.read().strip()
        if not value:
            raise RuntimeError(f"secret file {path} is empty: delete it to have a new one made") from None
        return value
    value = secrets.token_hex(nbytes)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value
