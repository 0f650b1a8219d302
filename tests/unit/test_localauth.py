"""The built-in sign-in's parts: initial passwords, the throttle, bounded hashing."""

import asyncio
import dbm

import bcrypt
import pytest
from jupyterhub import orm

from spawner.auth.localauth import (
    FREE_FAILURES_PER_ADDRESS,
    IN_FLIGHT_PER_ADDRESS,
    INITIAL,
    AddressTurns,
    BoundedHasher,
    BuiltinUserListAuthenticator,
    HashingBusy,
    SignInThrottle,
    in_flight_allowed,
)


@pytest.fixture
def authenticator(tmp_path):
    return BuiltinUserListAuthenticator(
        dbm_path=str(tmp_path / "passwords.dbm"), initial_passwords_dir=str(tmp_path / "initial")
    )


def test_an_added_user_gets_a_one_time_initial_password_once(authenticator, tmp_path):
    asyncio.run(authenticator.add_user(orm.User(name="ada")))
    password = (tmp_path / "initial" / "ada").read_text().strip()
    with dbm.open(str(tmp_path / "passwords.dbm")) as db:
        stored = db[b"ada"]
    assert stored.startswith(INITIAL)
    assert bcrypt.checkpw(password.encode(), stored[len(INITIAL) :])
    # At every hub start JupyterHub calls add_user again: nothing changes.
    asyncio.run(authenticator.add_user(orm.User(name="ada")))
    assert (tmp_path / "initial" / "ada").read_text().strip() == password
    with dbm.open(str(tmp_path / "passwords.dbm")) as db:
        assert db[b"ada"] == stored


def test_a_user_who_breaks_the_rule_gets_nothing(authenticator, tmp_path):
    with pytest.raises(ValueError, match="breaks the username rule"):
        asyncio.run(authenticator.add_user(orm.User(name="x`) || PathPrefix(`/")))
    assert not (tmp_path / "initial").exists()


def test_throttle_backs_off_after_the_free_failures():
    throttle = SignInThrottle(free=5, max_wait=300)
    for second in range(5):
        assert throttle.wait("ada", now=second) == 0
        throttle.failed("ada", now=second)
    assert throttle.wait("ada", now=4) == 1.0
    throttle.failed("ada", now=10)
    assert throttle.wait("ada", now=10) == 2.0
    for _ in range(20):
        throttle.failed("ada", now=10)
    assert throttle.wait("ada", now=10) == 300
    for _ in range(2000):  # a long flood: the back-off stays at its ceiling, it never overflows
        throttle.failed("ada", now=10)
    assert throttle.wait("ada", now=10) == 300
    assert throttle.failures("ada", now=10) == 2026
    assert throttle.wait("bob", now=10) == 0
    # Old failures are forgotten; a success clears a name.
    assert throttle.wait("ada", now=10 + 901) == 0
    throttle.succeeded("ada")
    assert throttle.wait("ada", now=11) == 0


def test_hashing_runs_one_at_a_time_and_refuses_beyond_its_queue():
    hasher = BoundedHasher(queue_max=3)
    salt = bcrypt.gensalt(4)

    async def flood() -> list[object]:
        jobs = [hasher.run(bcrypt.hashpw, b"guess", salt) for _ in range(6)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(flood())
    assert sum(isinstance(r, HashingBusy) for r in results) == 3
    assert sum(isinstance(r, bytes) for r in results) == 3


def test_an_address_takes_turns_in_order_and_is_busy_only_beyond_its_waiting_room():
    turns = AddressTurns(lambda address: 2, waiting_max=3, wait=5)
    order: list[str] = []

    async def sign_in(who: str, address: str = "10.0.0.1") -> bool:
        if not await turns.turn(address):
            order.append(f"{who} busy")
            return False
        order.append(f"{who} checking")
        await asyncio.sleep(0.05)
        turns.done(address)
        return True

    async def class_behind_one_address() -> list[bool]:
        jobs = [asyncio.create_task(sign_in(f"p{i}")) for i in range(6)]
        await asyncio.sleep(0.01)
        assert turns.checking("10.0.0.1") == 2
        # Another address is not behind this one's line.
        assert await sign_in("elsewhere", "10.0.0.2")
        return await asyncio.gather(*jobs)

    results = asyncio.run(class_behind_one_address())
    assert results == [True] * 5 + [False]
    assert order[:3] == ["p0 checking", "p1 checking", "p5 busy"]
    assert [o for o in order if o.startswith("p") and o.endswith("checking")] == [
        f"p{i} checking" for i in range(5)
    ]
    assert turns.checking("10.0.0.1") == 0


def test_an_address_that_used_its_free_failures_is_checked_one_try_at_a_time():
    throttle = SignInThrottle(FREE_FAILURES_PER_ADDRESS)
    assert in_flight_allowed(throttle, "10.0.0.1") == IN_FLIGHT_PER_ADDRESS
    for _ in range(FREE_FAILURES_PER_ADDRESS):
        throttle.failed("10.0.0.1")
    assert in_flight_allowed(throttle, "10.0.0.1") == 1
    assert in_flight_allowed(throttle, "10.0.0.2") == IN_FLIGHT_PER_ADDRESS


def test_a_turn_not_come_in_time_is_busy():
    turns = AddressTurns(lambda address: 1, waiting_max=10, wait=0.05)

    async def held() -> bool:
        assert await turns.turn("10.0.0.1")
        waited = await turns.turn("10.0.0.1")
        turns.done("10.0.0.1")
        return waited

    assert asyncio.run(held()) is False


def test_all_addresses_together_have_a_bounded_waiting_room_and_a_try_gone_gives_up_its_place():
    turns = AddressTurns(lambda address: 1, waiting_max=10, waiting_max_all=2, wait=5)

    async def crowd() -> bool:
        for address in ("10.0.0.1", "10.0.0.2"):
            assert await turns.turn(address)
        gone = asyncio.create_task(turns.turn("10.0.0.1"))
        after = asyncio.create_task(turns.turn("10.0.0.1"))
        await asyncio.sleep(0.01)
        # Two wait: one more, from any address, is told the hub is busy at once.
        assert not await turns.turn("10.0.0.2")
        gone.cancel()  # the browser went away while it waited
        await asyncio.gather(gone, return_exceptions=True)
        turns.done("10.0.0.1")  # the turn goes to the next that still waits
        return await after

    assert asyncio.run(crowd()) is True


def test_a_deleted_user_added_again_gets_a_new_initial_password(authenticator, tmp_path):
    asyncio.run(authenticator.add_user(orm.User(name="ada")))
    first = (tmp_path / "initial" / "ada").read_text()
    authenticator.delete_user(orm.User(name="ada"))
    assert not (tmp_path / "initial" / "ada").exists()
    with dbm.open(str(tmp_path / "passwords.dbm")) as db:
        assert b"ada" not in db
    asyncio.run(authenticator.add_user(orm.User(name="ada")))
    assert (tmp_path / "initial" / "ada").read_text() != first


def test_a_renamed_user_keeps_their_password_and_the_old_name_none(authenticator, tmp_path):
    asyncio.run(authenticator.add_user(orm.User(name="ada")))
    initial = (tmp_path / "initial" / "ada").read_text()
    with dbm.open(str(tmp_path / "passwords.dbm")) as db:
        stored = db[b"ada"]
    authenticator.user_renamed("ada", "ada.l")
    with dbm.open(str(tmp_path / "passwords.dbm")) as db:
        assert b"ada" not in db and db[b"ada.l"] == stored
    assert not (tmp_path / "initial" / "ada").exists()
    assert (tmp_path / "initial" / "ada-2el").read_text() == initial


def test_passwords_longer_than_bcrypt_reads_are_refused(authenticator):
    assert "at most 72 bytes" in authenticator._password_problem("é" * 40, "old password")
