"""What a user's container mounts: bind Mounts at fixed paths, from hub groups and the pool alone."""

import os
import stat
from pathlib import Path

import pytest
from docker.errors import APIError

from spawner.pool.datapool import DataPool, escape_name
from spawner.spawn.docker import GROUPS_DIR, HOME, SHARED_DIR, pool_mounts, vanished_folder
from tests.support.privileges import needs_root

HOST = Path("/host/pool")


@pytest.fixture
def pool(tmp_path):
    """A pool in tmp_path; tests whose code hands folders to other uids say @needs_root."""
    return DataPool(tmp_path / "pool", HOST, 20000, 20009)


def table(mounts):
    return [(m["Type"], m["Source"], m["Target"], m["ReadOnly"]) for m in mounts.mounts]


@needs_root
def test_a_student_gets_binds_of_their_folders_at_fixed_paths(pool):
    ada = pool.ensure_user("ada")
    mounts = pool_mounts(pool, ada, ["g1", "Data Science 101"], ["*"], "instructors")
    ds = escape_name("Data Science 101")
    assert table(mounts) == [
        ("bind", f"{HOST}/users/ada", HOME, False),
        ("bind", f"{HOST}/groups/{ds}", f"{GROUPS_DIR}/{ds}", False),
        ("bind", f"{HOST}/groups/g1", f"{GROUPS_DIR}/g1", False),
        ("bind", f"{HOST}/shared", SHARED_DIR, True),
    ]
    assert mounts.group_add == sorted(
        [pool.ensure_group("g1").gid, pool.ensure_group("Data Science 101").gid]
    )
    assert os.readlink(ada.path / "groups") == GROUPS_DIR
    assert os.readlink(ada.path / "shared") == SHARED_DIR


@needs_root
def test_an_instructor_writes_shared_and_carries_its_gid(pool):
    ivan = pool.ensure_user("ivan")
    mounts = pool_mounts(pool, ivan, ["instructors"], ["g1"], "instructors")
    assert table(mounts) == [
        ("bind", f"{HOST}/users/ivan", HOME, False),
        ("bind", f"{HOST}/shared", SHARED_DIR, False),
    ]
    assert mounts.group_add == [pool.ensure_group("instructors").gid]


@needs_root
def test_no_group_folder_no_groups_link(pool):
    olga = pool.ensure_user("olga")
    mounts = pool_mounts(pool, olga, [], ["*"], "instructors")
    assert [m["Target"] for m in mounts.mounts] == [HOME, SHARED_DIR]
    assert mounts.group_add == []
    assert sorted(os.listdir(olga.path)) == ["shared"]


@needs_root
def test_what_the_home_holds_changes_no_mount(pool, tmp_path):
    clean = pool_mounts(pool, pool.ensure_user("ada"), ["g1"], ["*"], "instructors")
    eve = pool.ensure_user("eve")
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    # Links where the hub's own would go: to a root-owned folder, to another user's folder.
    os.symlink(victim, eve.path / "groups")
    os.symlink(pool.root / "users" / "ada", eve.path / "shared")
    mounts = pool_mounts(pool, eve, ["g1"], ["*"], "instructors")
    assert table(mounts)[1:] == table(clean)[1:]
    assert table(mounts)[0] == ("bind", f"{HOST}/users/eve", HOME, False)
    assert os.readlink(eve.path / "groups") == str(victim)
    assert os.listdir(victim) == []
    assert (os.lstat(victim).st_uid, stat.S_IMODE(os.lstat(victim).st_mode)) == (0, 0o755)


MISSING = 'invalid mount config for type "bind": bind source path does not exist: '


@pytest.mark.parametrize(
    ("error", "folder"),
    [
        (APIError("400 Client Error", explanation=f"{MISSING}/host/pool/groups/g1"), "groups/g1"),
        (APIError("400 Client Error", explanation=f"{MISSING}/host/pool/users/ada"), "users/ada"),
        (APIError("400 Client Error", explanation=f"{MISSING}/elsewhere/x"), "/elsewhere/x"),
        (APIError("409 Client Error", explanation="Conflict. The container name is in use"), None),
        (APIError("500 Server Error"), None),
        (RuntimeError(f"{MISSING}/host/pool/groups/g1"), None),
    ],
)
def test_the_engines_refusal_of_a_missing_source_names_the_folder(error, folder):
    assert vanished_folder(error, DataPool(Path("/hub/pool"), HOST, 20000, 20009)) == folder
