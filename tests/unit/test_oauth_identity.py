"""Who signs in with OAuth: username rule, subject binding, instructors, the issuer.

The authenticators are the real ones JupyterHub would build from settings, signing
in through JupyterHub's own ``get_authenticated_user``. Only the network is a test
double: ``httpfetch`` answers as the provider would.
"""

import asyncio
import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from oauthenticator.oauth2 import _serialize_state
from tornado import web
from traitlets.config import Config

from spawner.auth import oauth
from spawner.auth.configure import authenticator_config
from spawner.config import settings as s
from spawner.core.names import USERNAME_RULE

IDP = "https://sso.uni.example/realms/teaching"
TOKEN_URL = f"{IDP}/token"
USERINFO_URL = f"{IDP}/userinfo"
CLIENT = {
    "DSHUB_OAUTH_CLIENT_ID": "dshub-client",
    "DSHUB_OAUTH_CLIENT_SECRET": "s3cret-value",
    "DSHUB_PUBLIC_URL": "https://hub.uni.example",
}
ENDPOINTS = {
    "DSHUB_OAUTH_AUTHORIZE_URL": f"{IDP}/authorize",
    "DSHUB_OAUTH_TOKEN_URL": TOKEN_URL,
    "DSHUB_OAUTH_USERDATA_URL": USERINFO_URL,
}
GENERIC = {
    **CLIENT,
    **ENDPOINTS,
    "DSHUB_AUTHENTICATOR": "generic",
    "DSHUB_OAUTH_ALLOWED_GROUPS": "students",
    "DSHUB_OAUTH_ADMIN_GROUPS": "staff",
}
ADA = {"sub": "sub-ada", "preferred_username": "ada", "groups": ["students"]}


def build(env, data_dir):
    auth = authenticator_config(s.load(env), data_dir)
    return auth.cls(config=Config({auth.cls.__name__: auth.traits}))


class Provider:
    """The provider's answers: a token for whoever signs in next, the claims of a token's account."""

    def __init__(self):
        self.signing_in = {}
        self.tokens = {}

    async def fetch(self, url, label="", headers=None, **kwargs):
        if url == TOKEN_URL:
            token = f"token-{len(self.tokens)}"
            self.tokens[token] = dict(self.signing_in)
            return {"access_token": token, "token_type": "Bearer"}
        assert url.startswith(USERINFO_URL), url
        return dict(self.tokens[headers["Authorization"].removeprefix("Bearer ")])


class CallbackHandler:
    """What OAuth's callback handler gives the authenticator: the code, the PKCE state, the hub's users."""

    def __init__(self, users=()):
        self.users = {user.name: user for user in users}

    def get_argument(self, name, default=None):
        return "the-code" if name == "code" else default

    def get_state_cookie(self):
        return _serialize_state({"state_id": "s", "code_verifier": "v"})

    def find_user(self, name):
        return self.users.get(name)


def hub_user(name, groups=(), auth_state=None):
    """A user as the hub has it: name, group memberships, stored auth_state."""

    async def get_auth_state():
        return auth_state

    return SimpleNamespace(
        name=name, groups=[SimpleNamespace(name=g) for g in groups], get_auth_state=get_auth_state
    )


class Hub:
    def __init__(self, tmp_path, **env):
        self.identities_path = tmp_path / "identities.sqlite"
        self.authenticator = build({**GENERIC, **env}, tmp_path)
        self.provider = Provider()
        self.authenticator.httpfetch = self.provider.fetch

    def sign_in(self, claims, users=()):
        """The auth model of a sign-in with these claims; None when the account is not allowed."""
        self.provider.signing_in = claims
        return asyncio.run(self.authenticator.get_authenticated_user(CallbackHandler(users), None))

    def refused(self, claims, users=()):
        with pytest.raises(web.HTTPError) as info:
            self.sign_in(claims, users)
        assert info.value.status_code == 403
        return info.value.log_message

    def owner(self, name):
        return oauth.Identities(self.identities_path).owner(name)


@pytest.fixture
def hub(tmp_path):
    return Hub(tmp_path)


def test_first_sign_in_binds_the_name_to_the_account(hub):
    assert hub.owner("ada") is None
    model = hub.sign_in(ADA)
    assert model["name"] == "ada" and model["groups"] == ["students"]
    assert hub.owner("ada") == "generic:sub-ada"
    assert stat.S_IMODE(os.stat(hub.identities_path).st_mode) == 0o600
    assert hub.sign_in(ADA)["name"] == "ada", "the same account signs in again"


def test_another_account_under_a_bound_name_is_refused(hub, caplog):
    hub.sign_in(ADA)
    mallory = {**ADA, "sub": "sub-mallory"}
    with caplog.at_level(logging.WARNING):
        message = hub.refused(mallory)
    assert message == (
        "The username ada already belongs to another account at the sign-in service (your "
        "organisation), so you cannot sign in as ada. If the name should be yours, an admin of "
        "this hub must unbind it first."
    )
    assert "Refused sign-in of 'ada': the name belongs to generic:sub-ada, not to generic:sub-mallory" in (
        caplog.text
    )
    assert hub.owner("ada") == "generic:sub-ada"


def test_another_spelling_is_the_same_name(hub):
    hub.sign_in(ADA)
    full_width = {**ADA, "sub": "sub-mallory", "preferred_username": "\uff21\uff24\uff21"}
    assert "already belongs to another account" in hub.refused(full_width)
    assert hub.sign_in({**ADA, "preferred_username": "\uff21\uff24\uff21"})["name"] == "ada"


def test_unbind_releases_the_name_for_the_next_account(hub, capsys):
    hub.sign_in(ADA)
    assert oauth.main(["unbind", "Ada", "--identities", str(hub.identities_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Unbound the username 'ada' from generic:sub-ada (bound since ")
    mallory = {**ADA, "sub": "sub-mallory"}
    assert hub.sign_in(mallory)["name"] == "ada"
    assert hub.owner("ada") == "generic:sub-mallory"


def test_unbind_of_a_free_name_exits_1(tmp_path, capsys):
    path = tmp_path / "identities.sqlite"
    assert oauth.main(["unbind", "bob", "--identities", str(path)]) == 1
    assert "the username 'bob' is not bound to any account: nothing to unbind" in capsys.readouterr().err
    assert not path.exists(), "a look-up does not create the hub's file"
    oauth.Identities(path).claim("ada", "generic:sub-ada")
    assert oauth.main(["unbind", "bob", "--identities", str(path)]) == 1


def test_an_account_that_may_not_enter_binds_nothing(hub):
    eve = {"sub": "sub-eve", "preferred_username": "eve", "groups": ["visitors"]}
    assert hub.sign_in(eve) is None
    assert hub.owner("eve") is None


def test_concurrent_first_sign_ins_bind_one_account(tmp_path):
    identities = oauth.Identities(tmp_path / "identities.sqlite")
    accounts = [f"generic:sub-{n}" for n in range(8)]
    with ThreadPoolExecutor(len(accounts)) as pool:
        results = list(pool.map(lambda account: identities.claim("ada", account), accounts))
    owners = {owner for owner, _ in results}
    assert len(owners) == 1 and [bound for _, bound in results].count(True) == 1
    assert identities.unbind("ada")[0] == owners.pop()
    assert identities.unbind("ada") is None


def test_a_username_breaking_the_rule_is_refused_with_the_rule(hub, caplog):
    with caplog.at_level(logging.WARNING):
        message = hub.refused({**ADA, "preferred_username": "Ada Lovelace"})
    assert message.startswith(
        "Your account at the sign-in service (your organisation) has a username this hub cannot use: "
        "'ada lovelace' is refused"
    )
    assert USERNAME_RULE in message
    assert "Refused sign-in through your organisation: 'ada lovelace' is refused" in caplog.text
    assert hub.owner("ada lovelace") is None


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_an_empty_username_is_refused_with_the_rule(hub, blank):
    assert USERNAME_RULE in hub.refused({**ADA, "preferred_username": blank})


def test_a_sign_in_without_a_subject_is_refused(hub):
    message = hub.refused({"preferred_username": "ada", "groups": ["students"]})
    assert message == (
        "The sign-in service (your organisation) did not say which account signed in (no sub in its "
        "answer), so this hub cannot keep the username ada to one account. Tell an admin of this hub."
    )
    assert hub.owner("ada") is None


PROVIDERS = {
    "github": {},
    "gitlab": {},
    "google": {},
    "azuread": {"DSHUB_AZUREAD_TENANT_ID": "contoso.onmicrosoft.com"},
    "generic": ENDPOINTS,
}


@pytest.mark.parametrize(
    ("kind", "user_info", "identity"),
    [
        ("github", {"id": 583231, "login": "octocat"}, "github:583231"),
        ("gitlab", {"id": 42, "username": "ada"}, "gitlab:42"),
        # OAuthenticator's Google userinfo (v1) says "id", Google's OpenID Connect "sub".
        ("google", {"id": "1089", "email": "a@uni.example"}, "google:1089"),
        ("google", {"sub": "1089", "email": "a@uni.example"}, "google:1089"),
        ("azuread", {"oid": "oid-1", "sub": "pairwise-1"}, "azuread:oid-1"),
        ("azuread", {"sub": "pairwise-1"}, "azuread:pairwise-1"),
        ("generic", {"sub": "248289761001"}, "generic:248289761001"),
        ("generic", {"sub": ""}, None),
        ("generic", {"sub": True}, None),
        ("generic", {"sub": {"id": 1}}, None),
        ("generic", {"sub": "has space"}, None),
        ("github", {"login": "octocat"}, None),
    ],
)
def test_each_providers_stable_subject(tmp_path, kind, user_info, identity):
    env = {**CLIENT, **PROVIDERS[kind], "DSHUB_AUTHENTICATOR": kind, "DSHUB_OAUTH_ALLOW_ALL": "true"}
    a = build(env, tmp_path)
    # The provider's own auth_state layout (its user_auth_state_key).
    auth_state = a.build_auth_state_dict({"access_token": "access"}, user_info)
    assert a._identity(auth_state) == identity


def test_refresh_needs_a_new_sign_in_when_the_name_moved(hub):
    model = hub.sign_in(ADA)
    ada = hub_user("ada", ["students"], model["auth_state"])
    refresh = hub.authenticator.refresh_user
    assert asyncio.run(refresh(ada))["auth_state"]["oauth_user"]["sub"] == "sub-ada"
    oauth.Identities(hub.identities_path).unbind("ada")
    assert asyncio.run(refresh(ada)) is False, "unbound: a new sign-in decides"
    hub.sign_in({**ADA, "sub": "sub-mallory"})
    assert asyncio.run(refresh(ada)) is False, "the old account's session ends"


def test_the_providers_instructors_group_is_ignored_by_default(hub, caplog):
    with caplog.at_level(logging.INFO):
        model = hub.sign_in({**ADA, "groups": ["students", "instructors"]})
    assert model["groups"] == ["students"]
    assert "Ignored the provider's group 'instructors' of generic:sub-ada" in caplog.text


def test_the_providers_instructors_group_counts_when_chosen(tmp_path):
    hub = Hub(tmp_path, DSHUB_OAUTH_INSTRUCTORS_FROM_IDP="true")
    assert hub.sign_in({**ADA, "groups": ["students", "instructors"]})["groups"] == [
        "instructors",
        "students",
    ]
    made_on_the_hub = hub_user("ada", ["instructors", "students"])
    assert hub.sign_in(ADA, [made_on_the_hub])["groups"] == ["students"], "the provider is the record"


def test_instructors_made_on_the_hub_stay_through_group_sync(hub):
    made_on_the_hub = hub_user("ada", ["instructors", "students"])
    model = hub.sign_in(ADA, [made_on_the_hub])
    assert model["groups"] == ["instructors", "students"]
    made_on_the_hub.get_auth_state = hub_user("ada", auth_state=model["auth_state"]).get_auth_state
    assert asyncio.run(hub.authenticator.refresh_user(made_on_the_hub))["groups"] == [
        "instructors",
        "students",
    ]
    assert hub.sign_in(ADA, [hub_user("ada", ["students"])])["groups"] == ["students"]


def test_instructors_from_github_teams_are_ignored_too(tmp_path):
    env = {
        **CLIENT,
        "DSHUB_AUTHENTICATOR": "github",
        "DSHUB_OAUTH_ALLOW_ALL": "true",
        "DSHUB_INSTRUCTORS_GROUP": "my-uni:teachers",
    }
    a = build(env, tmp_path)
    teams = [{"organization": {"login": "my-uni"}, "slug": slug} for slug in ("teachers", "ds-101")]
    assert asyncio.run(a.get_user_groups({"teams": teams})) == {"my-uni:ds-101"}


class DiscoveryDocument:
    def __init__(self, issuer):
        self.issuer = issuer
        self.urls = []

    async def fetch(self, url, label="", **kwargs):
        self.urls.append(url)
        base = self.issuer
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/oauth2/authorize",
            "token_endpoint": f"{base}/oauth2/token",
            "userinfo_endpoint": f"{base}/userinfo",
        }


def discovering(tmp_path, issuer, backchannel=""):
    env = {**CLIENT, "DSHUB_AUTHENTICATOR": "generic", "DSHUB_OAUTH_ALLOW_ALL": "true"}
    env["DSHUB_OIDC_ISSUER"] = issuer
    if backchannel:
        env["DSHUB_OIDC_BACKCHANNEL_URL"] = backchannel
    return build(env, tmp_path)


def test_discovery_refuses_another_issuer(tmp_path, caplog):
    a = discovering(tmp_path, IDP)
    a.httpfetch = DiscoveryDocument("https://sso.uni.example/realms/master").fetch
    with caplog.at_level(logging.ERROR), pytest.raises(web.HTTPError) as info:
        asyncio.run(a.discover())
    assert info.value.status_code == 503
    assert info.value.log_message == (
        "The sign-in service (your organisation) is not the one this hub is set up for (its issuer "
        "does not match), so signing in is off. Tell an admin of this hub."
    )
    assert "names the issuer 'https://sso.uni.example/realms/master'" in caplog.text
    assert a.token_url == "", "no endpoint of the wrong provider is used"


def test_discovery_accepts_the_configured_issuer(tmp_path):
    a = discovering(tmp_path, IDP)
    document = DiscoveryDocument(IDP)
    a.httpfetch = document.fetch
    asyncio.run(a.discover())
    assert document.urls == [f"{IDP}/.well-known/openid-configuration"]
    assert a.token_url == f"{IDP}/oauth2/token"


@pytest.mark.parametrize(
    ("issuer", "accepted"),
    [
        # The development provider names the URL it was reached by ...
        ("http://oidc:9400", True),
        # ... a provider with a fixed public name names that one.
        ("http://127.0.0.1:9400", True),
        ("http://oidc:9401", False),
        (None, False),
    ],
)
def test_discovery_over_the_back_channel(tmp_path, issuer, accepted):
    a = discovering(tmp_path, "http://127.0.0.1:9400", backchannel="http://oidc:9400")
    a.httpfetch = DiscoveryDocument(issuer).fetch
    if accepted:
        asyncio.run(a.discover())
        assert a.authorize_url == "http://127.0.0.1:9400/oauth2/authorize"
        assert a.token_url == "http://oidc:9400/oauth2/token"
    else:
        with pytest.raises(web.HTTPError, match="its issuer does not match"):
            asyncio.run(a.discover())


def test_login_page_says_which_problem_it_is(tmp_path):
    a = discovering(tmp_path, IDP)
    handler = SimpleNamespace(
        authenticator=a, log=logging.getLogger("test"), request=SimpleNamespace(path="/")
    )
    login = oauth.ReachabilityCheckedLoginHandler.get

    a.httpfetch = DiscoveryDocument("https://elsewhere.example").fetch
    with pytest.raises(web.HTTPError, match="its issuer does not match") as info:
        asyncio.run(login(handler))
    assert info.value.status_code == 503

    async def down(url, **kwargs):
        raise ConnectionRefusedError(url)

    a.httpfetch = down
    with pytest.raises(web.HTTPError, match="cannot be reached") as info:
        asyncio.run(login(handler))
    assert info.value.status_code == 503
