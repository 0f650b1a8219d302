"""The limits of a user's server and sizes in bytes, as settings and profiles both take them.

``DSHUB_MEM_LIMIT`` and a profile's ``memory`` are one kind of value with one rule;
the bounds live here once, so a value a setting accepts is one a profile accepts.

Not ``jupyterhub.traitlets.ByteSpecification``: the services' images read the
settings without JupyterHub, and it takes decimals (``1.5G``) that docker's
notation, which these values are written in, does not.
"""

from __future__ import annotations

import re

CPU_MIN, CPU_MAX = 0.01, 1024
PIDS_MIN, PIDS_MAX = 32, 1_000_000
# Below this a Jupyter server does not start; above it no machine has the memory
# (and its byte count still fits what parse_size reads).
MEMORY_MIN, MEMORY_MAX = 64 * 2**20, 2**50
# Project quotas count in 512-byte blocks of a 64-bit number; a petabyte is room enough.
DISK_MIN, DISK_MAX = 2**20, 2**50

# docker's notation: a whole number and an optional binary unit (512M, 2G).
SIZE_PATTERN = r"[1-9][0-9]*[KMGTkmgt]?"
_SIZE = re.compile(r"([1-9][0-9]*)([KMGT]?)", re.IGNORECASE)
_UNITS = (("T", 2**40), ("G", 2**30), ("M", 2**20), ("K", 2**10))
_SCALE = {"": 1, **dict(_UNITS)}


def parse_size(raw: str) -> int | None:
    """Bytes from docker's notation; None when it is not that notation."""
    match = _SIZE.fullmatch(raw) if len(raw) <= 20 else None
    return int(match[1]) * _SCALE[match[2].upper()] if match else None


def docker_size(value: int) -> str:
    """A limit as docker writes it (2G, 512M): exact where a unit divides it."""
    for unit, scale in _UNITS:
        if value >= scale and value % scale == 0:
            return f"{value // scale}{unit}"
    return f"{value / 2**20:.0f}M"


def size_for_people(value: int) -> str:
    """Bytes for people: 0K, 512K, 7.5M, 930M, 9.6G, 12G (a decimal below ten of a unit)."""
    unit, scale = next(((u, s) for u, s in _UNITS if value >= s), _UNITS[-1])
    number = value / scale
    text = f"{number:.1f}" if number < 10 else f"{number:.0f}"
    return text.removesuffix(".0") + unit
