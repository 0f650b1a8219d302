"""The built-in user list for a first install (``DSHUB_AUTHENTICATOR=local``).

FirstUseAuthenticator with two changes that make it safe to expose:

* only users that exist in the hub may sign in (admins add them on the admin page,
  which is the approval); a new user's first sign-in sets their password;
* the first admin's password is generated on first start (``make admin-password``
  shows it), so there is no window in which a stranger could claim that account.
"""

from __future__ import annotations

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

    def _user_exists(self, username: str) -> bool:
        # Existence is checked in authenticate() through the request handler,
        # not through the deprecated shared database session this method uses.
        return True

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        username = self.normalize_username(data.get("username", ""))
        if not username or handler.find_user(username) is None:
            self.log.info("Refused sign-in: %r is not a user of this hub", username)
            return None
        return await super().authenticate(handler, {**data, "username": username})

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [(r"/login", BuiltinLoginHandler), (r"/auth/change-password", ResetPasswordHandler)]
