"""Two waits taken out of DockerSpawner's start path (BENCHMARKS.md).

* After Spawner.start returns, JupyterHub waits for the server to answer with
  randomised exponential backoff (0.2 s doubling up to 5 s), so it notices a
  server that took 4 s to start 1-2 s late. start() here first looks at the same
  URL every ``ready_poll_interval`` itself, so JupyterHub's first look finds the
  server up.
* A server that ends before it answers (an entrypoint that fails, a swarm
  task that stops) ends the start within a second or so, with the reason,
  instead of after the whole timeout.
* DockerSpawner makes every engine call of every spawn on one shared thread, so
  a class starting at once queues behind each other's create/start calls; here
  they share ``engine_threads`` threads.
* A class arriving at once on few cores: every server started together gets a
  share of the CPU and all become ready together, late, and some time out. Here
  ``start_concurrency`` servers start at once and the others wait in line, first
  come first served, each told its place: the first are ready in seconds, and the
  CPU is not spent switching between a hundred half-started servers. A server
  keeps its place for ``turn_seconds`` at most, so one that is slow to answer (or
  made to hang by its owner) does not hold up the class.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from jupyterhub.utils import exponential_backoff, url_path_join
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Integer, default
from traitlets.config import Configurable

# How often a starting server is asked whether it has ended (an engine call).
ENDED_CHECK_SECONDS = 1.0


class StartFailed(RuntimeError):
    """The server could not start; the message says why, to the user too."""

    @property
    def jupyterhub_message(self) -> str:
        # Shown by the hub's API and spawn page instead of "Internal Server Error".
        return str(self)


async def wait_until_answers(
    url: str,
    timeout: float,
    interval: float,
    max_interval: float,
    ended: Callable[[], Awaitable[str | None]] | None = None,
) -> bool:
    """Whether url answered HTTP (any status below 500, as JupyterHub counts it) within timeout.

    Looks every ``interval`` seconds at first, 1.25x longer each time up to
    ``max_interval``: quick for a quick server, cheap for the hub while
    a class's servers start at once. Every ``ENDED_CHECK_SECONDS`` asks ``ended`` why the
    server has stopped, and raises :class:`StartFailed` with its answer.
    """
    loop = asyncio.get_running_loop()
    next_check = loop.time() + ENDED_CHECK_SECONDS
    client = AsyncHTTPClient()

    async def answered() -> bool:
        nonlocal next_check
        try:
            resp = await client.fetch(url, raise_error=False, follow_redirects=False, request_timeout=5)
        except (OSError, HTTPClientError):
            pass  # not listening yet (refused, reset, timed out)
        else:
            if resp.code < 500:
                return True
        if ended is not None and loop.time() >= next_check:
            next_check = loop.time() + ENDED_CHECK_SECONDS
            reason = await ended()
            if reason is not None:
                raise StartFailed(reason)
        return False

    try:
        # JupyterHub's own backoff: its jitter keeps a class's servers that start
        # together from being polled in step.
        return await exponential_backoff(
            answered,
            "",
            start_wait=interval,
            scale_factor=1.25,
            max_wait=max_interval,
            timeout=timeout,
            timeout_tolerance=0,
        )
    except TimeoutError:
        return False


# Seconds of start_timeout left unused by the wait, for JupyterHub's own steps.
START_TIMEOUT_MARGIN = 5
# How often a start waiting in line is told its place.
PLACE_REPORT_SECONDS = 2.0


class StartLine:
    """At most ``size`` starts at once (0: no limit); the others wait in the order they came."""

    def __init__(self, size: int) -> None:
        # asyncio's semaphore wakes its waiters in the order they came.
        self._slots = asyncio.Semaphore(size) if size else None
        self._waiting: list[object] = []

    @asynccontextmanager
    async def turn(self, timeout: float, told: Callable[[int], None]) -> AsyncIterator[None]:
        """Held while a server starts; ``told(starts ahead)`` is called whenever that number changes."""
        if self._slots is None:
            yield
            return
        await self._wait_for_turn(self._slots, timeout, told)
        try:
            yield
        finally:
            self._slots.release()

    async def _wait_for_turn(
        self, slots: asyncio.Semaphore, timeout: float, told: Callable[[int], None]
    ) -> None:
        if not slots.locked():
            await slots.acquire()  # free: taken at once, no one to tell
            return
        ticket = object()
        self._waiting.append(ticket)
        acquiring = asyncio.ensure_future(slots.acquire())
        place = -1
        try:
            async with asyncio.timeout(timeout):
                while not acquiring.done():
                    if self._waiting.index(ticket) != place:
                        place = self._waiting.index(ticket)
                        told(place)
                    await asyncio.wait([acquiring], timeout=PLACE_REPORT_SECONDS)
        except BaseException as e:
            # Timed out or cancelled (the spawn was stopped): no slot may stay taken.
            if acquiring.done() and not acquiring.cancelled():
                slots.release()
            else:
                acquiring.cancel()
            if isinstance(e, TimeoutError):
                raise StartFailed(
                    f"The hub is busy starting other servers and yours did not get its turn within "
                    f"{timeout:.0f} seconds: please try again in a few minutes."
                ) from None
            raise
        finally:
            self._waiting.remove(ticket)


class FastStart(Configurable):
    """DockerSpawner mixin, listed before DockerSpawner in the bases."""

    ready_poll_interval = Float(
        0.05,
        config=True,
        help="Seconds before the second look at a starting server; each next look waits 1.25x longer.",
    )
    ready_poll_max_interval = Float(
        0.3,
        config=True,
        help="Longest wait between two looks at a starting server: its spawn ends at most this late.",
    )
    engine_threads = Integer(
        8,
        config=True,
        help="Engine calls in flight at once, for all spawners together (docker-py's pool holds 10).",
    )
    start_concurrency = Integer(
        0,
        config=True,
        help="Servers starting at once, for all spawners together; the others wait in line. 0: no limit.",
    )
    start_queue_timeout = Integer(
        600, config=True, help="Seconds a start may wait in line (start_concurrency) for its turn."
    )
    server_start_timeout = Integer(
        120, config=True, help="Seconds a server may take to answer from the moment its turn came."
    )
    turn_seconds = Integer(
        30,
        config=True,
        help="Longest a starting server keeps its place among the start_concurrency: one still "
        "silent then is slow rather than busy, and waits on outside the line.",
    )
    _executor: ThreadPoolExecutor | None = None
    _start_line: StartLine | None = None

    @default("start_timeout")
    def _whole_start_timeout(self) -> int:
        # JupyterHub's limit on start() as a whole: the wait in line, then the server's own start.
        if self.start_concurrency:
            return self.start_queue_timeout + self.server_start_timeout
        return self.server_start_timeout

    @property
    def start_line(self) -> StartLine:
        """The line of starts, shared by all spawners."""
        cls = type(self)
        if cls._start_line is None:
            cls._start_line = StartLine(self.start_concurrency)
        return cls._start_line

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The engine-call threads, shared by all spawners (DockerSpawner's has one)."""
        cls = type(self)
        if cls._executor is None:
            cls._executor = ThreadPoolExecutor(self.engine_threads, thread_name_prefix="engine")
        return cls._executor

    async def start(self) -> Any:
        """Its turn in the start line, DockerSpawner's start, then the wait for the server.

        Uses the host class's ``_progress`` and ``_told_place_in_line`` (the spawn page).
        """
        loop = asyncio.get_running_loop()
        async with self.start_line.turn(self.start_queue_timeout, self._told_place_in_line):  # type: ignore[attr-defined]
            self._progress(40, f"Starting your container from {self.image}")  # type: ignore[attr-defined]
            began = loop.time()
            try:
                async with asyncio.timeout(self.server_start_timeout):
                    ip, port = ip_port = await super().start()  # type: ignore[misc]
            except TimeoutError:
                raise StartFailed(
                    f"Your container was not started within {self.server_start_timeout} seconds: "
                    "please try again, or ask an admin to look at the hub's log."
                ) from None
            url = f"http://{ip}:{port}{url_path_join(self.server.base_url, 'api')}"  # type: ignore[attr-defined]
            answered = await self._wait_until_answers(url, min(self.turn_seconds, self._left(began)))
        # Still silent after its turn: slow rather than busy (or a home's config that
        # sleeps): it waits on outside the line, and the next in line starts.
        if not answered:
            await self._wait_until_answers(url, self._left(began))
        return ip_port

    def _left(self, began: float) -> float:
        # Within start_timeout, which JupyterHub puts around start(): a server slower
        # than that still gets JupyterHub's own wait of http_timeout that follows, as
        # without this mixin.
        elapsed = asyncio.get_running_loop().time() - began
        return min(self.http_timeout, self.server_start_timeout - elapsed - START_TIMEOUT_MARGIN)  # type: ignore[attr-defined]

    async def _wait_until_answers(self, url: str, timeout: float) -> bool:
        return await wait_until_answers(
            url, timeout, self.ready_poll_interval, self.ready_poll_max_interval, self.start_failure
        )

    async def start_failure(self) -> str | None:
        """Why the server ended before it answered; None while it runs."""
        status = await self.poll()  # type: ignore[attr-defined]
        return None if status is None else f"Your server stopped while starting: {status}"
