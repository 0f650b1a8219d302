"""OAuthenticator, the way dshub runs it: fail closed, clear pages, OIDC discovery.

Each provider class is OAuthenticator's own with :class:`DshubOAuthMixin` in
front, which

* logs why a sign-in was refused (and, with no allow rule at all, that only
  admins can enter: the hub fails closed unless allow-all is set explicitly);
* never takes a username from an e-mail address the provider has not verified;
* shows a page that says what happened when the provider cannot be reached.

:class:`DshubOIDCAuthenticator` adds OpenID Connect discovery (GenericOAuthenticator
has none) with separate browser-facing and back-channel issuer URLs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from oauthenticator.azuread import AzureAdOAuthenticator
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from oauthenticator.gitlab import GitLabOAuthenticator
from oauthenticator.google import GoogleOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler, OAuthLogoutHandler
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Bool, Float, Unicode

UNREACHABLE = (
    "The sign-in service ({service}) cannot be reached right now. Try again in a few "
    "minutes; if it keeps happening, tell the hub's admins."
)
NOT_ALLOWED = (
    "Your account is not allowed on this hub. Ask the hub's admins to add you, or one of your groups."
)


def verified_claim(claim: str) -> Callable[[dict[str, Any]], str]:
    """A username_claim that refuses e-mail addresses the provider has not verified."""

    def username(user_info: dict[str, Any]) -> str:
        value = user_info.get(claim)
        if not isinstance(value, str) or not value:
            raise web.HTTPError(403, f"The sign-in service sent no '{claim}' to use as your username.")
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


class DshubOAuthMixin:
    """Front half of every dshub OAuth authenticator (see the module doc)."""

    login_handler = ReachabilityCheckedLoginHandler
    callback_handler = ReachabilityCheckedCallbackHandler
    logout_handler = IdPLogoutHandler

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
    pass


class DshubGitLabOAuthenticator(DshubOAuthMixin, GitLabOAuthenticator):
    pass


class DshubGoogleOAuthenticator(DshubOAuthMixin, GoogleOAuthenticator):
    pass


class DshubAzureAdOAuthenticator(DshubOAuthMixin, AzureAdOAuthenticator):
    pass


class DshubOIDCAuthenticator(DshubOAuthMixin, GenericOAuthenticator):
    """Any OpenID Connect provider, endpoints discovered from its issuer URL."""

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
        self.authorize_url = self._to_browser(doc["authorization_endpoint"])
        self.token_url = self._to_backchannel(doc["token_endpoint"])
        self.userdata_url = self._to_backchannel(doc["userinfo_endpoint"])
        end_session = doc.get("end_session_endpoint")
        if self.logout_at_idp and end_session:
            query = urlencode(
                {"client_id": self.client_id, "post_logout_redirect_uri": self.post_logout_redirect_uri}
            )
            self.logout_redirect_url = f"{self._to_browser(end_session)}?{query}"
