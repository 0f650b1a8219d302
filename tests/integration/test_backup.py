"""`make backup` then `make restore` onto fresh volumes and an empty pool: nothing is lost.

The same steps as the Makefile's recipes, on a stack of the test: back up while
the hub runs, destroy the hub's volumes and the pool, restore, start. Users sign
in with the same passwords and find the same files, uids, groups and shares.
"""

import json
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from tests.support.hub import HubSession
from tests.support.stack import LAB_IMAGE, REPO, Stack

FIGURES = REPO / "build" / "figures"


@pytest.fixture
def stack(tmp_path):
    (tmp_path / "stack").mkdir()
    lab = Stack(tmp_path / "stack", overrides={"DSHUB_USER_IMAGE": LAB_IMAGE})
    with lab.running() as running:
        yield running


def back_up(stack, archive) -> float:
    """`make backup`: the archive from the running hub, written 0600; seconds it took."""
    (hub,) = stack.containers("hub")
    started = time.monotonic()
    old_umask = os.umask(0o077)
    try:
        with archive.open("wb") as out:
            subprocess.run(
                ["docker", "exec", hub, "python3", "-m", "spawner.cli.backup", "create"],
                stdout=out,
                check=True,
            )
    finally:
        os.umask(old_umask)
    return time.monotonic() - started


def restore(stack, archive) -> None:
    """`make restore`: fresh volumes, the archive unpacked by a one-off hub container, then up."""
    stack.compose("up", "--no-start")
    cmd, env = stack.compose_invocation(
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "--entrypoint",
        "python3",
        "hub",
        "-m",
        "spawner.cli.backup",
        "restore",
    )
    with archive.open("rb") as source:
        out = subprocess.run(cmd, stdin=source, capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert "restored the backup of" in out.stdout and "and the pool" in out.stdout
    stack.up()


def test_backup_and_restore_round_trip(stack, tmp_path):
    ada = stack.sign_up("ada", "ada's own password")
    bob = stack.sign_up("bob", "bob's own password")
    assert stack.service_api("POST", "/groups/g1").status_code == 201
    assert stack.service_api("POST", "/groups/g1/users", json={"users": ["ada", "bob"]}).status_code == 200
    for person in (ada, bob):
        person.start_server()
    ada.run("open('notes.txt', 'w').write('keep me'); open('groups/g1/plan.txt', 'w').write('ours')")
    assert ada.api("POST", "/shares/ada/", json={"user": "bob"}).status_code == 200
    for person in (ada, bob):
        person.stop_server()
    uids = {name: os.stat(stack.pool / "users" / name).st_uid for name in ("ada", "bob")}
    record = (stack.pool / "uids.record").read_text()

    archive = tmp_path / "backup.tar.gz"
    seconds = back_up(stack, archive)
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {
        "manifest.json",
        "hub/jupyterhub.sqlite",
        "hub/passwords.dbm",
        "hub/secrets/cookie-secret",
    } <= names
    assert "pool/users/ada/notes.txt" in names and "pool/uids.record" in names

    # A fresh machine: no hub volume, no pool.
    stack.compose("down", "-v")
    shutil.rmtree(stack.pool)
    restore(stack, archive)

    ada_again = HubSession(stack.url)
    ada_again.sign_in("ada", "ada's own password")
    HubSession(stack.url).sign_in("bob", "bob's own password")
    assert {name: os.stat(stack.pool / "users" / name).st_uid for name in ("ada", "bob")} == uids
    assert (stack.pool / "uids.record").read_text() == record
    assert sorted(ada_again.api("GET", "/users/ada").json()["groups"]) == ["g1"]
    shares = ada_again.api("GET", "/shares/ada").json()["items"]
    assert [share["user"]["name"] for share in shares] == ["bob"]
    # The old session's API token is still good: tokens and the cookie secret came back.
    assert ada.api("GET", "/user").json()["name"] == "ada"
    ada_again.start_server()
    try:
        assert ada_again.run("open('notes.txt').read()") == "'keep me'"
        assert ada_again.run("open('groups/g1/plan.txt').read()") == "'ours'"
        assert ada_again.run("import os; os.getuid()") == str(uids["ada"])
    finally:
        ada_again.stop_server()
    FIGURES.mkdir(parents=True, exist_ok=True)
    figures = {"backup_seconds": seconds, "archive_bytes": archive.stat().st_size, "members": len(names)}
    (FIGURES / "backup.json").write_text(json.dumps(figures, indent=1))
