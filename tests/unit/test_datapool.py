import datetime
import os
import shutil
import stat
import string
from pathlib import Path

import pytest

from spawner.config.profiles import Defaults, ProfilesFile
from spawner.pool.datapool import MAX_ESCAPED, RECORD_NAME, DataPool, PoolError, escape_name
from spawner.spawn.docker import DataPoolSpawner, HubShared
from tests.support.privileges import needs_root

HOSTILE_NAMES = [
    "../x",
    "a/b",
    "..",
    ".",
    "/etc/passwd",
    "~root",
    "Alice",
    "alice",
    "ALICE",
    "ada@uni.example",
    "ada.lovelace@uni.example",
    "x" * 255,
    "é" * 255,
    "名前",
    "emoji😀",
    "a b",
    "a\nb",
    "a\x00b",
    "-leading-dash",
    "a--b",
    "a-2fb",
    "$(rm -rf /)",
    "`id`",
    "user;drop",
    "a\\b",
    "CON",
]


def test_escaped_names_are_safe_for_paths_and_containers():
    allowed = set(string.ascii_lowercase + string.digits + "-")
    for name in HOSTILE_NAMES:
        escaped = escape_name(name)
        assert set(escaped) <= allowed, name
        assert 0 < len(escaped) <= MAX_ESCAPED, name
        assert escaped not in {".", ".."}


def test_escaping_is_injective():
    escaped = [escape_name(n) for n in HOSTILE_NAMES]
    assert len(set(escaped)) == len(HOSTILE_NAMES)


def test_case_matters():
    assert escape_name("Alice") != escape_name("alice")


def test_long_names_are_hashed_and_distinct():
    a, b = "x" * 254 + "a", "x" * 254 + "b"
    assert escape_name(a) != escape_name(b)
    assert "--" in escape_name(a)
    # a name that escapes short never contains the hash separator
    assert "--" not in escape_name("a--b")


def test_empty_name_is_refused():
    with pytest.raises(ValueError):
        escape_name("")


@pytest.fixture
def pool(tmp_path):
    """A pool in tmp_path; tests whose code hands folders to other uids say @needs_root."""
    return DataPool(tmp_path / "pool", Path("/host/pool"), 20000, 20009)


def test_paths_never_leave_the_pool(pool):
    for name in HOSTILE_NAMES:
        path = pool.user_path(name).resolve()
        assert path.parent == (pool.root / "users").resolve(), name


@needs_root
def test_user_folder_is_private_and_owned(pool):
    account = pool.ensure_user("ada")
    st = os.lstat(account.path)
    assert (st.st_uid, st.st_gid) == (account.uid, account.gid) == (20000, 20000)
    assert st.st_mode & 0o777 == 0o700
    assert account.host_path == Path("/host/pool/users/ada")


@needs_root
def test_uids_unique_and_stable(pool):
    first = {name: pool.ensure_user(name).uid for name in ["ada", "bob", "Ada", "../x"]}
    assert len(set(first.values())) == 4
    again = {name: pool.ensure_user(name).uid for name in first}
    assert again == first
    # A new hub with no database rebuilds the same mapping from the pool alone.
    fresh = DataPool(pool.root, pool.host_root, pool.uid_min, pool.uid_max)
    assert {name: fresh.ensure_user(name).uid for name in first} == first


@needs_root
def test_existing_folder_keeps_its_owner(pool):
    (pool.root / "users").mkdir(parents=True)
    os.mkdir(pool.root / "users" / "carol", 0o700)
    os.chown(pool.root / "users" / "carol", 31337, 31337)
    assert pool.ensure_user("carol").uid == 31337
    assert pool.ensure_user("dave").uid == 20000


@needs_root
def test_range_exhaustion_is_a_clear_error(pool):
    for i in range(10):
        pool.ensure_user(f"u{i}")
    with pytest.raises(PoolError, match=r"no free id left in 20000\.\.20009"):
        pool.ensure_user("one-too-many")


@needs_root
def test_planted_symlink_is_refused_not_followed(pool, tmp_path):
    (pool.root / "users").mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(target, pool.root / "users" / "eve")
    with pytest.raises(PoolError, match="not a directory"):
        pool.ensure_user("eve")
    assert os.lstat(target).st_uid == 0


@needs_root
def test_root_owned_folder_is_refused(pool):
    pool.user_path("root-made").mkdir(parents=True)
    with pytest.raises(PoolError, match="system account"):
        pool.ensure_user("root-made")


def test_users_dir_symlink_is_refused(pool, tmp_path):
    pool.root.mkdir(parents=True)
    (tmp_path / "decoy").mkdir()
    os.symlink(tmp_path / "decoy", pool.root / "users")
    with pytest.raises(PoolError, match="must be a directory"):
        pool.ensure_user("ada")


def test_every_spawner_shares_the_hubs_pool(tmp_path, monkeypatch):
    # One pool (one uid lock), one GPU ledger, one disk meter for the whole hub.
    defaults = Defaults(image="dshub/lab:test", cpu=1.0, mem_limit=2 * 2**30, pids=512)
    shared = HubShared(
        pool=DataPool(tmp_path, Path("/host"), 20000, 20009),
        profiles=ProfilesFile(tmp_path / "profiles.yaml", defaults),
    )
    monkeypatch.setattr(DataPoolSpawner, "shared", None)
    with pytest.raises(RuntimeError, match="share"):
        _ = DataPoolSpawner().pool
    DataPoolSpawner.share(shared)
    first, second = DataPoolSpawner(), DataPoolSpawner()
    assert first.pool is second.pool is shared.pool
    assert first.gpu_assignments is second.gpu_assignments
    assert first.usage_meter is second.usage_meter
    assert first.quota_limits is None


@needs_root
def test_group_folders_are_setgid_and_have_distinct_stable_gids(pool):
    g1, g2 = pool.ensure_group("g1"), pool.ensure_group("Data Science 101")
    assert g1.gid != g2.gid
    assert {g1.gid, g2.gid} <= set(range(60000, 65000))
    st = os.lstat(g1.path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, g1.gid, 0o2770)
    assert g2.escaped == escape_name("Data Science 101")
    fresh = DataPool(pool.root, pool.host_root, pool.uid_min, pool.uid_max)
    assert fresh.ensure_group("g1").gid == g1.gid


def test_gid_range_must_not_overlap_uids(tmp_path):
    with pytest.raises(ValueError, match="must not overlap"):
        DataPool(tmp_path, tmp_path, 20000, 30000, gid_min=25000, gid_max=26000)


@needs_root
def test_shared_is_readable_by_all_writable_by_instructors(pool):
    instructors = pool.ensure_group("instructors")
    assert pool.ensure_shared(instructors.gid) == pool.host_root / "shared"
    st = os.lstat(pool.root / "shared")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, instructors.gid, 0o2775)


LINKS = {"groups": "/srv/groups", "shared": "/srv/shared"}


@needs_root
def test_links_are_made_as_the_user(pool):
    account = pool.ensure_user("ada")
    pool.ensure_links(account, LINKS)
    for name, target in LINKS.items():
        st = os.lstat(account.path / name)
        assert stat.S_ISLNK(st.st_mode) and os.readlink(account.path / name) == target
        assert (st.st_uid, st.st_gid) == (account.uid, account.gid)
    pool.ensure_links(account, LINKS)  # again: nothing to do, no error
    assert sorted(os.listdir(account.path)) == ["groups", "shared"]


@needs_root
def test_links_never_replace_or_follow_what_the_user_keeps_there(pool, tmp_path):
    account = pool.ensure_user("eve")
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    os.symlink(victim, account.path / "groups")  # theirs, to a root-owned folder
    os.symlink(tmp_path / "nowhere", account.path / "shared")  # dangling
    (account.path / "mine").mkdir()
    pool.ensure_links(account, {**LINKS, "mine": "/srv/mine"})
    assert os.readlink(account.path / "groups") == str(victim)
    assert os.readlink(account.path / "shared") == str(tmp_path / "nowhere")
    assert not (account.path / "mine").is_symlink()
    assert not (tmp_path / "nowhere").exists()
    assert os.listdir(victim) == []
    assert (os.lstat(victim).st_uid, stat.S_IMODE(os.lstat(victim).st_mode)) == (0, 0o755)
    assert os.lstat(account.path / "groups").st_uid == 0, "an existing entry is not even chowned"


@needs_root
def test_archive_moves_the_folder_without_following_links(pool, tmp_path):
    account = pool.ensure_user("leaver")
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    os.symlink(victim, account.path / "x")
    (account.path / "notes.txt").write_text("mine")
    first = pool.archive_user("leaver", "2026-11-25")
    assert first == pool.root / "archive" / "leaver-2026-11-25"
    assert (first / "notes.txt").read_text() == "mine"
    assert os.readlink(first / "x") == str(victim)
    assert os.lstat(first).st_uid == account.uid
    assert not account.path.exists()
    assert (os.lstat(victim).st_uid, stat.S_IMODE(os.lstat(victim).st_mode)) == (0, 0o755)
    again = pool.ensure_user("leaver")
    assert again.uid != account.uid, "an archived uid is never handed out again"
    assert pool.archive_user("leaver", "2026-11-25").name == "leaver-2026-11-25-2"


def record_lines(pool: DataPool) -> list[str]:
    return (pool.root / RECORD_NAME).read_text().splitlines()


@needs_root
def test_every_issued_uid_is_recorded_before_its_folder(pool):
    ada, ds = pool.ensure_user("ada"), pool.ensure_user("Data Science 101")
    today = datetime.date.today().isoformat()
    assert record_lines(pool) == [
        f"{ada.uid} ada {today}",
        f"{ds.uid} {escape_name('Data Science 101')} {today}",
    ]
    st = os.lstat(pool.root / RECORD_NAME)
    assert stat.S_ISREG(st.st_mode)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    pool.ensure_user("ada")
    assert len(record_lines(pool)) == 2, "an existing user is not recorded again"


@needs_root
def test_a_deleted_archive_never_frees_its_uid(pool):
    leaver = pool.ensure_user("leaver")
    archived = pool.archive_user("leaver", "2026-11-25")
    shutil.rmtree(archived)
    assert pool.ensure_user("newcomer").uid != leaver.uid
    # Nor for a new hub process, which knows nothing but the pool.
    fresh = DataPool(pool.root, pool.host_root, pool.uid_min, pool.uid_max)
    assert fresh.ensure_user("later").uid not in {leaver.uid, pool.ensure_user("newcomer").uid}


def make_folder(parent: Path, name: str, uid: int) -> None:
    parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(parent / name, 0o700)
    os.chown(parent / name, uid, uid)


@needs_root
def test_a_pool_without_record_records_its_folders_at_first_use(pool):
    make_folder(pool.root / "users", "old", 20000)
    make_folder(pool.root / "archive", "gone-2020-01-01", 20001)
    assert not (pool.root / RECORD_NAME).exists()
    assert pool.ensure_user("old").uid == 20000
    today = datetime.date.today().isoformat()
    assert record_lines(pool) == [f"20000 old {today}", f"20001 gone-2020-01-01 {today}"]
    shutil.rmtree(pool.root / "archive" / "gone-2020-01-01")
    assert pool.ensure_user("new").uid == 20002


@needs_root
def test_a_pool_without_record_records_its_folders_at_first_allocation(pool):
    make_folder(pool.root / "archive", "gone-2020-01-01", 20000)
    make_folder(pool.root / "archive", "Renamed By Hand", 20001)
    make_folder(pool.root / "archive", os.fsdecode(b"not utf-8 \xff"), 20002)
    assert pool.ensure_user("new").uid == 20003
    names = [line.split(" ")[1] for line in record_lines(pool)]
    assert names == ["gone-2020-01-01", escape_name("Renamed By Hand"), "not-20utf-2d8-20-ff", "new"]


@needs_root
def test_archiving_records_the_uid_of_a_pool_without_record(pool):
    make_folder(pool.root / "users", "old", 20000)
    pool.archive_user("old", "2026-11-25")
    assert [line.split(" ")[0] for line in record_lines(pool)] == ["20000"]


@pytest.mark.parametrize("existing_target", [True, False])
def test_a_link_at_the_record_is_refused_not_followed(pool, tmp_path, existing_target):
    pool.root.mkdir(parents=True)
    victim = tmp_path / "victim"
    if existing_target:
        victim.write_text("root:x:0:0\n")
        victim.chmod(0o644)
    os.symlink(victim, pool.root / RECORD_NAME)
    with pytest.raises(PoolError, match=f"{RECORD_NAME} cannot be opened.*never a link"):
        pool.ensure_user("ada")
    assert not pool.user_path("ada").exists()
    if existing_target:
        assert victim.read_text() == "root:x:0:0\n"
        assert stat.S_IMODE(os.lstat(victim).st_mode) == 0o644
    else:
        assert not victim.exists()


@needs_root
def test_a_record_others_can_write_is_refused(pool):
    pool.root.mkdir(parents=True)
    (pool.root / RECORD_NAME).write_text("")
    os.chown(pool.root / RECORD_NAME, 20005, 20005)
    with pytest.raises(PoolError, match="must be a regular file owned by uid 0"):
        pool.ensure_user("ada")


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("20000 ada 2026-11-25\nnot a record line\n", 2, "expected '<uid> <escaped name> <YYYY-MM-DD>'"),
        ("20000 ada 2026-11-25\n\n", 2, "expected"),
        ("20000 Ada 2026-11-25\n", 1, "expected"),
        ("20000 ada 2026-02-30\n", 1, "2026-02-30 is not a date"),
        ("20000 ada 2026-11-25\n20001 bob 2026-1", 2, "incomplete"),
        ("20000 ada\x1b[2J 2026-11-25\n", 1, "expected"),
    ],
)
def test_a_record_line_that_cannot_be_parsed_is_an_error(pool, content, line, problem):
    pool.root.mkdir(parents=True)
    (pool.root / RECORD_NAME).write_text(content)
    os.chmod(pool.root / RECORD_NAME, 0o600)
    with pytest.raises(PoolError, match=f"/host/pool/{RECORD_NAME}:{line}: cannot parse") as raised:
        pool.ensure_user("ada")
    assert problem in str(raised.value)
    assert "\x1b" not in str(raised.value), "the line is shown escaped"
    assert not pool.user_path("ada").exists()
    assert (pool.root / RECORD_NAME).read_text() == content, "nothing is appended to a broken record"
