"""A spawn's own wait for the user's server: a real HTTP server on 127.0.0.1."""

import asyncio

import pytest
from tornado.web import Application, RequestHandler

from spawner.spawn.faststart import StartFailed, StartLine, wait_until_answers
from tests.support.stack import free_port


class NotFound(RequestHandler):
    def get(self) -> None:
        self.set_status(404)


class Broken(RequestHandler):
    def get(self) -> None:
        self.set_status(503)


def test_answers_once_a_late_server_listens():
    async def scenario() -> bool:
        port = free_port()
        url = f"http://127.0.0.1:{port}/user/bob/api"
        waiting = asyncio.ensure_future(wait_until_answers(url, timeout=30, interval=0.01, max_interval=0.05))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        # Any answer below 500 counts, as for JupyterHub's own wait.
        server = Application([(r"/user/bob/api", NotFound)]).listen(port, "127.0.0.1")
        try:
            return await waiting
        finally:
            server.stop()

    assert asyncio.run(scenario())


@pytest.mark.parametrize("listening", [False, True])
def test_gives_up_without_a_proper_answer(listening):
    async def scenario() -> bool:
        port = free_port()
        server = Application([(r"/.*", Broken)]).listen(port, "127.0.0.1") if listening else None
        try:
            return await wait_until_answers(
                f"http://127.0.0.1:{port}/api", timeout=0.3, interval=0.05, max_interval=0.1
            )
        finally:
            if server:
                server.stop()

    assert not asyncio.run(scenario())


def test_a_server_that_ends_while_starting_ends_the_wait_with_its_reason():
    asked = []

    async def ended() -> str | None:
        asked.append(True)
        return None if len(asked) < 2 else "Your server stopped while starting: ExitCode=127"

    async def scenario() -> None:
        await wait_until_answers(
            f"http://127.0.0.1:{free_port()}/api", timeout=30, interval=0.05, max_interval=0.1, ended=ended
        )

    # Raised at the second look, long before the timeout (which would return False).
    with pytest.raises(StartFailed, match="ExitCode=127") as failed:
        asyncio.run(scenario())
    assert len(asked) == 2
    assert failed.value.jupyterhub_message == str(failed.value)


def test_the_line_lets_a_few_start_at_once_first_come_first_served():
    async def scenario() -> tuple[list[str], int, dict[str, list[int]]]:
        line = StartLine(2)
        order: list[str] = []
        told: dict[str, list[int]] = {}
        starting = most = 0
        release = asyncio.Event()

        async def start(name: str) -> None:
            nonlocal starting, most
            async with line.turn(30, lambda ahead: told.setdefault(name, []).append(ahead)):
                order.append(name)
                starting += 1
                most = max(most, starting)
                await release.wait()
                starting -= 1

        tasks = []
        for name in "abcde":
            tasks.append(asyncio.ensure_future(start(name)))
            await asyncio.sleep(0.01)  # they come one after the other
        release.set()
        await asyncio.gather(*tasks)
        return order, most, told

    order, most, told = asyncio.run(scenario())
    assert order == list("abcde")
    assert most == 2
    # The first two start at once; the third waits with none before it, the fifth with two.
    assert "a" not in told and "b" not in told
    assert told["c"][0] == 0 and told["e"][0] == 2


def test_a_start_that_waits_too_long_fails_with_a_message_and_gives_no_slot_away():
    async def scenario() -> str:
        line = StartLine(1)
        holding = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with line.turn(30, lambda ahead: None):
                holding.set()
                await release.wait()

        running = asyncio.ensure_future(first())
        await holding.wait()
        with pytest.raises(StartFailed) as waited:
            async with line.turn(0.2, lambda ahead: None):
                pass
        # One that gives up (the spawn was stopped) leaves no slot taken either.
        gave_up = asyncio.ensure_future(line.turn(30, lambda ahead: None).__aenter__())
        await asyncio.sleep(0.05)
        gave_up.cancel()
        release.set()
        await running
        async with asyncio.timeout(1):
            async with line.turn(1, lambda ahead: None):
                pass
        return waited.value.jupyterhub_message

    message = asyncio.run(scenario())
    assert "busy starting other servers" in message and "try again" in message


def test_without_a_limit_every_start_goes_at_once():
    async def scenario() -> int:
        line = StartLine(0)
        inside = 0

        async def start() -> None:
            nonlocal inside
            async with line.turn(0.01, lambda ahead: None):
                inside += 1
                await asyncio.sleep(0.05)

        await asyncio.gather(*(start() for _ in range(50)))
        return inside

    assert asyncio.run(scenario()) == 50
