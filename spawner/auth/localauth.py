"""The built-in user list for a first install (``DSHUB_AUTHENTICATOR=local``).

Who can claim an account, and how hard a flood of guesses hits the hub:

* Only users that exist in the hub may sign in; an admin adding them (admin page,
  REST API, ``make roster``) is the approval.
* Every user gets a one-time **initial password** when they are added (each
  admin of ``DSHUB_ADMIN_USERS`` at first start, each their own). It is written
  0600 to ``secrets/initial-passwords/<name>`` for the operator
  (``make initial-password NAME=...``; ``make roster`` prints those of the users it
  made) and works once: the first sign-in with it must choose the user's own
  password on the same form, and then the initial one is gone. Nobody can claim
  an account by being first to sign in.
* Changing a password asks for the current one (``/hub/auth/change-password``).
* Failed sign-ins are throttled per name and per client address: after 5
  failures for a name (20 from an address: a class may share one address behind
  a NAT) each further try waits twice as long as the one before (up to
  ``THROTTLE_MAX_WAIT`` s), and a throttled try is refused before any hashing.
  A try counts against its name from the moment its hash is being checked, so
  parallel guesses at one name see each other at once; against its address only
  once it has failed, so a class behind one NAT signing in at the same moment is
  never throttled for correct passwords. Instead an address has at most
  ``IN_FLIGHT_PER_ADDRESS`` tries being checked at once, and one once it has used
  its free failures; a try beyond that waits its turn (up to ``TURN_WAIT`` s, at most
  ``WAITING_PER_ADDRESS`` of an address and ``WAITING_ALL`` in all waiting), and only
  then is told the hub is busy (not a failure): a class behind one NAT signs in at
  the pace of the hashing, without each "busy" costing the hub another page and try.
* bcrypt (~0.3 s of CPU at its default cost) runs on one thread of its own, with
  at most ``HASH_QUEUE_MAX`` sign-ins waiting: a flood of wrong passwords can use
  one core at most, never the hub's event loop or the core that spawns need.

Initial passwords are 96 random bits, so their hashes use bcrypt's lowest cost
(~1 ms; no work factor makes such a password safer): a class of 300 added by
``make roster`` costs 0.3 s of hashing, not 90 s.
"""

from __future__ import annotations

import asyncio
import dbm
import ipaddress
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import bcrypt
from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler, LoginHandler
from tornado import web
from traitlets import Integer, List, Unicode, default

from spawner.auth.usernames import UsernameRuleMixin
from spawner.core.names import normalize_username, shown, username_problem
from spawner.pool.datapool import escape_name

INITIAL = b"initial:"
INITIAL_HASH_ROUNDS = 4
FREE_FAILURES_PER_NAME = 5
FREE_FAILURES_PER_ADDRESS = 20
THROTTLE_MAX_WAIT = 300.0
# Failures older than this are forgotten.
THROTTLE_MEMORY = 900.0
HASH_QUEUE_MAX = 32
# Tries of one address being checked at once: a class behind one NAT waits its turn (bcrypt
# checks ~3 a second), and no address takes the whole hashing queue.
IN_FLIGHT_PER_ADDRESS = 8
WAITING_PER_ADDRESS = 200
WAITING_ALL = 1000
# Longer than a class of 100 takes to hash its chosen passwords (~0.25 s each, one thread).
TURN_WAIT = 40.0
# bcrypt reads at most 72 bytes (bcrypt 5 refuses more): longer ones are never a password here.
BCRYPT_MAX_BYTES = 72
BUSY = "The hub is busy signing people in: try again in a few seconds."
EDGE_HOST = "proxy"  # the edge proxy's service name in compose/compose.yaml


@dataclass
class _Failures:
    count: int
    last: float


class SignInThrottle:
    """Failed sign-ins per key (a name, an address): how long the next try must wait."""

    def __init__(self, free: int, max_wait: float = THROTTLE_MAX_WAIT) -> None:
        self.free = free
        self.max_wait = max_wait
        self._failures: dict[str, _Failures] = {}

    def wait(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        entry = self._failures.get(key)
        if entry is None or now - entry.last > THROTTLE_MEMORY:
            return 0.0
        if entry.count < self.free:
            return 0.0
        # The exponent capped: 2.0 ** 1100 overflows, and 2 ** 32 s is past any max_wait.
        backoff = min(2.0 ** min(entry.count - self.free, 32), self.max_wait)
        return max(0.0, backoff - (now - entry.last))

    def failed(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        entry = self._failures.get(key)
        if entry is None or now - entry.last > THROTTLE_MEMORY:
            entry = self._failures[key] = _Failures(0, now)
        entry.count += 1
        entry.last = now
        if len(self._failures) > 100_000:
            self._forget_old(now)

    def failures(self, key: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        entry = self._failures.get(key)
        return 0 if entry is None or now - entry.last > THROTTLE_MEMORY else entry.count

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def forgive(self, key: str) -> None:
        """Take back one failure counted for an attempt that turned out not to be one."""
        entry = self._failures.get(key)
        if entry is not None and entry.count > 0:
            entry.count -= 1

    def _forget_old(self, now: float) -> None:
        for key in [k for k, e in self._failures.items() if now - e.last > THROTTLE_MEMORY]:
            del self._failures[key]


class AddressTurns:
    """The sign-ins of each address being checked, a few at once; the others wait their turn, in order.

    Each address has a line of its own, and a try that ends hands its turn to the first in
    its address's line only: no other waiter wakes.
    """

    def __init__(
        self,
        allowed: Callable[[str], int],
        waiting_max: int = WAITING_PER_ADDRESS,
        waiting_max_all: int = WAITING_ALL,
        wait: float = TURN_WAIT,
    ) -> None:
        """``allowed(address)``: how many of the address's tries may be checked at once, now."""
        self._allowed = allowed
        self._checking: dict[str, int] = {}
        self._lines: dict[str, deque[asyncio.Future[None]]] = {}
        self._all_waiting = 0
        self._waiting_max = waiting_max
        self._waiting_max_all = waiting_max_all
        self._wait = wait

    def checking(self, address: str) -> int:
        return self._checking.get(address, 0)

    async def turn(self, address: str) -> bool:
        """Waits for a turn of the address; False when too many tries wait already or the wait
        is over. A turn ends with done()."""
        line = self._lines.get(address)
        if not line and self.checking(address) < self._allowed(address):
            self._checking[address] = self.checking(address) + 1
            return True
        if (line and len(line) >= self._waiting_max) or self._all_waiting >= self._waiting_max_all:
            self._forget(address)
            return False
        given: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._lines.setdefault(address, deque())
        line.append(given)
        self._all_waiting += 1
        try:
            await asyncio.wait_for(given, self._wait)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if given.done() and not given.cancelled():
                self.done(address)  # given just before the try went away: the next one has it
            raise
        finally:
            self._all_waiting -= 1
            if given in line:
                line.remove(given)
            self._forget(address)
        # A turn given as the wait ran out is a turn all the same.
        return given.done() and not given.cancelled()

    def done(self, address: str) -> None:
        """The end of a turn: the first of the address's line that still waits gets it."""
        self._checking[address] -= 1
        line = self._lines.get(address, deque())
        while line and self.checking(address) < self._allowed(address):
            given = line.popleft()
            if not given.done():  # else its wait ran out, or its try went away
                given.set_result(None)
                self._checking[address] += 1
        self._forget(address)

    def _forget(self, address: str) -> None:
        if not self._lines.get(address):
            self._lines.pop(address, None)
            if not self.checking(address):
                self._checking.pop(address, None)


def in_flight_allowed(address_throttle: SignInThrottle, address: str) -> int:
    """How many of an address's sign-ins are checked at once: a few, one once it used its free failures."""
    free_left = FREE_FAILURES_PER_ADDRESS - address_throttle.failures(address)
    return min(IN_FLIGHT_PER_ADDRESS, max(1, free_left))


class HashingBusy(RuntimeError):
    pass


class BoundedHasher:
    """bcrypt on one thread of its own, with a bounded queue."""

    def __init__(self, queue_max: int = HASH_QUEUE_MAX) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dshub-bcrypt")
        self._queue_max = queue_max
        self._waiting = 0

    async def run(self, fn: Any, *args: Any) -> Any:
        if self._waiting >= self._queue_max:
            raise HashingBusy("too many sign-ins at once")
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._waiting -= 1


def _gone(handler: Any) -> bool:
    stream = getattr(handler.request.connection, "stream", None)
    return stream is not None and stream.closed()


_edge_addresses: tuple[float, frozenset[str]] = (0.0, frozenset())


def edge_addresses() -> frozenset[str]:
    """The edge proxy's addresses on the project network.

    Looked up at most every 30 s, on the event loop: the engine's own DNS answers
    within a millisecond, and a failed lookup trusts no forwarded header at all.
    """
    global _edge_addresses
    looked_up, addresses = _edge_addresses
    if time.monotonic() - looked_up > 30:
        try:
            infos = socket.getaddrinfo(EDGE_HOST, None)
            addresses = frozenset(str(info[4][0]) for info in infos)
        except OSError:
            addresses = frozenset()
        _edge_addresses = (time.monotonic(), addresses)
    return addresses


def client_address(handler: web.RequestHandler, trusted_proxies: tuple[str, ...] = ()) -> str:
    """The browser's address (:func:`browser_address`) of a request to the hub."""
    peer = str(handler.request.connection.context.address[0])  # type: ignore[union-attr]
    forwarded_for = handler.request.headers.get("X-Forwarded-For", "")
    return browser_address(peer, forwarded_for, edge_addresses(), trusted_proxies)


def browser_address(
    peer: str, forwarded_for: str, edge: frozenset[str], trusted_proxies: tuple[str, ...]
) -> str:
    """The browser's address: from X-Forwarded-For only when the edge proxy sent the request.

    JupyterHub trusts forwarded headers from any peer; a user container that
    talks to the hub's port directly could otherwise pick the address it is
    throttled under. The edge replaces the header of anyone it does not trust;
    behind a TLS terminator (DSHUB_TRUSTED_PROXIES) it passes the terminator's
    on and adds the terminator's address: the browser's is the last one that no
    trusted proxy added.
    """
    if peer not in edge:
        return peer
    networks = [ipaddress.ip_network(n) for n in trusted_proxies]
    nearest = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _hop_address(hop)
        if address is None:
            break
        nearest = str(address)
        if not any(address in network for network in networks):
            return nearest
    # Only trusted hops (or none that parse): the nearest one, never everyone under the edge's.
    return nearest


def _hop_address(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An X-Forwarded-For entry's address; terminators may add a port (1.2.3.4:5, [::1]:5)."""
    hop = hop.strip()
    if hop.startswith("[") and "]" in hop:
        hop = hop[1 : hop.index("]")]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        return ipaddress.ip_address(hop)
    except ValueError:
        return None


class PasswordFile:
    """The password database: name -> bcrypt hash, or INITIAL + hash of a one-time password."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get(self, name: str) -> bytes | None:
        with dbm.open(self.path, "c", 0o600) as db:
            return db.get(name.encode("utf-8"))

    def set_if_absent(self, name: str, value: bytes) -> bool:
        with dbm.open(self.path, "c", 0o600) as db:
            key = name.encode("utf-8")
            if key in db:
                return False
            db[key] = value
            return True

    def remove(self, name: str) -> None:
        with dbm.open(self.path, "c", 0o600) as db:
            db.pop(name.encode("utf-8"), None)

    def rename(self, old: str, new: str) -> None:
        with dbm.open(self.path, "c", 0o600) as db:
            value = db.pop(old.encode("utf-8"), None)
            if value is not None:
                db[new.encode("utf-8")] = value

    def replace(self, name: str, expected: bytes, value: bytes) -> bool:
        """Store value only if the entry is still ``expected`` (two tabs using one initial password)."""
        with dbm.open(self.path, "c", 0o600) as db:
            key = name.encode("utf-8")
            if db.get(key) != expected:
                return False
            db[key] = value
            return True


class BuiltinLoginHandler(LoginHandler):
    """JupyterHub's login page, with the reason of a refusal the authenticator gives."""

    custom_login_error = ""
    # Set when the password given was a correct initial one: the form asks for a new one.
    ask_new_password = False

    def _render(self, login_error: str | None = None, username: str | None = None, **kwargs: Any) -> Any:
        return super()._render(
            self.custom_login_error or login_error,
            username,
            ask_new_password=self.ask_new_password,
            min_password_length=self.authenticator.min_password_length,
            **kwargs,
        )


class ChangePasswordHandler(BaseHandler):
    """``/hub/auth/change-password``: the current password, then the new one twice."""

    async def _page(self, message: str = "", ok: bool = False) -> None:
        html = await self.render_template(
            "change-password.html",
            message=message,
            ok=ok,
            min_password_length=self.authenticator.min_password_length,
        )
        self.finish(html)

    @web.authenticated
    async def get(self) -> None:
        await self._page()

    @web.authenticated
    async def post(self) -> None:
        current = self.get_body_argument("current_password", "", strip=False)
        new = self.get_body_argument("new_password", "", strip=False)
        repeated = self.get_body_argument("new_password_again", "", strip=False)
        if new != repeated:
            self.set_status(400)
            await self._page("The two new passwords differ.")
            return
        message = await self.authenticator.change_password(self, self.current_user.name, current, new)
        if message:
            self.set_status(400)
        await self._page(message or "Your password is changed.", ok=not message)


class BuiltinUserListAuthenticator(UsernameRuleMixin, Authenticator):
    """Password sign-in for users an admin has added, with one-time initial passwords."""

    dbm_path = Unicode(config=True, help="The password database (dbm, 0600).")
    initial_passwords_dir = Unicode(
        config=True,
        help="""Folder (0700) where each new user's initial password is written, 0600,
        for the operator; the file goes when the password has been used.""",
    )
    min_password_length = Integer(8, config=True, help="Shortest password a user may choose.")
    trusted_proxies = List(
        Unicode(),
        config=True,
        help="Networks of a TLS terminator in front of the edge proxy, whose X-Forwarded-For is believed.",
    )

    # Class level: one hub, one record of failures and one bcrypt thread, whatever
    # traitlets does with config values.
    name_throttle: ClassVar[SignInThrottle] = SignInThrottle(FREE_FAILURES_PER_NAME)
    address_throttle: ClassVar[SignInThrottle] = SignInThrottle(FREE_FAILURES_PER_ADDRESS)
    hasher: ClassVar[BoundedHasher] = BoundedHasher()
    turns: ClassVar[AddressTurns] = AddressTurns(partial(in_flight_allowed, address_throttle))

    @default("allow_existing_users")
    def _users_of_the_hub_are_allowed(self) -> bool:
        # Being a user of the hub (added by an admin or the roster) is the approval.
        return True

    @property
    def passwords(self) -> PasswordFile:
        Path(self.dbm_path).parent.mkdir(parents=True, exist_ok=True)
        return PasswordFile(self.dbm_path)

    # -- initial passwords ---------------------------------------------------------

    async def add_user(self, user: Any) -> None:
        """A user joined (admin page, API, roster, DSHUB_ADMIN_USERS, or already there at start)."""
        super().add_user(user)
        if self.passwords.get(user.name) is not None:
            return
        password = secrets.token_urlsafe(12)
        # ~1 ms at this cost: not through the sign-in queue, which a flood may fill.
        salt = bcrypt.gensalt(INITIAL_HASH_ROUNDS)
        hashed = await asyncio.get_running_loop().run_in_executor(
            None, bcrypt.hashpw, password.encode(), salt
        )
        if self.passwords.set_if_absent(user.name, INITIAL + hashed):
            self._write_initial(user.name, password)
            self.log.info("Made the initial password of %s (make initial-password NAME=...)", user.name)

    def delete_user(self, user: Any) -> None:
        """A deleted user's password goes with them: adding the name again issues a new one."""
        super().delete_user(user)
        self.passwords.remove(user.name)
        self._forget_initial(user.name)

    def user_renamed(self, old: str, new: str) -> None:
        """The password (or the unused initial one) follows the user; the old name keeps none."""
        self.passwords.rename(old, new)
        try:
            os.replace(self.initial_password_path(old), self.initial_password_path(new))
        except FileNotFoundError:
            pass

    def initial_password_path(self, name: str) -> Path:
        return Path(self.initial_passwords_dir) / escape_name(name)

    def _write_initial(self, name: str, password: str) -> None:
        folder = Path(self.initial_passwords_dir)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.initial_password_path(name)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        os.replace(tmp, path)

    def _forget_initial(self, name: str) -> None:
        self.initial_password_path(name).unlink(missing_ok=True)

    # -- sign-in ---------------------------------------------------------------------

    def _no_such_account(self, handler: Any, address: str) -> None:
        # No name to throttle: only the address that guessed it.
        handler.custom_login_error = "Invalid username or password."
        self.address_throttle.failed(address)

    def _throttled(self, handler: Any, raw: str, name: str, address: str) -> bool:
        wait = max(self.name_throttle.wait(name), self.address_throttle.wait(address))
        if wait:
            self.log.warning("Throttled sign-in of %s from %s: %.0f s to wait", shown(raw), address, wait)
            handler.custom_login_error = (
                f"Too many failed sign-ins for this name or from your address: try again in {wait:.0f} s."
            )
        return bool(wait)

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        if not isinstance(handler, BuiltinLoginHandler):
            # JupyterHub's token API takes a password too (POST /hub/api/users/<name>/tokens
            # {"auth": ...}), past the edge's rate and body limits on the sign-in page.
            self.log.warning(
                "Refused a password sent to %s: only the sign-in page takes one", shown(handler.request.path)
            )
            return None
        raw = data.get("username", "")
        name = normalize_username(raw)
        address = client_address(handler, tuple(self.trusted_proxies))
        if self._throttled(handler, raw, name, address):
            return None
        if username_problem(name) or handler.find_user(name) is None:
            self.log.info("Refused sign-in: %s is not a user of this hub", shown(raw))
            self._no_such_account(handler, address)
            return None
        if not await self.turns.turn(address):
            handler.custom_login_error = BUSY
            return None
        try:
            # A browser that left while this try waited costs no hashing (Tornado goes on with
            # its handler); failures, and passwords, may have changed meanwhile.
            if _gone(handler) or self._throttled(handler, raw, name, address):
                return None
            stored = self.passwords.get(name)
            if stored is None:
                self.log.info("Refused sign-in of %s: no password yet", name)
                self._no_such_account(handler, address)
                return None
            # Counted against the name before hashing, so parallel guesses at it see each other
            # at once rather than after their hashes; an attempt that was no wrong guess takes
            # its count back. Against the address once it failed: a class signing in together
            # from one address would see each other's correct sign-ins in flight as failures.
            self.name_throttle.failed(name)
            try:
                signed_in, wrong = await self._check(handler, name, data, stored)
            except HashingBusy:
                signed_in, wrong = None, False
                handler.custom_login_error = BUSY
        finally:
            self.turns.done(address)
        if wrong:
            self.address_throttle.failed(address)
        else:
            self.name_throttle.forgive(name)
        if signed_in:
            self.name_throttle.succeeded(name)
        return signed_in

    async def _check(
        self, handler: Any, name: str, data: dict[str, str], stored: bytes
    ) -> tuple[str | None, bool]:
        """(the name when signed in, else None; whether the password was a wrong guess)."""
        password = data.get("password", "").encode()
        initial = stored.startswith(INITIAL)
        too_long = len(password) > BCRYPT_MAX_BYTES
        if too_long or not await self.hasher.run(bcrypt.checkpw, password, stored.removeprefix(INITIAL)):
            self.log.info("Refused sign-in of %s: wrong password", name)
            handler.custom_login_error = "Invalid username or password."
            return None, True
        if not initial:
            return name, False
        new = data.get("new_password", "")
        problem = self._password_problem(new, password.decode())
        if problem:
            handler.custom_login_error = (
                f"This is your initial password: it works only once, to choose your own. {problem}"
            )
            handler.ask_new_password = True
            return None, False
        hashed = await self.hasher.run(bcrypt.hashpw, new.encode(), bcrypt.gensalt())
        if not self.passwords.replace(name, stored, hashed):
            handler.custom_login_error = "Your initial password has already been used."
            return None, True
        self._forget_initial(name)
        self.log.info("%s chose their own password at first sign-in", name)
        return name, False

    def _password_problem(self, new: str, old: str) -> str | None:
        if len(new) < self.min_password_length:
            return f"Enter a new password of at least {self.min_password_length} characters."
        if len(new.encode()) > BCRYPT_MAX_BYTES:
            return f"Enter a new password of at most {BCRYPT_MAX_BYTES} bytes (bcrypt's limit)."
        if new == old:
            return "The new password must differ from the old one."
        return None

    async def change_password(self, handler: Any, name: str, current: str, new: str) -> str | None:
        """None when changed; else what the user must fix."""
        wait = self.name_throttle.wait(name)
        if wait:
            return f"Too many wrong passwords: try again in {wait:.0f} s."
        stored = self.passwords.get(name)
        if stored is None or stored.startswith(INITIAL):
            return "Sign in with your initial password first."
        try:
            too_long = len(current.encode()) > BCRYPT_MAX_BYTES
            if too_long or not await self.hasher.run(bcrypt.checkpw, current.encode(), stored):
                self.name_throttle.failed(name)
                return "The current password is wrong."
            problem = self._password_problem(new, current)
            if problem:
                return problem
            hashed = await self.hasher.run(bcrypt.hashpw, new.encode(), bcrypt.gensalt())
        except HashingBusy:
            return "The hub is busy: try again in a few seconds."
        if not self.passwords.replace(name, stored, hashed):
            return "Your password was changed meanwhile: sign in again."
        self.log.info("%s changed their password", name)
        return None

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        # First match wins: these go before the base class's plain login page.
        return [
            (r"/login", BuiltinLoginHandler),
            (r"/auth/change-password", ChangePasswordHandler),
            *super().get_handlers(app),
        ]


def unused_initial_passwords(folder: Path, names: list[str]) -> dict[str, str | None]:
    """Each user's unused initial password from the hub's folder (None: used up, or no such user)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = (folder / escape_name(name)).read_text().strip()
        except FileNotFoundError:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> int:
    """``make initial-password NAME=...`` (in the hub container): users' unused initial passwords.

    A line per user (none named: the first of DSHUB_ADMIN_USERS) with their password, or with
    --with-names "name password" (usernames hold no spaces), for a class at once.
    """
    import argparse
    import sys

    from spawner.config import settings as dshub_settings
    from spawner.config.layout import initial_passwords_dir

    parser = argparse.ArgumentParser(prog="python -m spawner.auth.localauth", description=main.__doc__)
    parser.add_argument("command", choices=["initial-password"])
    parser.add_argument("names", nargs="*", help="the users (default: the first of DSHUB_ADMIN_USERS)")
    parser.add_argument("--with-names", action="store_true", help='print "name password" lines')
    args = parser.parse_args(argv)
    names = [normalize_username(n) for n in args.names or [dshub_settings.load().admin_users[0]]]
    found = unused_initial_passwords(initial_passwords_dir(), names)
    for name, password in found.items():
        if password is None:
            print(
                f"dshub: no unused initial password for {shown(name)}: they chose their own already, or "
                "are not a user (an admin adds them on the admin page or with make roster)",
                file=sys.stderr,
            )
        else:
            print(f"{name} {password}" if args.with_names else password)
    return 1 if None in found.values() else 0


if __name__ == "__main__":
    raise SystemExit(main())
