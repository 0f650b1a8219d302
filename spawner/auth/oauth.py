"""OAuthenticator, the way dshub runs it: fail closed, clear pages, OIDC discovery.

Each provider class is OAuthenticator's own with :class:`DshubOAuthMixin` in
front, which

* logs why a sign-in was refused (and, with no allow rule at all, that only
  admins can enter: the hub fails closed unless allow-all is set explicitly);
* never takes a username from an e-mail address the provider has not verified;
* holds the provider's username to dshub's username rule (:mod:`spawner.core.names`);
* binds each username to the provider's stable subject (the account, not its
  current name) at the first sign-in, and refuses any other account under that
  name until an operator runs ``python -m spawner.auth.oauth unbind NAME``;
* ignores the provider's group named like the instructors group unless the
  operator chose to take instructors from the provider;
* shows a page that says what happened when the provider cannot be reached.

:class:`DshubOIDCAuthenticator` adds OpenID Connect discovery (GenericOAuthenticator
has none) with separate browser-facing and back-channel issuer URLs, and refuses
a discovery document that names another issuer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

from oauthenticator.azuread import AzureAdOAuthenticator
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from oauthenticator.gitlab import GitLabOAuthenticator
from oauthenticator.google import GoogleOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler, OAuthLogoutHandler
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Bool, Float, HasTraits, Unicode

from spawner.auth.usernames import UsernameRuleMixin
from spawner.config.layout import DATA_DIR
from spawner.core.names import USERNAME_RULE, InvalidUsername, checked_username, normalize_username, shown

IDENTITIES_FILE = "identities.sqlite"
UNREACHABLE = (
    "The sign-in service ({service}) cannot be reached right now. Try again in a few "
    "minutes; if it keeps happening, tell the hub's admins."
)
NOT_ALLOWED = (
    "Your account is not allowed on this hub. Ask the hub's admins to add you, or one of your groups."
)
BAD_USERNAME = "Your account at the sign-in service ({service}) has a username this hub cannot use: {problem}"
NO_SUBJECT = (
    "The sign-in service ({service}) did not say which account signed in (no {claims} in its "
    "answer), so this hub cannot keep the username {name} to one account. Tell an admin of this hub."
)
TAKEN = (
    "The username {name} already belongs to another account at the sign-in service ({service}), "
    "so you cannot sign in as {name}. If the name should be yours, an admin of this hub must unbind it first."
)
WRONG_ISSUER = (
    "The sign-in service ({service}) is not the one this hub is set up for (its issuer does not "
    "match), so signing in is off. Tell an admin of this hub."
)
# OpenID Connect limits sub to 255 ASCII characters; numeric ids (GitHub, GitLab) fit too.
_SUBJECT = re.compile(r"[!-~]{1,255}")


def verified_claim(claim: str) -> Callable[[dict[str, Any]], str]:
    """A username_claim that refuses e-mail addresses the provider has not verified."""

    def username(user_info: dict[str, Any]) -> str:
        value = user_info.get(claim)
        if not isinstance(value, str):
            raise web.HTTPError(403, f"The sign-in service sent no '{claim}' to use as your username.")
        if not value:
            # OAuthenticator would take an empty name for a missing one (a server error).
            raise web.HTTPError(
                403,
                f"The sign-in service sent an empty '{claim}', which cannot be your username: "
                f"{USERNAME_RULE}.",
            )
        if claim == "email" and user_info.get("email_verified", user_info.get("verified_email")) is not True:
            raise web.HTTPError(
                403,
                "Your e-mail address is not verified by the sign-in service, so it cannot be your username.",
            )
        return value

    return username


def unreachable(handler: Any, error: BaseException) -> web.HTTPError:
    """The 503 page for a provider the hub cannot reach; the cause goes to the log."""
    handler.log.warning("Sign-in service unreachable (%s): %s", handler.request.path, error)
    return web.HTTPError(503, UNREACHABLE.format(service=handler.authenticator.login_service))


class ReachabilityCheckedLoginHandler(OAuthLoginHandler):
    """Checks the provider over the back channel before sending the browser there."""

    async def get(self) -> None:
        try:
            await self.authenticator.discover()
        except web.HTTPError:
            raise  # discover's own clear page (a provider that is not the configured one)
        except Exception as error:
            raise unreachable(self, error) from None
        super().get()


class ReachabilityCheckedCallbackHandler(OAuthCallbackHandler):
    def check_error(self) -> None:
        error = self.get_argument("error", "")
        if error:
            detail = self.get_argument("error_description", error)
            self.log.info("Sign-in refused by the provider: %s", detail)
            raise web.HTTPError(
                403,
                f"The sign-in service ({self.authenticator.login_service}) did not sign you in "
                f"({detail[:200]}). Go back to the login page to try again.",
            )

    async def get(self) -> None:
        try:
            await super().get()
        except (OSError, TimeoutError, HTTPClientError) as error:
            if isinstance(error, HTTPClientError) and error.code != 599:
                raise
            raise unreachable(self, error) from None


class IdPLogoutHandler(OAuthLogoutHandler):
    async def render_logout_page(self) -> None:
        try:
            # The provider's end-session URL is known once discovery ran (e.g. after a hub restart).
            await self.authenticator.discover()
        except Exception as error:
            self.log.warning("Cannot end the provider's session: %s", error)
        await super().render_logout_page()


def pass_access_token(spawner: Any, auth_state: dict[str, Any] | None) -> None:
    """Spawner.auth_state_hook: the user's OAuth access token for their own server."""
    if auth_state and auth_state.get("access_token"):
        spawner.environment["OAUTH_ACCESS_TOKEN"] = auth_state["access_token"]


class Identities:
    """The record of which provider account owns each username: ``name -> "<kind>:<subject>"``.

    One small SQLite file in the hub's data directory. Each call opens its own
    connection, so calls can run on worker threads (see :meth:`DshubOAuthMixin._in_thread`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # Made 0600 before SQLite opens it: SQLite gives its journal the database's mode.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS identities ("
                    " username TEXT PRIMARY KEY NOT NULL,"
                    " identity TEXT NOT NULL,"
                    " bound_at TEXT NOT NULL)"
                )
                yield db
        finally:
            db.close()

    def owner(self, username: str) -> str | None:
        """The identity that owns ``username``, or None while the name is free."""
        with self._transaction() as db:
            row = db.execute("SELECT identity FROM identities WHERE username = ?", (username,)).fetchone()
        return row[0] if row else None

    def claim(self, username: str, identity: str) -> tuple[str, bool]:
        """The owner of ``username`` after trying to bind it to ``identity``, and whether this bound it.

        Insert and read are one transaction, so of two first sign-ins at once exactly
        one account wins and the other sees the winner.
        """
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT INTO identities (username, identity, bound_at) VALUES (?, ?, ?) "
                "ON CONFLICT (username) DO NOTHING",
                (username, identity, datetime.now(UTC).isoformat(timespec="seconds")),
            ).rowcount
            (owner,) = db.execute(
                "SELECT identity FROM identities WHERE username = ?", (username,)
            ).fetchone()
        return owner, inserted == 1

    def unbind(self, username: str) -> tuple[str, str] | None:
        """Release ``username``: the identity and the time it was bound, or None if it was free."""
        with self._transaction() as db:
            row = db.execute(
                "DELETE FROM identities WHERE username = ? RETURNING identity, bound_at", (username,)
            ).fetchone()
        return (row[0], row[1]) if row else None


class DshubOAuthMixin(UsernameRuleMixin, HasTraits):
    """Front half of every dshub OAuth authenticator (see the module doc).

    A HasTraits so that traitlets sets up the traits declared here.
    """

    login_handler = ReachabilityCheckedLoginHandler
    callback_handler = ReachabilityCheckedCallbackHandler
    logout_handler = IdPLogoutHandler

    # The first word of an identity, and the claims of the provider's user info that
    # hold its stable account id, first present one wins. Set by each provider class.
    identity_kind: ClassVar[str]
    subject_claims: ClassVar[tuple[str, ...]]

    identities_path = Unicode(
        str(DATA_DIR / IDENTITIES_FILE),
        config=True,
        help="SQLite file binding each username to the provider account that first signed in with it.",
    )
    instructors_group = Unicode(
        "instructors", config=True, help="Hub group whose members may write the course folder."
    )
    instructors_from_idp = Bool(
        False,
        config=True,
        help="Take membership of instructors_group from the provider's groups. False: the "
        "provider's group of that name is ignored and the hub's own membership stands.",
    )

    def _has_allow_rule(self) -> bool:
        return bool(
            self.allow_all
            or self.allowed_users
            or getattr(self, "allowed_groups", None)
            or getattr(self, "allowed_organizations", None)
            or getattr(self, "allowed_gitlab_groups", None)
            or getattr(self, "hosted_domain", None)
        )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self._has_allow_rule():
            self.log.warning(
                "No allow rule is configured: only admins can sign in. Set DSHUB_OAUTH_ALLOWED_USERS "
                "or DSHUB_OAUTH_ALLOWED_GROUPS (or DSHUB_OAUTH_ALLOW_ALL=true) to let others in."
            )

    async def _in_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        # SQLite waits up to its timeout while the unbind command holds the file's lock;
        # on the event loop that wait would stall every request of the hub.
        return await asyncio.to_thread(call, Identities(Path(self.identities_path)), *args)

    def _identity(self, auth_state: dict[str, Any] | None) -> str | None:
        """``"<kind>:<subject>"`` from the provider's user info in auth_state, or None."""
        user_info = (auth_state or {}).get(self.user_auth_state_key) or {}
        for claim in self.subject_claims:
            value = user_info.get(claim)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str) and _SUBJECT.fullmatch(value):
                return f"{self.identity_kind}:{value}"
        return None

    def _required_identity(self, name: str, auth_state: dict[str, Any] | None) -> str:
        identity = self._identity(auth_state)
        if identity is None:
            self.log.warning(
                "Refused sign-in of %s: the provider's user info has none of %s",
                shown(name),
                ", ".join(self.subject_claims),
            )
            claims = " or ".join(self.subject_claims)
            raise web.HTTPError(403, NO_SUBJECT.format(service=self.login_service, claims=claims, name=name))
        return identity

    def _taken(self, name: str, identity: str, owner: str) -> web.HTTPError:
        self.log.warning(
            "Refused sign-in of %s: the name belongs to %s, not to %s (an admin releases it with: "
            "make unbind NAME=%s)",
            shown(name),
            owner,
            identity,
            name,
        )
        return web.HTTPError(403, TAKEN.format(name=name, service=self.login_service))

    def _keep_hub_instructors(self, auth_model: dict[str, Any], user: Any) -> None:
        """Instructors not taken from the provider are the hub's own (make roster, admin page):
        group sync must not remove them."""
        if not self.manage_groups or self.instructors_from_idp or user is None:
            return
        if any(group.name == self.instructors_group for group in user.groups):
            auth_model["groups"] = sorted({*auth_model["groups"], self.instructors_group})

    async def authenticate(self, handler: Any, data: Any = None, **kwargs: Any) -> dict[str, Any]:
        auth_model = await super().authenticate(handler, data, **kwargs)
        try:
            name = checked_username(auth_model["name"])
        except InvalidUsername as problem:
            self.log.warning("Refused sign-in through %s: %s", self.login_service, problem)
            raise web.HTTPError(
                403, BAD_USERNAME.format(service=self.login_service, problem=problem)
            ) from None
        auth_model["name"] = name
        identity = self._required_identity(name, auth_model["auth_state"])
        owner = await self._in_thread(Identities.owner, name)
        if owner not in (None, identity):
            raise self._taken(name, identity, owner)
        self._keep_hub_instructors(auth_model, handler.find_user(name))
        return auth_model

    async def run_post_auth_hook(self, handler: Any, auth_model: dict[str, Any]) -> dict[str, Any]:
        # Bound only now, after the allow rules passed: an account that may not enter
        # must not be able to take a name away from someone who may.
        name = auth_model["name"]
        identity = self._required_identity(name, auth_model["auth_state"])
        owner, bound_now = await self._in_thread(Identities.claim, name, identity)
        if owner != identity:
            raise self._taken(name, identity, owner)
        if bound_now:
            self.log.info("Bound the username %s to %s (its first sign-in)", shown(name), identity)
        return await super().run_post_auth_hook(handler, auth_model)

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        refreshed = await super().refresh_user(user, handler, **kwargs)
        if not isinstance(refreshed, dict):
            return refreshed
        identity = self._identity(refreshed.get("auth_state"))
        owner = await self._in_thread(Identities.owner, user.name)
        if identity is None or identity != owner:
            # Unbound by an admin, bound to another account since, or signed in before
            # names were bound: a new sign-in decides who the name belongs to.
            self.log.warning(
                "Session of %s needs a new sign-in: the name belongs to %s, the session to %s",
                shown(user.name),
                owner or "no account yet",
                identity or "an account without a subject",
            )
            return False
        self._keep_hub_instructors(refreshed, user)
        return refreshed

    async def get_user_groups(self, auth_state: dict[str, Any]) -> set[str]:
        groups = await super().get_user_groups(auth_state)
        if self.instructors_group in groups and not self.instructors_from_idp:
            groups.discard(self.instructors_group)
            self.log.info(
                "Ignored the provider's group %s of %s: DSHUB_OAUTH_INSTRUCTORS_FROM_IDP is false, "
                "so instructors are made on the hub",
                shown(self.instructors_group),
                self._identity(auth_state) or "an account",
            )
        return groups

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        allowed = await super().check_allowed(username, auth_model)
        if not allowed:
            if not self._has_allow_rule():
                why = "no allow rule is configured, so only admins can sign in"
            else:
                groups = sorted((auth_model or {}).get("groups") or [])
                why = f"not an allowed user nor in an allowed group (groups: {groups})"
            self.log.warning("Refused sign-in of %s: %s", username, why)
        return allowed

    async def discover(self) -> None:
        """Providers with fixed endpoints have nothing to look up."""


class DshubGitHubOAuthenticator(DshubOAuthMixin, GitHubOAuthenticator):
    identity_kind = "github"
    subject_claims = ("id",)


class DshubGitLabOAuthenticator(DshubOAuthMixin, GitLabOAuthenticator):
    identity_kind = "gitlab"
    subject_claims = ("id",)


class DshubGoogleOAuthenticator(DshubOAuthMixin, GoogleOAuthenticator):
    identity_kind = "google"
    # OAuthenticator asks Google's v1 userinfo, which calls the account id "id"; the
    # OpenID Connect endpoints call the same value "sub".
    subject_claims = ("sub", "id")


class DshubAzureAdOAuthenticator(DshubOAuthMixin, AzureAdOAuthenticator):
    identity_kind = "azuread"
    # oid is the account in the tenant; sub differs per application.
    subject_claims = ("oid", "sub")


class DshubOIDCAuthenticator(DshubOAuthMixin, GenericOAuthenticator):
    """Any OpenID Connect provider, endpoints discovered from its issuer URL."""

    identity_kind = "generic"
    subject_claims = ("sub",)

    oidc_issuer = Unicode(
        config=True,
        help="Issuer URL as the browser reaches it. Empty: use the explicit endpoint URLs.",
    )
    oidc_backchannel_url = Unicode(
        config=True,
        help="Issuer URL as the hub reaches it, when different from oidc_issuer.",
    )
    logout_at_idp = Bool(
        False,
        config=True,
        help="After hub logout, send the browser to the provider's end_session_endpoint.",
    )
    post_logout_redirect_uri = Unicode(config=True, help="Where the provider sends the browser after logout.")
    discovery_timeout = Float(5, config=True, help="Seconds to wait for the discovery document.")

    def _to_backchannel(self, url: str) -> str:
        if self.oidc_backchannel_url and url.startswith(self.oidc_issuer):
            return self.oidc_backchannel_url + url[len(self.oidc_issuer) :]
        return url

    def _to_browser(self, url: str) -> str:
        if self.oidc_backchannel_url and url.startswith(self.oidc_backchannel_url):
            return self.oidc_issuer + url[len(self.oidc_backchannel_url) :]
        return url

    async def discover(self) -> None:
        """Fetch the discovery document (every sign-in: it doubles as a reachability check)."""
        if not self.oidc_issuer:
            return
        base = self.oidc_backchannel_url or self.oidc_issuer
        doc = await self.httpfetch(
            f"{base}/.well-known/openid-configuration",
            label="fetching the OpenID Connect discovery document",
            method="GET",
            request_timeout=self.discovery_timeout,
            validate_cert=self.validate_server_cert,
        )
        # The issuer as configured, or as the hub reaches it: the development provider
        # names the URL it was reached by, a provider with a fixed public name its own.
        expected = {self.oidc_issuer, self.oidc_backchannel_url} - {""}
        if doc.get("issuer") not in expected:
            self.log.error(
                "Refusing sign-in: the discovery document at %s names the issuer %s, but "
                "DSHUB_OIDC_ISSUER%s is %s",
                base,
                shown(str(doc.get("issuer"))),
                " (or DSHUB_OIDC_BACKCHANNEL_URL)" if self.oidc_backchannel_url else "",
                " or ".join(sorted(expected)),
            )
            raise web.HTTPError(503, WRONG_ISSUER.format(service=self.login_service))
        self.authorize_url = self._to_browser(doc["authorization_endpoint"])
        self.token_url = self._to_backchannel(doc["token_endpoint"])
        self.userdata_url = self._to_backchannel(doc["userinfo_endpoint"])
        end_session = doc.get("end_session_endpoint")
        if self.logout_at_idp and end_session:
            query = urlencode(
                {"client_id": self.client_id, "post_logout_redirect_uri": self.post_logout_redirect_uri}
            )
            self.logout_redirect_url = f"{self._to_browser(end_session)}?{query}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spawner.auth.oauth",
        description="Operator commands for OAuth sign-in; run them in the hub container.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    unbind = sub.add_parser(
        "unbind",
        help="release a username from the provider account it is bound to, so that the next "
        "account that signs in with this name owns it",
    )
    unbind.add_argument("name")
    unbind.add_argument(
        "--identities",
        type=Path,
        default=DATA_DIR / IDENTITIES_FILE,
        help="the file of bound usernames (default: %(default)s, the hub's)",
    )
    args = parser.parse_args(argv)
    name = normalize_username(args.name)
    released = Identities(args.identities).unbind(name) if args.identities.exists() else None
    if released is None:
        print(
            f"dshub: the username {shown(name)} is not bound to any account: nothing to unbind.",
            file=sys.stderr,
        )
        return 1
    identity, since = released
    print(
        f"Unbound the username {shown(name)} from {identity} (bound since {since}). The next account "
        "that signs in with this name owns it, with its files, groups and servers."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
