"""Which GPU each running server holds: distinct devices unless a profile shares them.

The hub is the only writer, so the assignments live in this process; each
spawner saves its devices in its state and gives them back here on a hub
restart (:meth:`GpuAssignments.restore`), before any new spawn is considered.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


class NoGpuFree(RuntimeError):
    """No (or not enough) GPUs are free for this server; the message says why."""


@dataclass(frozen=True)
class Holding:
    user: str
    devices: tuple[str, ...]
    shared: bool


class GpuAssignments:
    def __init__(self) -> None:
        self._holdings: dict[str, Holding] = {}
        self._lock = threading.Lock()

    def holding(self, owner: str) -> Holding | None:
        with self._lock:
            return self._holdings.get(owner)

    def assign(
        self,
        owner: str,
        user: str,
        count: int,
        devices: tuple[str, ...],
        *,
        shared: bool,
        user_limit: int | None,
    ) -> tuple[str, ...]:
        """Give ``owner`` (a server, "user/name") ``count`` of ``devices``, or raise NoGpuFree."""
        with self._lock:
            self._holdings.pop(owner, None)
            held_by_user = sum(len(h.devices) for h in self._holdings.values() if h.user == user)
            if user_limit is not None and held_by_user + count > user_limit:
                raise NoGpuFree(
                    f"You already hold {held_by_user} GPU(s) and may hold at most {user_limit}: "
                    "stop a GPU server first, or choose a profile without GPUs."
                )
            exclusive = {d for h in self._holdings.values() if not h.shared for d in h.devices}
            sharers: dict[str, int] = {}
            for h in self._holdings.values():
                if h.shared:
                    for d in h.devices:
                        sharers[d] = sharers.get(d, 0) + 1
            if shared:
                # Least-used shared devices first, so shared load spreads out.
                candidates = sorted(
                    (d for d in devices if d not in exclusive),
                    key=lambda d: (sharers.get(d, 0), devices.index(d)),
                )
            else:
                candidates = [d for d in devices if d not in exclusive and d not in sharers]
            if len(candidates) < count:
                raise NoGpuFree(
                    f"No GPU is free: this profile needs {count}, {len(candidates)} of the "
                    f"{len(devices)} GPU(s) are available. Try again when a GPU server stops, "
                    "or choose a profile without GPUs."
                )
            given = tuple(candidates[:count])
            self._holdings[owner] = Holding(user, given, shared)
            return given

    def restore(self, owner: str, user: str, devices: tuple[str, ...], *, shared: bool) -> None:
        """Record devices a server already has (after a hub restart)."""
        with self._lock:
            self._holdings[owner] = Holding(user, tuple(devices), shared)

    def release(self, owner: str) -> None:
        with self._lock:
            self._holdings.pop(owner, None)
