import asyncio

import pytest
from jupyterhub import orm
from tornado import web
from traitlets.config import Config

from spawner.auth import oauth
from spawner.auth.configure import authenticator_config, github_teams
from spawner.auth.localauth import BuiltinUserListAuthenticator, unused_initial_passwords
from spawner.config import settings as s

OAUTH = {
    "DSHUB_OAUTH_CLIENT_ID": "dshub-client",
    "DSHUB_OAUTH_CLIENT_SECRET": "s3cret-value",
    "DSHUB_PUBLIC_URL": "https://hub.example.edu",
}


def build(env, tmp_path):
    """The real authenticator object JupyterHub would make from these settings."""
    auth = authenticator_config(s.load(env), tmp_path)
    return auth, auth.cls(config=Config({auth.cls.__name__: auth.traits}))


def test_local_is_the_default_and_every_admin_gets_an_initial_password_of_their_own(tmp_path):
    auth, authenticator = build({"DSHUB_ADMIN_USERS": "admin,grace"}, tmp_path)
    assert auth.cls is BuiltinUserListAuthenticator
    assert authenticator.admin_users == {"admin", "grace"}
    # JupyterHub calls add_user for each admin it creates at first start.
    for name in ("admin", "grace"):
        asyncio.run(authenticator.add_user(orm.User(name=name)))
    folder = tmp_path / "secrets" / "initial-passwords"
    passwords = {name: (folder / name).read_text().strip() for name in ("admin", "grace")}
    assert len(set(passwords.values())) == 2 and all(len(p) == 16 for p in passwords.values())
    assert {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {"0o600"}


def test_generic_oidc_with_discovery_and_backchannel(tmp_path):
    env = {
        **OAUTH,
        "DSHUB_AUTHENTICATOR": "generic",
        "DSHUB_OIDC_ISSUER": "http://127.0.0.1:9400",
        "DSHUB_OIDC_BACKCHANNEL_URL": "http://oidc:9400",
        "DSHUB_OAUTH_ALLOWED_GROUPS": "students, g1",
        "DSHUB_OAUTH_ADMIN_GROUPS": "staff",
        "DSHUB_OAUTH_LOGOUT_URL": "idp",
    }
    auth, a = build(env, tmp_path)
    assert auth.cls is oauth.DshubOIDCAuthenticator
    assert a.client_id == "dshub-client" and a.client_secret == "s3cret-value"
    assert a.oauth_callback_url == "https://hub.example.edu/hub/oauth_callback"
    assert a.allowed_groups == {"students", "g1"} and a.admin_groups == {"staff"}
    assert a.manage_groups and a.enable_auth_state and not a.allow_all
    assert a.auth_state_groups_key == "oauth_user.groups"
    assert a.scope == ["openid", "profile", "email"]
    assert a.login_service == "your organisation"
    assert a.logout_at_idp
    assert a.identities_path == str(tmp_path / "identities.sqlite")
    assert a.instructors_group == "instructors" and a.instructors_from_idp is False
    assert a._to_backchannel("http://127.0.0.1:9400/oauth2/token") == "http://oidc:9400/oauth2/token"
    assert a._to_browser("http://oidc:9400/oauth2/authorize") == "http://127.0.0.1:9400/oauth2/authorize"


def test_generic_with_explicit_endpoints(tmp_path):
    env = {
        **OAUTH,
        "DSHUB_AUTHENTICATOR": "generic",
        "DSHUB_OAUTH_AUTHORIZE_URL": "https://idp.example.edu/authorize",
        "DSHUB_OAUTH_TOKEN_URL": "https://idp.example.edu/token",
        "DSHUB_OAUTH_USERDATA_URL": "https://idp.example.edu/userinfo",
        "DSHUB_OAUTH_ALLOW_ALL": "true",
    }
    _, a = build(env, tmp_path)
    assert a.authorize_url == "https://idp.example.edu/authorize"
    assert a.allow_all is True
    asyncio.run(a.discover())  # no issuer: nothing to look up, endpoints stay
    assert a.token_url == "https://idp.example.edu/token"


def test_github(tmp_path):
    env = {
        **OAUTH,
        "DSHUB_AUTHENTICATOR": "github",
        "DSHUB_OAUTH_ALLOWED_GROUPS": "my-lab,my-uni:ta-team",
        "DSHUB_OAUTH_ADMIN_GROUPS": "my-uni:instructors",
        "DSHUB_ADMIN_USERS": "prof-x",
    }
    auth, a = build(env, tmp_path)
    assert auth.cls is oauth.DshubGitHubOAuthenticator
    assert a.allowed_organizations == {"my-lab", "my-uni:ta-team"}
    assert a.admin_users == {"prof-x"}
    assert a.populate_teams_in_auth_state and "read:org" in a.scope
    teams = {"teams": [{"organization": {"login": "my-uni"}, "slug": "instructors"}]}
    assert github_teams(teams) == ["my-uni:instructors"]


def test_gitlab_self_hosted(tmp_path):
    env = {
        **OAUTH,
        "DSHUB_AUTHENTICATOR": "gitlab",
        "DSHUB_GITLAB_URL": "https://gitlab.uni.example",
        "DSHUB_OAUTH_ALLOWED_GROUPS": "physics/lab",
    }
    auth, a = build(env, tmp_path)
    assert auth.cls is oauth.DshubGitLabOAuthenticator
    assert a.gitlab_url == "https://gitlab.uni.example"
    assert a.authorize_url == "https://gitlab.uni.example/oauth/authorize"
    assert a.allowed_gitlab_groups == {"physics/lab"}


def test_google_hosted_domain_and_verified_email(tmp_path):
    env = {**OAUTH, "DSHUB_AUTHENTICATOR": "google", "DSHUB_GOOGLE_HOSTED_DOMAINS": "uni.example"}
    auth, a = build(env, tmp_path)
    assert auth.cls is oauth.DshubGoogleOAuthenticator
    assert a.hosted_domain == ["uni.example"]
    assert a.username_claim({"email": "ada@uni.example", "email_verified": True}) == "ada@uni.example"
    with pytest.raises(web.HTTPError, match="not verified"):
        a.username_claim({"email": "ada@uni.example", "email_verified": False})


def test_azuread(tmp_path):
    env = {
        **OAUTH,
        "DSHUB_AUTHENTICATOR": "azuread",
        "DSHUB_AZUREAD_TENANT_ID": "contoso.onmicrosoft.com",
        "DSHUB_OAUTH_ALLOWED_GROUPS": "00000000-0000-0000-0000-000000000001",
    }
    auth, a = build(env, tmp_path)
    assert auth.cls is oauth.DshubAzureAdOAuthenticator
    assert a.tenant_id == "contoso.onmicrosoft.com"
    assert "contoso.onmicrosoft.com" in a.authorize_url
    assert a.auth_state_groups_key == "user.groups"


def test_pass_token_is_opt_in(tmp_path):
    env = {**OAUTH, "DSHUB_AUTHENTICATOR": "github", "DSHUB_OAUTH_ALLOW_ALL": "true"}
    assert authenticator_config(s.load(env), tmp_path).spawner_traits == {}
    env["DSHUB_OAUTH_PASS_TOKEN"] = "true"
    assert authenticator_config(s.load(env), tmp_path).spawner_traits == {
        "auth_state_hook": oauth.pass_access_token
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DSHUB_AUTHENTICATOR": "github"}, "DSHUB_OAUTH_CLIENT_ID is required"),
        ({**OAUTH, "DSHUB_AUTHENTICATOR": "generic"}, "needs DSHUB_OIDC_ISSUER"),
        (
            {
                **OAUTH,
                "DSHUB_AUTHENTICATOR": "generic",
                "DSHUB_OIDC_ISSUER": "https://idp.example",
                "DSHUB_OAUTH_TOKEN_URL": "https://idp.example/token",
            },
            "either DSHUB_OIDC_ISSUER or",
        ),
        (
            {**OAUTH, "DSHUB_AUTHENTICATOR": "generic", "DSHUB_OIDC_ISSUER": "https://idp/"},
            "must not end with '/'",
        ),
        ({**OAUTH, "DSHUB_AUTHENTICATOR": "azuread"}, "DSHUB_AZUREAD_TENANT_ID is required"),
        (
            {**OAUTH, "DSHUB_AUTHENTICATOR": "google", "DSHUB_OAUTH_ALLOWED_GROUPS": "g"},
            "not supported with google",
        ),
        (
            {**OAUTH, "DSHUB_AUTHENTICATOR": "github", "DSHUB_OAUTH_LOGOUT_URL": "idp"},
            "needs DSHUB_AUTHENTICATOR=generic",
        ),
        ({**OAUTH, "DSHUB_AUTHENTICATOR": "okta"}, "not one of"),
        (
            {**OAUTH, "DSHUB_AUTHENTICATOR": "github", "DSHUB_OAUTH_CALLBACK_URL": "hub/cb"},
            "not an http(s) URL",
        ),
        ({"DSHUB_OAUTH_CLIENT_ID": "x"}, "only apply to OAuth sign-in"),
        ({"DSHUB_OAUTH_INSTRUCTORS_FROM_IDP": "true"}, "only apply to OAuth sign-in"),
        (
            {**OAUTH, "DSHUB_AUTHENTICATOR": "generic", "DSHUB_OIDC_ISSUER": "http://sso.uni.example"},
            "DSHUB_OIDC_ISSUER='http://sso.uni.example' uses plain http",
        ),
        (
            {
                **OAUTH,
                "DSHUB_AUTHENTICATOR": "azuread",
                "DSHUB_AZUREAD_TENANT_ID": "contoso.onmicrosoft.com",
                "DSHUB_OAUTH_ADMIN_GROUPS": "instructors",
            },
            "DSHUB_OAUTH_ADMIN_GROUPS names 'instructors' (DSHUB_INSTRUCTORS_GROUP), a group that is ignored",
        ),
        (
            {
                **OAUTH,
                "DSHUB_AUTHENTICATOR": "generic",
                "DSHUB_OIDC_ISSUER": "https://idp.example",
                "DSHUB_INSTRUCTORS_GROUP": "teachers",
                "DSHUB_OAUTH_ALLOWED_GROUPS": "students,teachers",
            },
            "DSHUB_OAUTH_ALLOWED_GROUPS names 'teachers'",
        ),
        ({**OAUTH, "DSHUB_AUTHENTICATOR": "github", "DSHUB_OAUTH_CLIENT_SECRET": "short"}, "at least 8"),
    ],
)
def test_bad_oauth_settings(env, message):
    with pytest.raises(s.SettingsError) as info:
        s.load(env)
    assert message in str(info.value)
    assert "s3cret-value" not in str(info.value)


def test_instructors_group_in_admin_groups_when_taken_from_the_provider(tmp_path):
    env = {
        **OAUTH,
        "DSHUB_AUTHENTICATOR": "generic",
        "DSHUB_OIDC_ISSUER": "https://idp.example",
        "DSHUB_OAUTH_ADMIN_GROUPS": "instructors",
        "DSHUB_OAUTH_INSTRUCTORS_FROM_IDP": "true",
    }
    _, a = build(env, tmp_path)
    assert a.admin_groups == {"instructors"} and a.instructors_from_idp is True
    # GitHub's allowed organizations are checked at GitHub, not among the synced teams.
    env = {**OAUTH, "DSHUB_AUTHENTICATOR": "github", "DSHUB_OAUTH_ALLOWED_GROUPS": "instructors"}
    assert build(env, tmp_path)[1].allowed_organizations == {"instructors"}


def test_username_claim_must_be_present():
    with pytest.raises(web.HTTPError, match="sent no 'preferred_username'"):
        oauth.verified_claim("preferred_username")({"sub": "x"})


def test_initial_passwords_of_a_class_are_read_by_their_escaped_file_names(tmp_path):
    authenticator = build({"DSHUB_ADMIN_USERS": "admin"}, tmp_path)[1]
    for name in ("ana", "li.wei"):
        asyncio.run(authenticator.add_user(orm.User(name=name)))
    folder = tmp_path / "secrets" / "initial-passwords"
    found = unused_initial_passwords(folder, ["ana", "li.wei", "gone"])
    assert found["gone"] is None
    assert {len(found["ana"]), len(found["li.wei"])} == {16}
    assert found["ana"] != found["li.wei"]
