"""Profiles, engine-enforced limits, named servers and the usage report, on a real stack."""

import html
import json
import re
import shutil
import subprocess
import threading
import time

import pytest
import requests

from tests.support.hub import HubSession, KernelDied
from tests.support.stack import LAB_IMAGE, Stack, docker

LAB = LAB_IMAGE
PROFILES = f"""
limits: {{servers_per_user: 2}}
profiles:
  - name: small
    display_name: Small
    image: {LAB}
    cpu: 0.5
    memory: 256M
    pids: 128
    default: true
  - name: roomy
    image: {LAB}
    memory: 512M
  - name: staff-only
    image: {LAB}
    groups: [staff]
"""
# Writes every page, so the memory is really used (bytes(n) would stay untouched zero pages).
MEMORY_HOG = "hog = b'x' * (400 * 2**20)"
FORK_BOMB = """
import subprocess
children, error = [], None
try:
    for _ in range(1000):
        children.append(subprocess.Popen(["sleep", "120"]))
except OSError as e:
    error = e.errno
for child in children:
    child.kill()
    child.wait()
print(len(children), error)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # One start at a time: test_starts_wait_in_line_in_the_order_they_came sees the line.
    workdir = tmp_path_factory.mktemp("stack", numbered=True)
    with Stack(workdir, profiles=PROFILES, overrides={"DSHUB_START_CONCURRENCY": "1"}).running() as stack:
        yield stack


@pytest.fixture(scope="module")
def ada(stack):
    ada = stack.sign_up("ada", "ada-password")
    ada.start_server()
    yield ada
    ada.stop_server()


@pytest.fixture(scope="module")
def bob(stack):
    bob = stack.sign_up("bob", "bob-password")
    bob.start_server(options={"profile": "roomy"})
    yield bob
    bob.stop_server()


def container(stack, user, server=""):
    selectors = [f"dshub.project={stack.project}", f"dshub.user={user}", f"dshub.server={server}"]
    (found,) = docker("ps", "-q", *(a for s in selectors for a in ("--filter", f"label={s}"))).stdout.split()
    return json.loads(docker("inspect", found).stdout)[0]


def everyone_answers(stack, *people):
    assert requests.get(f"{stack.url}/hub/health", timeout=10).status_code == 200
    for person in people:
        assert person.server_get("api/status").status_code == 200, person.name


def test_the_profile_sets_the_engine_limits(stack, ada, bob):
    small = container(stack, "ada")
    assert small["HostConfig"]["Memory"] == 256 * 2**20
    assert small["HostConfig"]["CpuQuota"] == 50_000 and small["HostConfig"]["CpuPeriod"] == 100_000
    assert small["HostConfig"]["PidsLimit"] == 128
    assert small["Config"]["Labels"]["dshub.profile"] == "small"
    roomy = container(stack, "bob")
    assert roomy["HostConfig"]["Memory"] == 512 * 2**20
    assert roomy["Config"]["Labels"]["dshub.profile"] == "roomy"


def test_a_memory_hog_dies_inside_its_own_container_and_says_why(stack, ada, bob):
    before = container(stack, "ada")["Id"]
    kernel_id = ada.new_kernel()
    kernel = ada.kernel(kernel_id)
    try:
        with pytest.raises(KernelDied):
            kernel.execute(MEMORY_HOG, timeout=120)
    finally:
        kernel.close()
    # Only the kernel was killed: same container, the server, bob's server and the hub answer.
    assert container(stack, "ada")["Id"] == before
    everyone_answers(stack, ada, bob)
    # The restarted kernel tells ada why in her next cell.
    kernel = ada.kernel(kernel_id)
    try:
        told = kernel.execute("print('still here')", timeout=120)
    finally:
        kernel.close()
    assert "ran out of memory (256 MiB)" in told and "still here" in told
    # ... once: the cell after that is quiet again.
    assert ada.run("print('quiet')") == "quiet\n"


def test_a_fork_bomb_stops_at_the_process_limit(stack, ada, bob):
    made, errno = ada.run(FORK_BOMB).split()
    assert errno == "11", "fork failed with EAGAIN, the pids cgroup's answer"
    assert 0 < int(made) < 128
    everyone_answers(stack, ada, bob)
    assert ada.run("print(1 + 1)") == "2\n"


def test_a_profile_not_open_to_the_user_is_refused(stack, ada):
    refused = ada.api("POST", f"/users/{ada.name}/servers/extra", json={"profile": "staff-only"})
    assert refused.status_code == 403
    assert "'staff-only' is not one you may use; you may use: small, roomy" in refused.json()["message"]
    forged = ada.api("POST", f"/users/{ada.name}/servers/extra", json={"image": "debian:trixie-slim"})
    assert forged.status_code == 400 and "Unknown server option(s): image" in forged.json()["message"]
    assert not docker("ps", "-aq", "--filter", f"name={stack.project}-user-ada--extra").stdout.strip()


def test_a_forged_form_value_comes_back_as_a_clear_error(stack, ada):
    # "extra" again: every refused attempt names the same server, so the hub's count of
    # named servers stays at what the next test needs.
    form = ada.http.get(f"{stack.url}/hub/spawn/ada/extra", timeout=30)
    assert form.status_code == 200
    assert re.findall(r'name="profile"[^>]*value="([^"]+)"', form.text) == ["small", "roomy"]
    # The form's action carries the _xsrf token, as the browser posts it.
    action = html.unescape(re.search(r'id="spawn_form"\s+action="([^"]+)"', form.text)[1])
    posted = ada.http.post(f"{stack.url}{action}", files={"profile": (None, "staff-only")}, timeout=60)
    assert "Profile &#39;staff-only&#39; is not one you may use" in posted.text
    assert not docker("ps", "-aq", "--filter", f"name={stack.project}-user-ada--extra").stdout.strip()


def test_staff_get_their_profile_after_joining_the_group(stack):
    admin = HubSession(stack.url)
    admin.sign_in(stack.settings.admin_users[0], stack.admin_password())
    grace = stack.sign_up("grace", "grace-password")
    assert admin.api("POST", "/groups/staff").status_code in (201, 409)
    assert admin.api("POST", "/groups/staff/users", json={"users": ["grace"]}).status_code == 200
    grace.start_server(options={"profile": "staff-only"})
    try:
        assert container(stack, "grace")["Config"]["Labels"]["dshub.profile"] == "staff-only"
    finally:
        grace.stop_server()


def test_named_servers_run_side_by_side_up_to_the_limit(stack, ada):
    requested = time.monotonic()
    # The start request waits while the spawn is quick; read the progress meanwhile, as the
    # hub's spawn-pending page does (the stream replays every message of the spawn so far).
    started: list[requests.Response] = []
    poster = threading.Thread(
        target=lambda: started.append(
            ada.api("POST", f"/users/{ada.name}/servers/second", json={"profile": "roomy"})
        )
    )
    poster.start()
    progress: list[str] = []
    while not progress and poster.is_alive():
        progress = [m for m in ada.progress_of("second") if not m.startswith("Server ready")]
    poster.join()
    assert started[0].status_code in (201, 202), started[0].text
    ada.wait_ready("second", requested)
    try:
        assert any(m.startswith("Preparing your folders (profile roomy") for m in progress), progress
        assert any(m.startswith("Starting your container from dshub/lab") for m in progress), progress
        assert "Container started; waiting for your server to answer" in progress
        default, second = container(stack, "ada"), container(stack, "ada", "second")
        assert default["Name"] == f"/{stack.project}-user-ada"
        assert second["Name"] == f"/{stack.project}-user-ada--second"
        assert ada.server_get("api/status").status_code == 200
        assert ada.server_get("api/status", server="second").status_code == 200
        assert ada.run("import os; print(os.environ['MEM_LIMIT'])", server="second") == f"{512 * 2**20}\n"
        third = ada.api("POST", f"/users/{ada.name}/servers/extra", json={})
        assert third.status_code == 403, third.text
        assert "at most 2 server(s) at once" in third.json()["message"]
        usage = subprocess.run(
            ["docker", "exec", stack.containers("hub")[0], "python3", "-m", "spawner.cli.usage"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = {tuple(line.split()[:3]) for line in usage.splitlines()[1:-1]}
        assert {("ada", "(default)", "small"), ("ada", "second", "roomy")} <= rows, usage
        assert re.search(r"ada\s+second\s+roomy\s+\d+% of 1\s+\S+ / 512M", usage), usage
    finally:
        ada.stop_server("second")


def test_starts_wait_in_line_in_the_order_they_came(stack):
    people = [stack.sign_up(f"line{i}", "line-password") for i in range(3)]
    requested = time.monotonic()
    messages: dict[str, list[str]] = {}

    def start(person: HubSession) -> None:
        # The request waits while the spawn is quick: the progress is read beside it, as
        # the spawn-pending page does (the stream replays the spawn's messages so far).
        poster = threading.Thread(target=person.api, args=("POST", f"/users/{person.name}/server"))
        poster.start()
        messages[person.name] = []
        while not messages[person.name] and poster.is_alive():
            messages[person.name] = person.progress_of()
        poster.join()

    threads = []
    for person in people:
        threads.append(threading.Thread(target=start, args=(person,)))
        threads[-1].start()
        time.sleep(0.3)  # each asks after the one before
    ready = {person.name: person.wait_ready("", requested) for person in people}
    for thread in threads:
        thread.join()
    try:
        assert sorted(ready, key=ready.__getitem__) == ["line0", "line1", "line2"], ready
        assert not any(m.startswith("Waiting for your turn") for m in messages["line0"]), messages
        waited = [m for m in messages["line2"] if m.startswith("Waiting for your turn")]
        assert waited and waited[0].startswith("Waiting for your turn: the hub starts 1 at a time;"), messages
        assert waited[-1].endswith("yours is next"), messages
    finally:
        for person in people:
            person.stop_server()


@pytest.mark.skipif(
    not shutil.which("nvidia-smi"),
    reason="no NVIDIA GPU and driver on this machine: the device path (engine device requests "
    "with distinct ids) runs only on a GPU host; the assignment logic is covered by tests/unit/test_gpus.py",
)
def test_a_gpu_profile_gets_its_own_device(tmp_path):
    gpu_stack = Stack(
        tmp_path,
        profiles=f'gpus: {{devices: ["0"]}}\nprofiles:\n  - {{name: gpu, image: {LAB}, gpus: 1}}\n',
    )
    with gpu_stack.running():
        ada = gpu_stack.sign_up("ada", "ada-password")
        ada.start_server()
        listed = ada.run(
            "import subprocess\n"
            "print(subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True).stdout)"
        )
        assert "GPU 0" in listed
        bob = gpu_stack.sign_up("bob", "bob-password")
        refused = bob.api("POST", "/users/bob/server", json={})
        assert refused.status_code == 409 and "No GPU is free" in refused.json()["message"]
