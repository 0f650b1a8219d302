"""A spawn's own wait for the user's server: a real HTTP server on 127.0.0.1."""

import asyncio

import pytest
from tornado.web import Application, RequestHandler

from spawner.spawn.faststart import StartFailed, wait_until_answers
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
