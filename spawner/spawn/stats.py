"""A server's CPU and memory as the engine's stats report them, the way `docker stats` reads them.

`make usage` and the hub's metrics both show these numbers; read one way, they agree.
"""

from __future__ import annotations

from typing import Any


def cpu_percent(stats: dict[str, Any]) -> float:
    """Percent of one CPU since the engine's previous sample (docker stats' formula)."""
    cpu, pre = stats["cpu_stats"], stats["precpu_stats"]
    used = cpu["cpu_usage"]["total_usage"] - pre.get("cpu_usage", {}).get("total_usage", 0)
    elapsed = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or [1])
    return 100.0 * used / elapsed * cores if used > 0 and elapsed > 0 else 0.0


def memory_in_use(stats: dict[str, Any]) -> int:
    """Memory as docker stats shows it: usage without the page cache."""
    mem = stats.get("memory_stats", {})
    extra = mem.get("stats", {})
    cache = extra.get("total_inactive_file", extra.get("inactive_file", 0))
    return max(0, mem.get("usage", 0) - cache)
