"""A class's first day: admin signs in, adds a student, both work in their own containers."""

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from spawner.core.constants import VERSION
from spawner.hub.edge import PROXY_IMAGE
from tests.support.hub import HubSession, SignInRefused, sign_in_patiently
from tests.support.stack import docker

STUDENT = "bob"
STUDENT_PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def admin(stack):
    session = HubSession(stack.url)
    session.sign_in(stack.settings.admin_users[0], stack.admin_password())
    return session


@pytest.fixture(scope="module")
def student(stack, admin):
    # Approval is the admin adding the account; the student's first sign-in, with the
    # one-time initial password the operator hands out, chooses their own.
    resp = admin.api("POST", f"/users/{STUDENT}")
    assert resp.status_code == 201, resp.text
    session = HubSession(stack.url)
    session.sign_in(STUDENT, stack.initial_password(STUDENT), new_password=STUDENT_PASSWORD)
    return session


@pytest.fixture(scope="module")
def running(admin, student):
    for person in (admin, student):
        person.start_server()
    yield {"admin": admin, "student": student}
    for person in (admin, student):
        person.stop_server()


def test_nobody_can_claim_the_admin_account(stack):
    with pytest.raises(SignInRefused):
        HubSession(stack.url).sign_in(stack.settings.admin_users[0], "stranger-password")


def test_unknown_user_cannot_sign_in_before_approval(stack):
    with pytest.raises(SignInRefused):
        HubSession(stack.url).sign_in("mallory", "mallory-password")


def test_the_initial_password_works_once(stack, admin):
    assert admin.api("POST", "/users/cleo").status_code == 201
    initial = stack.initial_password("cleo")
    # Alone, the initial password does not sign in: it only serves to choose one's own.
    with pytest.raises(SignInRefused, match="This is your initial password"):
        HubSession(stack.url).sign_in("cleo", initial)
    with pytest.raises(SignInRefused, match="Invalid username or password"):
        HubSession(stack.url).sign_in("cleo", "a guess at it", new_password="cleo's own password")
    HubSession(stack.url).sign_in("cleo", initial, new_password="cleo's own password")
    with pytest.raises(SignInRefused):
        HubSession(stack.url).sign_in("cleo", initial, new_password="taking the account over")
    HubSession(stack.url).sign_in("cleo", "cleo's own password")
    assert stack.initial_password("cleo") == ""  # the operator's copy is gone once used


def test_a_class_behind_one_address_signs_in_at_the_same_moment(stack, admin):
    """Forty first sign-ins at once from one address (a classroom's NAT): none is taken for a guess.

    Told to wait (the edge's rate limit, the hub's hashing queue), a person tries again.
    """
    names = [f"class{i}" for i in range(40)]
    assert admin.api("POST", "/users", json={"usernames": names}).status_code == 201
    initial = stack.initial_passwords(names)
    with ThreadPoolExecutor(len(names)) as pool:
        signed_in = list(
            pool.map(
                lambda n: sign_in_patiently(stack.url, n, initial[n], new_password=f"{n}-password"), names
            )
        )
    assert [person.name for person, _ in signed_in] == names


def test_changing_a_password_asks_for_the_current_one(stack, student):
    page = student.http.get(f"{stack.url}/hub/auth/change-password", timeout=30)
    assert page.status_code == 200 and "Current password" in page.text
    xsrf = student.http.cookies.get("_xsrf", path="/hub/")

    def change(current: str, new: str) -> requests.Response:
        form = {"current_password": current, "new_password": new, "new_password_again": new, "_xsrf": xsrf}
        return student.http.post(f"{stack.url}/hub/auth/change-password", data=form, timeout=60)

    wrong = change("not the password", "stolen password")
    assert wrong.status_code == 400 and "The current password is wrong" in wrong.text
    with pytest.raises(SignInRefused):
        HubSession(stack.url).sign_in(STUDENT, "stolen password")
    assert change(STUDENT_PASSWORD, "a changed password").status_code == 200
    HubSession(stack.url).sign_in(STUDENT, "a changed password")
    assert change("a changed password", STUDENT_PASSWORD).status_code == 200


def test_lab_through_the_proxy(running):
    for person in running.values():
        page = person.http.get(f"{person.base_url}/user/{person.name}/lab", timeout=60)
        assert page.status_code == 200
        assert page.url.endswith(f"/user/{person.name}/lab")
        assert "JupyterLab" in page.text


def test_kernel_runs_and_files_land_in_the_pool_as_the_user(stack, running):
    uids = {}
    for person in running.values():
        kernel = person.kernel(person.new_kernel())
        try:
            assert kernel.execute("1+1") == "2"
            uid = int(kernel.execute("import os; print(os.getuid(), end='')"))
            # An arbitrary uid is a complete user: a passwd entry and a writable home.
            assert kernel.execute("import pwd; pwd.getpwuid(os.getuid()).pw_name") == "'jovyan'"
            assert kernel.execute("os.path.expanduser('~')") == "'/home/jovyan'"
            kernel.execute("open('hello.txt', 'w').write('hi from ' + os.environ['JUPYTERHUB_USER'])")
        finally:
            kernel.close()
        on_host = stack.pool / "users" / person.name / "hello.txt"
        assert on_host.read_text() == f"hi from {person.name}"
        assert os.stat(on_host).st_uid == uid
        assert os.stat(on_host.parent).st_mode & 0o777 == 0o700
        uids[person.name] = uid
    assert len(set(uids.values())) == 2, uids
    assert all(stack.settings.uid_min <= uid <= stack.settings.uid_max for uid in uids.values())


def test_a_user_cannot_enter_another_users_server(running):
    admin, student = running["admin"], running["student"]
    resp = student.http.get(f"{student.base_url}/user/{admin.name}/lab", timeout=60)
    assert resp.status_code == 403
    resp = requests.get(
        f"{student.base_url}/user/{admin.name}/api/contents",
        headers={"Authorization": f"token {student.token}"},
        timeout=30,
    )
    assert resp.status_code == 403


def test_user_container_is_hardened(stack, running):
    ids = stack.containers("user-server")
    assert len(ids) == 2
    for cid in ids:
        (spec,) = json.loads(docker("inspect", cid).stdout)
        host = spec["HostConfig"]
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert host["PidsLimit"] == stack.settings.pids_limit
        assert host["Memory"] == stack.settings.mem_limit
        assert host["NanoCpus"] or host["CpuQuota"]
        mounts = [m["Source"] for m in spec["Mounts"]]
        user = spec["Config"]["Labels"]["dshub.user"]
        # Their own folder and the course's shared folder (no groups yet); nothing else.
        assert sorted(mounts) == [str(stack.pool / "shared"), str(stack.pool / "users" / user)]
        assert not any("docker.sock" in m for m in mounts)
        status = docker("exec", cid, "cat", "/proc/1/status").stdout
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Uid"].split()[0] != "0"
        assert int(fields["CapEff"], 16) == 0
        assert int(fields["CapBnd"], 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"


def test_user_servers_survive_a_hub_restart(stack, running):
    admin = running["admin"]
    kernel_id = admin.new_kernel()
    kernel = admin.kernel(kernel_id)
    kernel.execute("survivor = 41")

    stack.compose("stop", "hub")
    try:
        # Hub down: Traefik keeps routing, the open kernel keeps computing.
        for person in running.values():
            assert person.server_get("api/status").status_code == 200
        assert kernel.execute("survivor + 1") == "42"
    finally:
        stack.compose("start", "hub")
    stack.wait_healthy()
    kernel.close()

    time.sleep(1)
    for person in running.values():
        assert person.api("GET", f"/users/{person.name}").json()["servers"][""]["ready"]
        assert person.server_get("api/status").status_code == 200
    again = admin.kernel(kernel_id)
    try:
        assert again.execute("survivor + 1") == "42"
    finally:
        again.close()


def test_traefik_api_is_private_and_password_protected(stack):
    ports = docker("port", stack.containers("proxy")[0]).stdout.split("\n")
    # http and https only (with DSHUB_TLS=off nothing listens behind the second).
    assert sorted(p for p in ports if p) == [
        f"8000/tcp -> 127.0.0.1:{stack.port}",
        f"8443/tcp -> 127.0.0.1:{stack.https_port}",
    ]
    # From the hub, over the project's network: the API answers only with the password.
    probe = (
        "import urllib.request, urllib.error\n"
        "try:\n"
        "    urllib.request.urlopen('http://proxy-api:8099/api/overview', timeout=5)\n"
        "    print('open')\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
    )
    out = stack.compose("exec", "-T", "hub", "python3", "-c", probe).stdout.strip()
    assert out == "401"


def test_secrets_are_private_and_never_logged(stack, admin):
    secrets_dir = "/srv/dshub/data/secrets"
    files = f"find {secrets_dir} -type f"
    listing = stack.compose(
        "exec", "-T", "hub", "sh", "-c", f"{files} -exec stat -c '%a %U %n' {{}} +"
    ).stdout
    rows = [line.split() for line in listing.splitlines()]
    assert {row[2].rsplit("/", 1)[1] for row in rows} >= {
        "cookie-secret",
        "crypt-key",
        "proxy-api-password",
    }
    assert all(row[:2] == ["600", "root"] for row in rows), rows
    values = stack.compose("exec", "-T", "hub", "sh", "-c", f"{files} -exec cat {{}} +").stdout.split()
    logs = stack.compose("logs", "--no-color", "hub", "proxy").stdout
    assert logs and not [v for v in values if v in logs]
    images = [
        PROXY_IMAGE,
        *(f"dshub/{name}:{VERSION}" for name in ("hub", "lab", "datascience")),
    ]
    for image in images:
        history = docker("history", "--no-trunc", image).stdout
        assert not [v for v in values if v in history]
