"""GPU assignment without a GPU: the bookkeeping the hub does before it asks the engine."""

import pytest

from spawner.spawn.gpus import GpuAssignments, NoGpuFree

DEVICES = ("0", "1", "2")


def assign(gpus, owner, count=1, shared=False, user_limit=None, devices=DEVICES):
    return gpus.assign(owner, owner.split("/")[0], count, devices, shared=shared, user_limit=user_limit)


def test_exclusive_servers_get_distinct_devices_until_none_is_left():
    gpus = GpuAssignments()
    given = [assign(gpus, f"user{i}/") for i in range(3)]
    assert sorted(d for ids in given for d in ids) == ["0", "1", "2"]
    with pytest.raises(NoGpuFree, match="No GPU is free: this profile needs 1, 0 of the 3"):
        assign(gpus, "late/")


def test_release_frees_the_device_for_the_next_server():
    gpus = GpuAssignments()
    for i in range(3):
        assign(gpus, f"user{i}/")
    gpus.release("user1/")
    assert assign(gpus, "late/") == ("1",)
    gpus.release("never-held/")  # stopping a server without GPUs is fine


def test_a_server_asking_for_more_than_is_free_gets_none():
    gpus = GpuAssignments()
    assign(gpus, "a/")
    with pytest.raises(NoGpuFree, match="needs 3, 2 of the 3"):
        assign(gpus, "b/", count=3)
    assert gpus.holding("b/") is None
    assert assign(gpus, "b/", count=2) == ("1", "2")


def test_shared_profiles_share_devices_but_never_an_exclusive_one():
    gpus = GpuAssignments()
    assert assign(gpus, "x/") == ("0",)
    shared = [assign(gpus, f"s{i}/", shared=True) for i in range(4)]
    # Spread over the devices not held exclusively, least used first.
    assert [ids[0] for ids in shared] == ["1", "2", "1", "2"]
    with pytest.raises(NoGpuFree):
        assign(gpus, "y/")  # exclusive: every device is in use by someone


def test_an_exclusive_server_never_gets_a_device_in_shared_use():
    gpus = GpuAssignments()
    assign(gpus, "s/", shared=True)
    assert assign(gpus, "x/", count=2) == ("1", "2")


def test_the_per_user_limit_counts_all_of_a_users_servers():
    gpus = GpuAssignments()
    gpus.assign("ada/cpu", "ada", 1, DEVICES, shared=False, user_limit=2)
    gpus.assign("ada/gpu", "ada", 1, DEVICES, shared=False, user_limit=2)
    with pytest.raises(NoGpuFree, match="already hold 2 GPU\\(s\\) and may hold at most 2"):
        gpus.assign("ada/third", "ada", 1, DEVICES, shared=False, user_limit=2)
    assert gpus.assign("bob/", "bob", 1, DEVICES, shared=False, user_limit=2) == ("2",)


def test_restarting_a_server_first_gives_back_what_it_held():
    gpus = GpuAssignments()
    assert assign(gpus, "a/", count=3) == DEVICES
    assert assign(gpus, "a/", count=3) == DEVICES


def test_after_a_hub_restart_restored_holdings_are_respected():
    gpus = GpuAssignments()
    gpus.restore("ada/", "ada", ("1",), shared=False)
    assert assign(gpus, "bob/", count=2) == ("0", "2")
    with pytest.raises(NoGpuFree):
        assign(gpus, "eve/")


def test_a_shorter_device_list_after_an_edit_only_offers_what_is_listed():
    gpus = GpuAssignments()
    assert assign(gpus, "a/", devices=("1",)) == ("1",)
    with pytest.raises(NoGpuFree, match="of the 1 GPU"):
        assign(gpus, "b/", devices=("1",))
