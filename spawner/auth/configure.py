"""Which authenticator signs people in, and how it is set up, from settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spawner.auth import oauth
from spawner.auth.localauth import BuiltinUserListAuthenticator
from spawner.config.layout import initial_passwords_dir
from spawner.config.settings import Settings

PROVIDERS: dict[str, tuple[type, str]] = {
    "github": (oauth.DshubGitHubOAuthenticator, "GitHub"),
    "gitlab": (oauth.DshubGitLabOAuthenticator, "GitLab"),
    "google": (oauth.DshubGoogleOAuthenticator, "Google"),
    "azuread": (oauth.DshubAzureAdOAuthenticator, "Microsoft Entra ID"),
    "generic": (oauth.DshubOIDCAuthenticator, "your organisation"),
}


@dataclass(frozen=True)
class AuthConfig:
    cls: type
    traits: dict[str, Any] = field(default_factory=dict)
    # Traits of the spawner that sign-in needs (e.g. handing over the access token).
    spawner_traits: dict[str, Any] = field(default_factory=dict)


def authenticator_config(settings: Settings, data_dir: Path) -> AuthConfig:
    """The authenticator class and its traits for these settings."""
    if not settings.oauth:
        return AuthConfig(
            BuiltinUserListAuthenticator,
            {
                "admin_users": set(settings.admin_users),
                "dbm_path": str(data_dir / "passwords.dbm"),
                "initial_passwords_dir": str(initial_passwords_dir(data_dir)),
                "trusted_proxies": list(settings.trusted_proxies),
            },
        )
    cls, service = PROVIDERS[settings.authenticator]
    traits: dict[str, Any] = {
        "client_id": settings.oauth_client_id,
        "client_secret": settings.oauth_client_secret,
        "oauth_callback_url": settings.oauth_callback_url,
        "login_service": settings.oauth_login_service or service,
        "custom_403_message": oauth.NOT_ALLOWED,
        "admin_users": set(settings.admin_users),
        "allowed_users": set(settings.oauth_allowed_users),
        "allow_all": settings.oauth_allow_all,
        # auth_state is encrypted with the hub's crypt key (generated on first start).
        "enable_auth_state": True,
        # IdP accounts are the record: an account the IdP no longer allows is not let in
        # just because the hub remembers it.
        "allow_existing_users": False,
        "identities_path": str(data_dir / oauth.IDENTITIES_FILE),
        "instructors_group": settings.instructors_group,
        "instructors_from_idp": settings.oauth_instructors_from_idp,
    }
    if settings.oauth_logout_url and settings.oauth_logout_url != "idp":
        traits["logout_redirect_url"] = settings.oauth_logout_url
    groups = set(settings.oauth_allowed_groups)
    admin_groups = set(settings.oauth_admin_groups)
    claim = settings.oauth_username_claim
    kind = settings.authenticator
    if kind == "github":
        traits |= {
            "allowed_organizations": groups,
            "scope": ["read:user", "read:org"],
            # Teams (org:team) become hub groups.
            "populate_teams_in_auth_state": True,
            "manage_groups": True,
            "auth_state_groups_key": github_teams,
            "admin_groups": admin_groups,
        }
    elif kind == "gitlab":
        traits |= {"gitlab_url": settings.gitlab_url, "allowed_gitlab_groups": groups}
    elif kind == "google":
        traits |= {
            "hosted_domain": list(settings.google_hosted_domains),
            "username_claim": oauth.verified_claim(claim or "email"),
        }
    else:
        traits |= {
            "manage_groups": True,
            "allowed_groups": groups,
            "admin_groups": admin_groups,
            "username_claim": oauth.verified_claim(claim or "preferred_username"),
        }
        if kind == "azuread":
            traits |= {
                "tenant_id": settings.azuread_tenant_id,
                "auth_state_groups_key": f"user.{settings.oauth_groups_claim}",
            }
        else:
            traits |= {
                "scope": settings.oauth_scopes.split(),
                "auth_state_groups_key": f"oauth_user.{settings.oauth_groups_claim}",
                "oidc_issuer": settings.oidc_issuer or "",
                "oidc_backchannel_url": settings.oidc_backchannel_url or "",
                "logout_at_idp": settings.oauth_logout_url == "idp",
                "post_logout_redirect_uri": settings.public_url.rstrip("/") + "/hub/login",
                # Filled by discovery when an issuer is set.
                "authorize_url": settings.oauth_authorize_url or "",
                "token_url": settings.oauth_token_url or "",
                "userdata_url": settings.oauth_userdata_url or "",
            }
    spawner_traits = {"auth_state_hook": oauth.pass_access_token} if settings.oauth_pass_token else {}
    return AuthConfig(cls, traits, spawner_traits)


def github_teams(auth_state: dict[str, Any]) -> list[str]:
    """GitHub teams as org:team, the same spelling allowed_organizations takes."""
    return [f"{team['organization']['login']}:{team['slug']}" for team in auth_state.get("teams") or []]
