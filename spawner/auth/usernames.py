"""The username rule (spawner.core.names) at JupyterHub's own doors.

Every authenticator of dshub carries :class:`UsernameRuleMixin`, so the rule
holds wherever JupyterHub asks its authenticator about a name: sign-in (local
and each OAuth provider), ``DSHUB_ADMIN_USERS``, the users already in the
database at start (a name that breaks the rule is reported there and gets
neither a server nor a route), and the REST API the admin page uses.

JupyterHub answers a refused name in the API with only "Invalid username", and
its single-user ``POST /api/users/<name>`` creates the user before anything
checks the name. The handlers here check first and answer 400 with what is
wrong and the rule, and nothing is created. They are registered through the
authenticator's ``get_handlers``, which JupyterHub puts in front of its own.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.apihandlers.users import UserAPIHandler, UserListAPIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from spawner.core.names import USERNAME_RULE, normalize_username, shown, username_problem


def refusal(raw: Any) -> str | None:
    """Why a name sent to the hub is refused (the message for the 400), or None."""
    if not isinstance(raw, str):
        return f"{shown(str(raw))} is not a string"
    problem = username_problem(normalize_username(raw))
    return f"{shown(raw)}: {problem}" if problem else None


def _refuse(handler: web.RequestHandler, reasons: list[str]) -> web.HTTPError:
    handler.log.warning("Refused username(s) in %s: %s", handler.request.path, "; ".join(reasons))
    return web.HTTPError(400, f"Refused {'; '.join(reasons)}. The rule: {USERNAME_RULE}.")


class RuledUserListAPIHandler(UserListAPIHandler):
    """``POST /api/users`` (the admin page's "Add Users"): every name checked, all or none."""

    @needs_scope("admin:users")
    async def post(self) -> None:
        data = self.get_json_body()
        names = data.get("usernames") if isinstance(data, dict) else None
        if isinstance(names, list):
            reasons = [reason for reason in map(refusal, names) if reason]
            if reasons:
                raise _refuse(self, reasons)
            spellings: dict[str, str] = {}
            for raw in names:
                first = spellings.setdefault(normalize_username(raw), raw)
                if first != raw:
                    raise _refuse(
                        self,
                        [f"{shown(first)} and {shown(raw)}: both are the user {normalize_username(raw)}"],
                    )
        await super().post()


class RuledUserAPIHandler(UserAPIHandler):
    """``POST /api/users/<name>`` creates the normalised name; ``PATCH`` checks a new name."""

    @needs_scope("admin:users")
    async def post(self, user_name: str) -> None:
        reason = refusal(user_name)
        if reason:
            raise _refuse(self, [reason])
        await super().post(normalize_username(user_name))

    @needs_scope("admin:users")
    async def patch(self, user_name: str) -> None:
        data = self.get_json_body()
        new_name = None
        if isinstance(data, dict) and "name" in data:
            reason = refusal(data["name"])
            if reason:
                raise _refuse(self, [reason])
            new_name = normalize_username(data["name"])
        await super().patch(user_name)
        renamed = getattr(self.authenticator, "user_renamed", None)
        if new_name and new_name != user_name and renamed:
            # JupyterHub tells the authenticator nothing of a rename: what it keeps
            # by name (e.g. a password) must follow, or the old name would keep it.
            renamed(user_name, new_name)


USER_API_HANDLERS: list[tuple[str, type]] = [
    (r"/api/users", RuledUserListAPIHandler),
    (r"/api/users/([^/]+)", RuledUserAPIHandler),
]


class UsernameRuleMixin:
    """In front of an Authenticator class: the username rule for everything it decides."""

    def normalize_username(self, username: str) -> str:
        return super().normalize_username(normalize_username(username))  # type: ignore[misc]

    def validate_username(self, username: str) -> bool:
        problem = username_problem(username)
        if problem:
            self.log.warning("Refused the username %s: %s", shown(username), problem)  # type: ignore[attr-defined]
            return False
        return super().validate_username(username)  # type: ignore[misc]

    def add_user(self, user: Any) -> Any:
        # Called for each user in the database at start: this is where a name made
        # before the rule is reported (JupyterHub logs the error and keeps the user).
        problem = username_problem(user.name)
        if problem:
            raise ValueError(
                f"the user {shown(user.name)} breaks the username rule ({problem}): they cannot sign "
                "in, start a server or get a route until an admin renames or deletes them"
            )
        return super().add_user(user)  # type: ignore[misc]

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [*USER_API_HANDLERS, *super().get_handlers(app)]  # type: ignore[misc]
