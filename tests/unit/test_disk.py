"""Disk quotas: settings, profiles.yaml, the hub's counting and its words; the quota service's parts."""

import json
import os
import resource
import struct

import pytest

from spawner.cli import settings as settings_cli
from spawner.cli.usage import ServerUsage, disk_cell, label_quota
from spawner.config import settings as s
from spawner.config.profiles import Defaults, ProfileError, parse
from spawner.core.units import size_for_people
from spawner.pool.disk import (
    MAX_DEPTH,
    DiskUsage,
    LimitsFile,
    QuotaState,
    UsageMeter,
    measure,
    read_limits,
    tree_usage,
)
from spawner.services.quota import (
    _DQUOT_SIZE,
    _FSXATTR,
    BASIC_BLOCK,
    FS_DQ_BHARD,
    FS_PROJ_QUOTA,
    dquot,
    same_limit,
)
from spawner.spawn.docker import container_labels, disk_env

M, G = 2**20, 2**30
DEFAULTS = Defaults(image="dshub/lab:test", cpu=1.0, mem_limit=2 * G, pids=512, disk_quota=5 * G)
ONE_PROFILE = "profiles: [{name: a, image: dshub/lab:test}]\n"


# -- settings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("", None), ("none", None), ("0", None), ("10G", 10 * G), ("500m", 500 * M)]
)
def test_disk_quota_setting(raw, expected):
    assert s.load({"DSHUB_DISK_QUOTA": raw}).disk_quota == expected


def test_enforcement_runs_the_quota_service_through_its_compose_profile():
    def profiles(**env: str) -> str:
        lines = dict(line.split("=", 1) for line in settings_cli.render(None, env).splitlines())
        return lines["COMPOSE_PROFILES"]

    assert profiles() == ""
    assert profiles(DSHUB_DISK_QUOTA_ENFORCE="project") == "quota"
    assert profiles(DSHUB_DISK_QUOTA_ENFORCE="project", DSHUB_MONITORING="true") == "monitoring,quota"


# -- profiles.yaml -------------------------------------------------------------


def test_quota_per_user_and_per_group():
    profiles = parse(
        "limits:\n  disk_per_user: 10G\n"
        "  disk_per_group: {projects: 50G, guests: 1G, staff: none, 'org:team': 20G}\n" + ONE_PROFILE,
        DEFAULTS,
    )
    assert profiles.disk_quota([]) == 10 * G
    assert profiles.disk_quota(["unlisted"]) == 10 * G
    # A listed group replaces disk_per_user, even downwards; the most generous listed group wins.
    assert profiles.disk_quota(["guests"]) == G
    assert profiles.disk_quota(["guests", "projects"]) == 50 * G
    assert profiles.disk_quota(["org:team", "guests"]) == 20 * G
    assert profiles.disk_quota(["staff", "projects"]) is None


def test_quota_defaults_to_the_setting_and_none_turns_it_off():
    assert parse(ONE_PROFILE, DEFAULTS).disk_quota([]) == 5 * G
    assert parse("limits: {disk_per_user: none}\n" + ONE_PROFILE, DEFAULTS).disk_quota([]) is None
    assert DEFAULTS.single().disk_quota(["any"]) == 5 * G


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ("{disk_per_user: 10 GB}", "limits.disk_per_user: '10 GB' does not match"),
        ("{disk_per_user: 10}", "limits.disk_per_user: 10 is not of type 'string'"),
        ("{disk_per_user: '10'}", "limits.disk_per_user='10' is out of range: use 1M..1024T"),
        ("{disk_per_user: 2000T}", "limits.disk_per_user='2000T' is out of range"),
        ("{disk_per_group: {projects: lots}}", "limits.disk_per_group.projects: 'lots' does not match"),
        ("{disk_per_group: {'../etc': 1G}}", "limits.disk_per_group: '../etc' does not match"),
        ("{disk_per_group: {'a\\nb': 1G}}", "does not match"),
        ("{disk_per_group: {'<script>': 1G}}", "does not match"),
        ("{disk_per_group: [projects]}", "is not of type 'object'"),
        ("{disk_quota: 1G}", "Additional properties are not allowed ('disk_quota' was unexpected)"),
    ],
)
def test_bad_quotas_in_profiles_are_named(limits, message):
    with pytest.raises(ProfileError) as info:
        parse(f"limits: {limits}\n" + ONE_PROFILE, DEFAULTS)
    assert message in str(info.value)


def test_a_quota_key_given_twice_is_an_error():
    with pytest.raises(ProfileError, match="'projects' is given twice"):
        parse("limits:\n  disk_per_group: {projects: 1G, projects: 2G}\n" + ONE_PROFILE, DEFAULTS)


# -- counting ------------------------------------------------------------------


def test_sizes_read_as_people_write_them():
    assert [
        size_for_people(v) for v in (0, 512 * 2**10, 7 * M + M // 2, 930 * M, 9 * G + 6 * G // 10, 12 * G)
    ] == [
        "0K",
        "512K",
        "7.5M",
        "930M",
        "9.6G",
        "12G",
    ]


def test_the_walk_counts_blocks_and_never_follows_links(tmp_path):
    home = tmp_path / "home"
    (home / "deep" / "er").mkdir(parents=True)
    (home / "deep" / "er" / "data").write_bytes(os.urandom(3 * M))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(8 * M))
    (home / "link").symlink_to(outside)
    (home / "filelink").symlink_to(outside / "big")
    usage = measure(home, quota=None)
    assert usage.complete and not usage.enforced
    assert 3 * M <= usage.used < 4 * M, usage


def test_a_walk_stops_at_its_budget_and_says_so(tmp_path):
    for i in range(50):
        (tmp_path / f"f{i}").write_bytes(b"x" * 5000)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        partial, whole = tree_usage(fd, limit=10), tree_usage(fd)
    finally:
        os.close(fd)
    assert not partial.complete and whole.complete
    assert partial.used < whole.used
    state = QuotaState(partial, 2 * M, 90, 110)
    assert state.summary().startswith("Your files use at least ")


def test_a_folder_not_made_yet_holds_nothing(tmp_path):
    assert measure(tmp_path / "absent", quota=M) == DiskUsage(0)


def test_a_filesystem_without_project_quota_never_passes_for_enforced(tmp_path):
    # The test's own filesystem reports its real size, not the quota.
    assert not measure(tmp_path, quota=10 * M).enforced


def test_the_meter_shares_a_measure_only_with_requests_made_before_it(tmp_path):
    meter = UsageMeter()
    first = meter.measure(tmp_path, M)
    (tmp_path / "new").write_bytes(os.urandom(M))
    # A request after the last measure is measured afresh: deleted or added files count at once.
    assert meter.measure(tmp_path, M).used >= first.used + M
    # Requests waiting while one measures share its figure.
    folder_lock = meter._folder_locks[tmp_path]
    with folder_lock:
        futures = [meter.executor.submit(meter.measure, tmp_path, M) for _ in range(2)]
        (tmp_path / "more").write_bytes(os.urandom(M))
    results = [f.result() for f in futures]
    assert results[0] == results[1] and results[0].used >= first.used + 2 * M


# -- what the hub says ---------------------------------------------------------


def test_below_near_and_far_over_the_quota():
    quiet = QuotaState(DiskUsage(2 * G), 10 * G, 90, 110)
    assert not quiet.warned and not quiet.refused
    assert quiet.summary() == "Your files use 2G of your 10G disk quota (20%)"
    near = QuotaState(DiskUsage(int(10.5 * G)), 10 * G, 90, 110)
    assert near.warned and not near.refused
    assert near.warning() == (
        "Your files use 10G of your 10G disk quota (105%). Delete or move what you no longer need: "
        "above 110% (11G) no new server of yours can be started."
    )
    over = QuotaState(DiskUsage(12 * G), 10 * G, 90, 110)
    assert over.refused
    assert over.refusal() == (
        "Your files use 12G of your 10G disk quota (120%), over the 110% (11G) up to which a server "
        "can start. Delete files from a server that is still running, or ask an admin to raise your quota."
    )
    free = QuotaState(DiskUsage(500 * G), None, 90, 110)
    assert not free.warned and not free.refused and free.summary() == "Your files use 500G"


def test_the_server_gets_the_figures_and_the_container_its_quota_label():
    state = QuotaState(DiskUsage(7 * M), 8 * M, 90, 110)
    assert disk_env(state) == {
        "DSHUB_DISK_QUOTA": str(8 * M),
        "DSHUB_DISK_USED": str(7 * M),
        "DSHUB_DISK_WARN_PERCENT": "90",
        "DSHUB_DISK_REFUSE_PERCENT": "110",
    }
    assert disk_env(QuotaState(DiskUsage(7 * M), None, 90, 110)) == {}
    labels = container_labels("p", "ada", "", "lean", disk_quota=8 * M)
    assert label_quota(labels) == 8 * M
    assert label_quota(container_labels("p", "ada", "", "lean")) is None
    assert label_quota({"dshub.disk_quota": "-5"}) is None


def test_usage_table_shows_use_against_the_quota():
    row = ServerUsage("ada", "(default)", "lean", "img", "", 0.0, 1.0, M, G, int(7.5 * M), "running")
    assert disk_cell(row) == "7.5M"
    assert disk_cell(ServerUsage(**{**row.__dict__, "disk_quota": 8 * M})) == "7.5M/8M 94%"
    hard = ServerUsage(**{**row.__dict__, "disk_quota": 8 * M, "disk_enforced": True})
    assert disk_cell(hard) == "7.5M/8M 94% hard"
    partial = ServerUsage(**{**row.__dict__, "disk_quota": 8 * M, "disk_complete": False})
    assert disk_cell(partial) == ">=7.5M/8M 94%"


# -- the limits file and the quota service -------------------------------------


def test_the_limits_file_is_rewritten_whole_and_read_strictly(tmp_path):
    limits = LimitsFile(tmp_path)
    limits.set("ada", 8 * M)
    limits.set("bob-40uni", None)
    assert read_limits(tmp_path / "limits.json") == {"ada": 8 * M, "bob-40uni": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["limits.json"]
    for bad in ('["ada"]', '{"ada": -1}', '{"ada": "8M"}', '{"ada": true}'):
        (tmp_path / "limits.json").write_text(bad)
        with pytest.raises(ValueError, match="must map folder names to byte counts"):
            read_limits(tmp_path / "limits.json")
    assert read_limits(tmp_path / "absent.json") == {}


def test_the_kernel_structures_have_their_abi_sizes():
    assert _FSXATTR.size == 28
    packed = dquot(20001, 8 * M + 1)
    assert len(packed) == _DQUOT_SIZE == 112
    version, flags, mask, project, hard = struct.unpack_from("=bbHIQ", packed)
    assert (version, flags, mask, project) == (1, FS_PROJ_QUOTA, FS_DQ_BHARD, 20001)
    assert hard == 8 * M // BASIC_BLOCK + 1, "rounded up to whole 512-byte blocks, never below the quota"


def test_a_limit_read_back_in_filesystem_blocks_is_the_one_set():
    assert same_limit(0, 0)
    assert same_limit(8 * M, 8 * M)
    assert same_limit(8 * M + 4096, 8 * M + 1)  # rounded up to a 4K block
    assert not same_limit(0, 8 * M)
    assert not same_limit(16 * M, 8 * M)


def test_the_quota_service_refuses_a_pool_without_project_quotas(tmp_path):
    from spawner.services.quota import Enforcer, QuotaError

    (tmp_path / "users").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "limits.json").write_text(json.dumps({"ada": 8 * M}))
    with pytest.raises(QuotaError, match=r"mounted with -o prjquota .* or set DSHUB_DISK_QUOTA_ENFORCE=off"):
        Enforcer(tmp_path, tmp_path / "state", 20000, 59999).apply()


def test_a_wide_tree_is_walked_with_few_descriptors(tmp_path):
    root = tmp_path / "wide"
    for i in range(600):
        (root / f"d{i}" / "sub").mkdir(parents=True)
        (root / f"d{i}" / "sub" / "f").write_bytes(b"x" * 5000)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            usage = tree_usage(fd)
        finally:
            os.close(fd)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert usage.complete
    assert usage.used >= 600 * 5000


def test_a_tree_deeper_than_the_walk_is_counted_as_at_least(tmp_path):
    deep = tmp_path / "deep"
    path = deep
    for _ in range(MAX_DEPTH + 5):
        path = path / "d"
    path.mkdir(parents=True)
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not tree_usage(fd).complete
    finally:
        os.close(fd)
