"""The built-in user list for a first install (``DSHUB_AUTHENTICATOR=local``).

FirstUseAuthenticator with two changes that make it safe to expose:

* only users that exist in the hub may sign in (admins add them on the admin page,
  which is the approval); a new user's first sign-in sets their password;
* the first admin's password is generated on first start (``make admin-password``
  shows it), so there is no window in which a stranger could claim that account.

bcrypt (~0.3 s of CPU per sign-in at its default cost) runs in a thread, not on
the hub's event loop as upstream does: a class signing in at once otherwise
queues behind each other's hashes, and every spawn with them (BENCHMARKS.md,
login storm). The password file is only touched on the event loop, one access
at a time, as upstream does.
"""

from __future__ import annotations

import asyncio
import dbm
from pathlib import Path
from typing import Any

import bcrypt
from firstuseauthenticator import FirstUseAuthenticator
from firstuseauthenticator.firstuseauthenticator import CustomLoginHandler, ResetPasswordHandler
from jupyterhub.handlers import LoginHandler
from traitlets import Unicode, default


class BuiltinLoginHandler(CustomLoginHandler):
    """firstuseauthenticator's login page, fixed for JupyterHub 6.

    JupyterHub 6 renders login errors through ``_render(..., sync=True)``; the
    upstream override does not take extra arguments and turns every failed
    sign-in into a 500.
    """

    def _render(self, login_error: str | None = None, username: str | None = None, **kwargs: Any) -> Any:
        return LoginHandler._render(self, self.custom_login_error or login_error, username, **kwargs)


class BuiltinUserListAuthenticator(FirstUseAuthenticator):
    """Password sign-in for users an admin has added; first sign-in sets the password."""

    initial_admin_password = Unicode(
        config=True,
        help="""Password stored for each admin in ``admin_users`` that has none yet.

        Set from a secret generated on first start. Once an admin has a password
        (set here, or changed on /hub/auth/change-password) it is never overwritten.
        """,
    )

    @default("create_users")
    def _no_self_registration(self) -> bool:
        return False

    @default("min_password_length")
    def _min_password_length(self) -> int:
        return 8

    @default("check_passwords_on_startup")
    def _no_legacy_check(self) -> bool:
        # Only databases written before firstuseauthenticator 1.0 need it.
        return False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.initial_admin_password:
            self._seed_admin_passwords()

    def _seed_admin_passwords(self) -> None:
        Path(self.dbm_path).parent.mkdir(parents=True, exist_ok=True)
        with dbm.open(self.dbm_path, "c", 0o600) as db:
            for name in self.admin_users:
                key = self.normalize_username(name).encode("utf-8")
                if key not in db:
                    db[key] = bcrypt.hashpw(self.initial_admin_password.encode("utf-8"), bcrypt.gensalt())
                    self.log.info("Stored the initial password of admin %s", name)

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        username = self.normalize_username(data.get("username", ""))
        if not username or handler.find_user(username) is None:
            self.log.info("Refused sign-in: %r is not a user of this hub", username)
            return None
        password = data.get("password", "")
        loop = asyncio.get_running_loop()
        key = username.encode("utf-8")
        with dbm.open(self.dbm_path, "c", 0o600) as db:
            stored = db.get(key)
        if stored is None:
            # The first sign-in sets the password (firstuseauthenticator's rule).
            if not self._validate_password(password):
                handler.custom_login_error = (
                    f"Password too short! Please choose a password at least "
                    f"{self.min_password_length} characters long."
                )
                self.log.error(handler.custom_login_error)
                return None
            hashed = await loop.run_in_executor(
                None, bcrypt.hashpw, password.encode("utf-8"), bcrypt.gensalt()
            )
            with dbm.open(self.dbm_path, "c", 0o600) as db:
                # A second first sign-in that hashed meanwhile does not overwrite the first.
                stored = db.setdefault(key, hashed)
            if stored == hashed:
                return username
        matches = await loop.run_in_executor(None, bcrypt.checkpw, password.encode("utf-8"), stored)
        return username if matches else None

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [(r"/login", BuiltinLoginHandler), (r"/auth/change-password", ResetPasswordHandler)]
