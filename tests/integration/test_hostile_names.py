"""Hostile usernames through every door of the real stack: admin API, roster, sign-in.

Each name of tests/support/hostile.py is refused with the rule named, or is one
plain user. Afterwards the hub still answers its own pages, Traefik's rules
hold only the routes expected, every pool folder is a real folder inside the
pool with a uid of its own. A user made before the rule existed is reported at
hub start and gets no server and no route; a hostile route planted in the rules
file is removed at start. Then a flood of failed sign-ins meets the edge's rate
limit and the hub's throttle (its cost to the hub's API: `python -m bench signin`).
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests

from spawner.hub.proxy import SIGN_IN_BODY_MAX
from spawner.pool.datapool import escape_name
from tests.support.hostile import REFUSED, SAME_AS
from tests.support.hub import HubSession, SignInRefused, login_xsrf
from tests.support.stack import LAB_IMAGE, Stack, docker

RULES_FILE = "/srv/dshub/proxy-rules/rules.toml"
# Traefik's routes as the hub wrote them: the rule of each router.
READ_RULES = f"""
import json, tomllib
rules = tomllib.load(open({RULES_FILE!r}, "rb"))
print(json.dumps(sorted(r["rule"] for r in rules.get("http", {{}}).get("routers", {{}}).values())))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    lab = Stack(
        tmp_path_factory.mktemp("hostile-stack", numbered=True),
        overrides={"DSHUB_USER_IMAGE": LAB_IMAGE},
    )
    with lab.running() as running:
        yield running


@pytest.fixture(scope="module")
def admin(stack):
    session = HubSession(stack.url)
    session.sign_in(stack.settings.admin_users[0], stack.admin_password())
    return session


def user_names(stack) -> set[str]:
    return {u["name"] for u in stack.service_api("GET", "/users").json()}


def test_admin_api_refuses_each_hostile_name_with_the_rule(stack, admin):
    before = user_names(stack)
    for name in REFUSED:
        resp = admin.api("POST", "/users", json={"usernames": [name]})
        assert resp.status_code == 400, (name, resp.text)
        assert "The rule: a username is 1 to 64 characters" in resp.json()["message"], name
        quoted = quote(name, safe="")
        if quoted not in ("", ".", ".."):  # not a user path at all
            single = admin.api("POST", f"/users/{quoted}")
            assert single.status_code in (400, 404), (name, single.status_code, single.text)
        renamed = admin.api("PATCH", f"/users/{stack.settings.admin_users[0]}", json={"name": name})
        assert renamed.status_code == 400, (name, renamed.text)
    assert user_names(stack) == before
    # The sign-in form: JupyterHub logs the name typed there as it came.
    with pytest.raises(SignInRefused):
        HubSession(stack.url).sign_in("ada\nINFO forged log line", "a password")
    logs = stack.compose("logs", "--no-color", "hub").stdout
    assert "Refused username(s) in /hub/api/users" in logs
    assert "ada\\nINFO forged log line" in logs
    assert not re.search(r"\|\s*INFO forged log line", logs), "a name forged a log line"


def test_spellings_of_one_name_are_one_user(stack, admin):
    for spelling, name in SAME_AS.items():
        resp = admin.api("POST", "/users", json={"usernames": [spelling]})
        assert resp.status_code in (201, 409), (spelling, resp.text)
        if resp.status_code == 201:
            assert [u["name"] for u in resp.json()] == [name]
    both = admin.api("POST", "/users", json={"usernames": ["zoe", "\uff3a\uff2f\uff25"]})
    assert both.status_code == 400 and "both are the user zoe" in both.json()["message"]
    assert user_names(stack) == {stack.settings.admin_users[0], *SAME_AS.values()}


def test_roster_reports_each_hostile_row_and_applies_nothing(stack):
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["username", "groups", "role"])
    rows = [name for name in REFUSED if "\x00" not in name]  # a CSV file cannot hold NUL
    for name in rows:
        writer.writerow([name, "g1", "student"])
    writer.writerow(["newcomer", "g1", "student"])
    before = user_names(stack)
    result = stack.hub_exec("python3", "-m", "spawner.cli.roster", "import", "-", stdin=text.getvalue())
    assert result.returncode == 1, result.stdout
    # A field with a line break spans two lines of the file; csv counts the row's first.
    reported = re.findall(r"^  line (\d+): bad username", result.stderr, re.M)
    assert len(reported) == len(rows), result.stderr
    assert "1 to 64 characters" in result.stderr
    assert user_names(stack) == before


def test_hub_edge_and_pool_hold_after_the_suite(stack, admin):
    for name in ("ada", "ada-2e"):
        person = stack.first_sign_in(name, f"{name}-password")
        person.start_server()
    login = requests.get(f"{stack.url}/hub/login", timeout=30)
    assert login.status_code == 200 and 'id="login_submit"' in login.text
    assert "version" in requests.get(f"{stack.url}/hub/api", timeout=30).json()
    rules = json.loads(stack.hub_exec("python3", "-c", READ_RULES).stdout)
    assert rules == [
        "( PathPrefix(`/user/ada-2e/`) || Path(`/user/ada-2e`) )",
        "( PathPrefix(`/user/ada/`) || Path(`/user/ada`) )",
        "Host(`proxy-api`) && PathPrefix(`/api`)",  # Traefik's own API, for the hub only
        "PathPrefix(`/`)",
        "PathPrefix(`/hub/login`)",  # the sign-in page's rate limit
    ]
    users = stack.pool / "users"
    entries = sorted(users.iterdir())
    assert [e.name for e in entries] == sorted(escape_name(n) for n in ("ada", "ada-2e"))
    uids = []
    for entry in entries:
        st = os.lstat(entry)
        assert stat.S_ISDIR(st.st_mode) and entry.resolve().parent == users.resolve()
        uids.append(st.st_uid)
    assert len(set(uids)) == len(uids)


LEGACY = "x`) || PathPrefix(`/"
# A user made before the username rule existed, straight in the hub's database.
ADD_LEGACY = f"""
from jupyterhub import orm
db = orm.new_session_factory("sqlite:////srv/dshub/data/jupyterhub.sqlite")()
db.add(orm.User(name={LEGACY!r}))
db.commit()
"""
# A hostile route written as jupyterhub-traefik-proxy itself would (bypassing dshub's checks).
PLANT_ROUTE = f"""
import asyncio
from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
p = TraefikFileProviderProxy(dynamic_config_file={RULES_FILE!r}, should_start=False,
                             traefik_api_password="unused", traefik_entrypoint="http")
spec = "/user/" + {quote(LEGACY, safe="")!r} + "/"
route = p._dynamic_config_for_route(spec, "http://hub:8081", {{"user": {LEGACY!r}}})
asyncio.run(p._apply_dynamic_config(*route))
"""


def test_the_home_pages_tool_link_of_a_name_with_at_and_dots_starts_that_users_own_server(stack):
    name = "ada.b@uni.example"  # '@' and '.': what the rule allows beyond letters and digits
    person = stack.sign_up(name, "ada-b-password")
    home = person.http.get(f"{stack.url}/hub/home", timeout=30)
    assert home.status_code == 200
    (href,) = re.findall(r'id="open-lab"\s+href="([^"]+)"', home.text)
    link = urlsplit(html.unescape(href))
    assert link.path == f"/hub/spawn/{name}"
    assert parse_qs(link.query) == {"next": [f"/user/{quote(name, safe='@')}/lab"]}
    started = time.monotonic()
    assert person.http.get(f"{stack.url}{link.path}?{link.query}", timeout=60).status_code == 200
    try:
        person.wait_ready("", started)
        assert person.server_get("api/status").status_code == 200
    finally:
        person.stop_server()


def test_legacy_user_and_planted_route_are_reported_and_unrouted_at_start(stack, admin):
    assert stack.hub_exec("python3", "-c", ADD_LEGACY).returncode == 0
    planted = stack.hub_exec("python3", "-c", PLANT_ROUTE)
    assert planted.returncode == 0, planted.stderr
    rules = json.loads(stack.hub_exec("python3", "-c", READ_RULES).stdout)
    assert [r for r in rules if "/user/x`) || PathPrefix(`/" in r], rules
    stack.compose("restart", "hub")
    stack.wait_healthy()
    logs = stack.compose("logs", "--no-color", "hub").stdout
    assert re.search(r"the user 'x`\) \|\| PathPrefix\(`/' breaks the username rule", logs), logs[-3000:]
    assert "Removing a route from Traefik's rules" in logs
    rules = json.loads(stack.hub_exec("python3", "-c", READ_RULES).stdout)
    assert not [r for r in rules if "/user/x" in r]
    login = requests.get(f"{stack.url}/hub/login", timeout=30)
    assert login.status_code == 200 and 'id="login_submit"' in login.text
    start = stack.service_api("POST", f"/users/{quote(LEGACY, safe='')}/server")
    assert start.status_code >= 400
    with pytest.raises(SignInRefused):
        HubSession(stack.url).sign_in(LEGACY, "anything at all")


# From inside a user container, straight to the hub's port, each try claiming
# another browser address in X-Forwarded-For (a header only: nothing is sent there).
DIRECT_GUESSES = r"""
import json, re, urllib.error, urllib.parse, urllib.request
LOGIN = "http://hub:8081/hub/login"
throttled = []
for i in range(25):
    claimed = {"X-Forwarded-For": f"192.0.2.{i + 1}"}
    page = urllib.request.urlopen(urllib.request.Request(LOGIN, headers=claimed), timeout=30)
    cookie = page.headers["Set-Cookie"].split(";", 1)[0]  # _xsrf, bound to the claimed address
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.read().decode())[1]
    form = urllib.parse.urlencode({"username": f"nobody{i}", "password": "x", "_xsrf": xsrf}).encode()
    try:
        urllib.request.urlopen(urllib.request.Request(LOGIN, form, {**claimed, "Cookie": cookie}), timeout=30)
    except urllib.error.HTTPError as refused:
        throttled.append("Too many failed sign-ins" in refused.read().decode())
print(json.dumps(throttled))
"""


def test_a_sign_in_form_bigger_than_one_could_be_is_refused_at_the_edge(stack):
    admin = stack.settings.admin_users[0]

    def post(size: int, chunked: bool = False) -> requests.Response:
        """The admin's sign-in form, padded to ``size`` bytes, from a browser of its own."""
        http = requests.Session()
        page = http.get(f"{stack.url}/hub/login", timeout=30)
        xsrf = login_xsrf(page.text)
        form = urlencode({"username": admin, "password": stack.admin_password(), "_xsrf": xsrf})
        body = f"{form}&padding={'x' * (size - len(form) - len('&padding='))}".encode()
        assert len(body) == size
        return http.post(
            f"{stack.url}/hub/login",
            data=iter([body]) if chunked else body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
            timeout=30,
        )

    # The hub's own limit is 100 MB: 413 for these is the edge's, whether the body's
    # length is told or it comes in chunks.
    assert post(SIGN_IN_BODY_MAX + 1).status_code == 413
    assert post(SIGN_IN_BODY_MAX + 1, chunked=True).status_code == 413
    # Up to the limit the form reaches the hub, and signs in.
    assert post(SIGN_IN_BODY_MAX).status_code == 302
    assert post(SIGN_IN_BODY_MAX, chunked=True).status_code == 302


def test_only_the_sign_in_page_takes_a_password_not_the_token_api(stack):
    admin = stack.settings.admin_users[0]
    # JupyterHub would hand a token for a password here, past the edge's limits on the sign-in page.
    password = {"auth": {"username": admin, "password": stack.admin_password()}}
    asked = requests.post(f"{stack.url}/hub/api/users/{admin}/tokens", json=password, timeout=30)
    assert asked.status_code == 403, asked.text
    HubSession(stack.url).sign_in(admin, stack.admin_password())


def test_a_user_container_cannot_choose_the_address_it_is_throttled_under(stack):
    (container,) = stack.user_containers("ada")
    out = docker("exec", "-i", container, "python3", "-", stdin=DIRECT_GUESSES)
    throttled = json.loads(out.stdout.strip().splitlines()[-1])
    assert throttled == [False] * 20 + [True] * 5


def test_the_edge_does_not_let_a_browser_choose_its_address(stack):
    # Traefik trusts no client's forwarded headers: it writes X-Forwarded-For itself.
    throttled = []
    for i in range(25):
        claimed = {"X-Forwarded-For": f"192.0.2.{i + 1}"}
        http = requests.Session()
        page = http.get(f"{stack.url}/hub/login", headers=claimed, timeout=30)
        xsrf = login_xsrf(page.text)
        form = {"username": f"nobody{i}", "password": "x", "_xsrf": xsrf}
        answer = http.post(f"{stack.url}/hub/login", data=form, headers=claimed, timeout=30)
        assert answer.status_code == 403, answer.status_code
        throttled.append("Too many failed sign-ins" in answer.text)
        time.sleep(0.15)  # stay under the edge's rate limit: this is about the hub's throttle
    # Had the claimed addresses been believed, each would have failed once and none
    # been throttled. Past the free failures (fewer after the module's earlier
    # tests) the hub makes each next try wait 1 s, 2 s, 4 s...: which tries fall
    # inside a wait depends on how long each took, so the proof is that some did.
    assert not throttled[0] and any(throttled), throttled


def test_a_flood_of_failed_sign_ins_is_throttled_at_the_edge_and_at_the_hub(stack):
    def wrong(i: int) -> str:
        try:
            HubSession(stack.url).sign_in("ada", f"guess number {i}")
        except SignInRefused as refused:
            said_by = (
                ("status 429", "edge: 429"),
                ("Too many failed", "hub: throttled"),
                ("busy", "hub: busy"),
            )
            for said, answer in said_by:
                if said in str(refused):
                    return answer
            return "hub: wrong"
        except requests.HTTPError as refused:
            return f"edge: {refused.response.status_code}"
        return "signed in"

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(wrong, range(200)))
    counts = {answer: answers.count(answer) for answer in set(answers)}
    assert "signed in" not in counts
    # The edge answers the excess (429) before the hub sees it; the hub throttles what passes.
    assert counts.get("edge: 429", 0) + counts.get("hub: throttled", 0) >= 150, counts
    # Guesses the hub checked: the 5 free ones, and one each time a back-off ran out.
    assert counts.get("hub: wrong", 0) <= 10, counts
