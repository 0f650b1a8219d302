"""DataPoolSpawner as JupyterHub drives it, up to what it would hand the engine.

The spawner is made the hub's way, for a user of the hub's database (JupyterHub's
own ``User`` on an in-memory sqlite, as JupyterHub's tests make one), and taken
through ``User.spawn``'s steps: the user's options are applied, then ``start()``
runs. Everything dshub derives there is real: the profile and its limits, the
pool folder and uid, the group folders and gids, the labels, the hardening. The
test stops the start where that :class:`ServerSpec` becomes the container's
create arguments (:meth:`DataPoolSpawner._apply_server_spec`), before DockerSpawner
would call an engine; nothing here stands in for the engine. What an engine
makes of these arguments is tested in tests/integration.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User
from tornado import web
from traitlets.config import Config

from spawner.config.profiles import Defaults, ProfileError, ProfilesFile
from spawner.pool.datapool import DataPool, escape_name
from spawner.spawn.docker import GROUPS_DIR, HOME, SHARED_DIR, DataPoolSpawner, HubShared, ServerSpec
from spawner.spawn.gpus import Holding
from spawner.spawn.tools import TOOLS, launchers
from tests.support.privileges import needs_root

HOST = Path("/host/pool")
DEFAULTS = Defaults(image="dshub/lab:default", cpu=1.0, mem_limit=2 * 2**30, pids=512)
PROFILES = """
profiles:
  - name: small
    display_name: Small
    description: For the weekly exercises.
    image: dshub/lab:test
    cpu: 0.5
    memory: 512M
    pids: 128
    default: true
  - name: roomy
    display_name: Roomy
    image: dshub/datascience:test
    cpu: 2
    memory: 4G
    pids: 1024
    groups: [ds101]
  - name: gpu
    display_name: One GPU
    image: dshub/datascience:test
    gpus: 1
    groups: [gpu-users]
limits:
  servers_per_user: 2
  disk_per_group:
    guests: 1M
gpus:
  devices: ["0", "1"]
"""


class AtTheEngine(Exception):
    """The start got to handing its container's arguments to DockerSpawner, which calls the engine."""


class SpecOnly(DataPoolSpawner):
    """The hub's spawner, stopped once it has made what it would send the engine."""

    def _apply_server_spec(self, spec: ServerSpec) -> None:
        super()._apply_server_spec(spec)
        raise AtTheEngine


@pytest.fixture
def shared(tmp_path, monkeypatch) -> HubShared:
    """What the hub's start() shares with all spawners: a real pool and profiles file in tmp_path."""
    (tmp_path / "profiles.yaml").write_text(PROFILES)
    hub_shared = HubShared(
        pool=DataPool(tmp_path / "pool", HOST, 20000, 20009),
        profiles=ProfilesFile(tmp_path / "profiles.yaml", DEFAULTS),
    )
    monkeypatch.setattr(DataPoolSpawner, "shared", None)  # given back after the test
    DataPoolSpawner.share(hub_shared)
    # Should anything still reach for an engine, it finds none (never this machine's).
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/dshub-unit-tests.sock")
    return hub_shared


@pytest.fixture
def db():
    """The hub's database, in memory, as JupyterHub's own tests make it."""
    session = orm.new_session_factory("sqlite:///:memory:")()
    yield session
    session.close()


def user_of(db, name: str, groups: tuple[str, ...] = (), config: Config | None = None) -> User:
    """A user of the hub, in these hub groups; their spawners are made as the hub makes them."""
    orm_user = orm.User(name=name)
    db.add(orm_user)
    for group in groups:
        orm_user.groups.append(orm.Group.find(db, group) or orm.Group(name=group))
    db.commit()
    return User(orm_user, {"spawner_class": SpecOnly, "config": config or Config(), "hub": Hub()})


def spawner_of(db, name: str, groups: tuple[str, ...] = (), config: Config | None = None) -> SpecOnly:
    return user_of(db, name, groups, config).spawner


def named_spawner(user: User, server_name: str) -> SpecOnly:
    user._new_orm_spawner(server_name, server_name)
    return user.spawners[server_name]


async def _prepare(spawner: DataPoolSpawner, options: dict[str, Any] | None) -> None:
    """User.spawn's steps before start(), in its order."""
    if options is not None:
        spawner.orm_spawner.user_options = options  # the hub keeps them as the next start's
    spawner.user_options = spawner.orm_spawner.user_options or {}
    spawner.clear_state()
    await spawner.apply_group_overrides()
    await spawner._run_apply_user_options(spawner.user_options)


def prepare(spawner: DataPoolSpawner, options: dict[str, Any] | None = None) -> None:
    asyncio.run(_prepare(spawner, options))


def spawn(spawner: DataPoolSpawner, options: dict[str, Any] | None = None) -> None:
    """User.spawn up to the engine; a refusal on the way is raised as the hub gets it."""

    async def steps() -> None:
        await _prepare(spawner, options)
        await spawner.start()

    with pytest.raises(AtTheEngine):
        asyncio.run(steps())


def mounts(spawner: DataPoolSpawner) -> list[tuple[str, str, str, bool]]:
    return [(m["Type"], m["Source"], m["Target"], m["ReadOnly"]) for m in spawner.extra_host_config["mounts"]]


def refusal(spawner: DataPoolSpawner, options: dict[str, Any] | None = None) -> tuple[int, str]:
    """The status and message of the hub's refusal of this start, as the user is shown them."""
    with pytest.raises(web.HTTPError) as refused:
        spawn(spawner, options)
    return refused.value.status_code, refused.value.log_message % refused.value.args


# -- what the server is made of ---------------------------------------------------


@needs_root
def test_each_user_runs_as_their_own_uid_with_their_pool_folder_as_home(db, shared):
    ada, bob = spawner_of(db, "ada"), spawner_of(db, "bob")
    spawn(ada)
    spawn(bob)
    assert ada.server_spec.user == "20000:20000"
    assert bob.server_spec.user == "20001:20001"
    assert ada.extra_create_kwargs["user"] == "20000:20000"
    assert ada.extra_create_kwargs["working_dir"] == HOME
    account = shared.pool.ensure_user("ada")  # the folder start() made, with its owner
    assert (account.uid, account.gid) == (20000, 20000)
    assert mounts(ada) == [
        ("bind", "/host/pool/users/ada", HOME, False),
        ("bind", "/host/pool/shared", SHARED_DIR, True),
    ]
    assert ada.extra_host_config["group_add"] == []


@needs_root
def test_the_users_hub_groups_give_their_folders_and_gids(db, shared):
    ada = spawner_of(db, "ada", groups=("g1", "Data Science 101"))
    spawn(ada)
    ds = escape_name("Data Science 101")
    assert mounts(ada) == [
        ("bind", "/host/pool/users/ada", HOME, False),
        ("bind", f"/host/pool/groups/{ds}", f"{GROUPS_DIR}/{ds}", False),
        ("bind", "/host/pool/groups/g1", f"{GROUPS_DIR}/g1", False),
        ("bind", "/host/pool/shared", SHARED_DIR, True),
    ]
    gids = sorted([shared.pool.ensure_group("g1").gid, shared.pool.ensure_group("Data Science 101").gid])
    assert ada.server_spec.group_add == ada.extra_host_config["group_add"] == gids


@needs_root
def test_only_the_groups_the_setting_names_get_a_folder(db, shared):
    c = Config()
    c.DataPoolSpawner.group_folders = ["g1"]
    ada = spawner_of(db, "ada", groups=("g1", "ds101"), config=c)
    spawn(ada)
    assert [target for _, _, target, _ in mounts(ada)] == [HOME, f"{GROUPS_DIR}/g1", SHARED_DIR]
    assert ada.extra_host_config["group_add"] == [shared.pool.ensure_group("g1").gid]
    assert not (shared.pool.root / "groups" / "ds101").exists()


@needs_root
def test_members_of_the_instructors_group_write_the_shared_folder(db, shared):
    c = Config()
    c.DataPoolSpawner.instructors_group = "teachers"
    ivan = spawner_of(db, "ivan", groups=("teachers",), config=c)
    ada = spawner_of(db, "ada", config=c)
    spawn(ivan)
    spawn(ada)
    assert mounts(ivan)[-1] == ("bind", "/host/pool/shared", SHARED_DIR, False)
    assert ivan.extra_host_config["group_add"] == [shared.pool.ensure_group("teachers").gid]
    assert mounts(ada)[-1] == ("bind", "/host/pool/shared", SHARED_DIR, True)
    assert ada.extra_host_config["group_add"] == []


@needs_root
def test_labels_name_the_project_user_server_and_profile(db, shared):
    c = Config()
    c.DataPoolSpawner.project = "course-x"
    ada = named_spawner(user_of(db, "ada", groups=("ds101",), config=c), "project")
    spawn(ada, {"profile": "roomy"})
    labels = {
        "dshub.project": "course-x",
        "dshub.role": "user-server",
        "dshub.user": "ada",
        "dshub.server": "project",
        "dshub.profile": "roomy",
        "dshub.gpus": "",
        "dshub.disk_quota": "",
    }
    assert ada.server_spec.labels == ada.extra_create_kwargs["labels"] == labels


@needs_root
def test_the_chosen_profile_gives_the_image_and_limits(db, shared):
    ada = spawner_of(db, "ada", groups=("ds101",))
    spawn(ada, {"profile": "roomy"})
    assert ada.image == "dshub/datascience:test"
    assert (ada.cpu_limit, ada.mem_limit) == (2.0, 4 * 2**30)
    assert ada.server_spec.pids_limit == ada.extra_host_config["pids_limit"] == 1024
    env = ada.get_env()
    assert (env["MEM_LIMIT"], env["CPU_LIMIT"]) == (str(4 * 2**30), "2.0")
    assert env["JUPYTER_IMAGE_SPEC"] == "dshub/datascience:test"
    # The next start without options is the same choice, as the hub keeps it.
    spawn(ada)
    assert ada.extra_create_kwargs["labels"]["dshub.profile"] == "roomy"


@needs_root
def test_a_start_without_a_choice_gets_the_default_profile(db, shared):
    ada = spawner_of(db, "ada", groups=("ds101",))
    spawn(ada, {})
    assert (ada.image, ada.cpu_limit, ada.mem_limit) == ("dshub/lab:test", 0.5, 512 * 2**20)
    assert ada.extra_host_config["pids_limit"] == 128
    # start() called without the options step (not the hub's way) takes the default too.
    bob = spawner_of(db, "bob")
    with pytest.raises(AtTheEngine):
        asyncio.run(bob.start())
    assert bob.extra_create_kwargs["labels"]["dshub.profile"] == "small"
    assert bob.extra_host_config["pids_limit"] == 128


@needs_root
def test_config_cannot_weaken_the_hardening_or_add_mounts(db, shared):
    c = Config()
    c.DataPoolSpawner.extra_host_config = {
        "privileged": True,
        "cap_add": ["SYS_ADMIN"],
        "cap_drop": [],
        "pids_limit": -1,
        "binds": {"/": {"bind": "/host", "mode": "rw"}},
    }
    c.DataPoolSpawner.extra_create_kwargs = {"user": "0:0"}
    c.DataPoolSpawner.volumes = {"/var/run/docker.sock": "/var/run/docker.sock"}
    ada = spawner_of(db, "ada", config=c)
    assert ada.extra_host_config["privileged"] is True, "the config reached the spawner"
    spawn(ada)
    assert ada.extra_host_config == {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": 128,
        "init": False,
        "group_add": [],
        "mounts": ada.server_spec.mounts,
    }
    assert ada.extra_create_kwargs == {
        "user": "20000:20000",
        "working_dir": HOME,
        "labels": ada.server_spec.labels,
    }
    assert ada.volumes == {}


@needs_root
def test_a_gpu_profile_gets_a_device_no_other_server_holds(db, shared):
    ada, bob, cleo = (spawner_of(db, name, groups=("gpu-users",)) for name in ("ada", "bob", "cleo"))
    spawn(ada, {"profile": "gpu"})
    spawn(bob, {"profile": "gpu"})
    for spawner, device in ((ada, "0"), (bob, "1")):
        (request,) = spawner.extra_host_config["device_requests"]
        assert dict(request) == {
            "Driver": "nvidia",
            "Count": 0,
            "DeviceIDs": [device],
            "Capabilities": [["gpu"]],
            "Options": {},
        }
        assert spawner.extra_create_kwargs["labels"]["dshub.gpus"] == device
        assert spawner.gpu_devices == [device]
    status, message = refusal(cleo, {"profile": "gpu"})
    assert status == 409
    assert message.startswith("No GPU is free: this profile needs 1, 0 of the 2 GPU(s) are available.")
    assert cleo.server_spec is None, "nothing was made for the engine"


@needs_root
def test_near_the_quota_the_page_warns_and_the_server_gets_the_figures(db, shared):
    c = Config()
    c.DataPoolSpawner.disk_warn_percent = 50
    c.DataPoolSpawner.disk_refuse_percent = 200
    gus = spawner_of(db, "gus", groups=("guests",), config=c)
    account = shared.pool.ensure_user("gus")
    (account.path / "data.bin").write_bytes(os.urandom(3 * 2**19))  # 1.5M of 1M: refused at 110%
    spawn(gus)
    assert gus.extra_create_kwargs["labels"]["dshub.disk_quota"] == str(2**20)
    warned = [event["message"] for event in gus.progress_events if event["progress"] == 15]
    assert len(warned) == 1
    assert re.fullmatch(
        r"Your files use 1\.5M of your 1M disk quota \(15\d%\)\. Delete or move what you no longer "
        r"need: above 200% \(2M\) no new server of yours can be started\.",
        warned[0],
    ), warned
    env = gus.get_env()
    assert env["DSHUB_DISK_QUOTA"] == str(2**20)
    assert int(env["DSHUB_DISK_USED"]) >= 3 * 2**19
    assert (env["DSHUB_DISK_WARN_PERCENT"], env["DSHUB_DISK_REFUSE_PERCENT"]) == ("50", "200")


# -- refusals: nothing is made for a start the hub refuses -------------------------


@pytest.mark.parametrize(
    ("groups", "options", "status", "message"),
    [
        ((), {"profile": "roomy"}, 403, "Profile 'roomy' is not one you may use; you may use: small."),
        (
            ("ds101",),
            {"profile": "gpu"},
            403,
            "Profile 'gpu' is not one you may use; you may use: small, roomy.",
        ),
        ((), {"profile": ["small"]}, 403, "The profile must be given as its name."),
        (
            (),
            {"profile": "small", "image": "evil/image", "mem_limit": "1T"},
            400,
            "Unknown server option(s): image, mem_limit. Only 'profile' is accepted.",
        ),
    ],
)
def test_a_choice_the_user_may_not_make_is_refused_and_not_kept(db, shared, groups, options, status, message):
    ada = spawner_of(db, "ada", groups=groups)
    assert refusal(ada, options) == (status, message)
    assert ada.orm_spawner.user_options == {}, "not the default of the next start"
    assert ada.chosen_profile is None and ada.image != "evil/image"
    assert not shared.pool.root.exists(), "no folder, no uid"


def test_a_user_may_run_only_as_many_servers_as_the_profiles_allow(db, shared):
    user = user_of(db, "ada")
    first, second, third = (named_spawner(user, name) for name in ("first", "second", "third"))
    first.orm_spawner.server = orm.Server()  # running, as the hub's database records it
    db.commit()
    prepare(third)  # one running: a second is allowed
    assert third.chosen_profile is not None and third.chosen_profile.name == "small"
    second.orm_spawner.server = orm.Server()
    db.commit()
    with pytest.raises(web.HTTPError) as refused:
        prepare(third)
    assert refused.value.status_code == 403
    assert refused.value.log_message == "You may run at most 2 server(s) at once: stop one first."
    assert third.chosen_profile is None


def test_a_start_far_over_the_disk_quota_is_refused_with_the_figures(db, shared):
    gus = spawner_of(db, "gus", groups=("guests",))
    folder = shared.pool.user_path("gus")
    folder.mkdir(parents=True)
    (folder / "data.bin").write_bytes(os.urandom(2 * 2**20))
    status, message = refusal(gus)
    assert status == 403
    assert re.fullmatch(
        r"Your files use 2(\.\d)?M of your 1M disk quota \(20\d%\), over the 110% \(1\.1M\) up to which "
        r"a server can start\. Delete files from a server that is still running, or ask an admin to "
        r"raise your quota\.",
        message,
    ), message
    assert gus.chosen_profile is None
    # A user outside the quota's group starts whatever their folder holds.
    ada = spawner_of(db, "ada")
    prepare(ada)
    assert ada.disk_state is None and ada.chosen_profile is not None


def test_a_username_that_breaks_the_rule_gets_no_server(db, shared):
    spawner = spawner_of(db, "x`) || pathprefix(`/")
    status, message = refusal(spawner)
    assert status == 403
    assert message.startswith("This username breaks the username rule (the username has characters")
    assert spawner.server_spec is None
    assert not shared.pool.root.exists()


# -- the form and the hub's state --------------------------------------------------


def test_the_form_offers_the_profiles_open_to_the_user_with_their_last_choice(db, shared):
    user = user_of(db, "ada", groups=("ds101",))
    user.orm_spawners[""].user_options = {"profile": "roomy"}  # her last start's, kept by the hub
    db.commit()
    form = asyncio.run(user.spawner.get_options_form())
    assert re.findall(r'name="profile" id="profile-([a-z]+)" value="\1"( checked)?', form) == [
        ("small", ""),
        ("roomy", " checked"),
    ]
    # One profile open: no form at all.
    assert asyncio.run(spawner_of(db, "bob").get_options_form()) == ""


def test_the_form_refuses_a_profile_the_user_may_not_use(db, shared):
    ada = spawner_of(db, "ada", groups=("ds101",))
    assert ada.run_options_from_form({"profile": ["roomy"], "_xsrf": ["x"]}) == {"profile": "roomy"}
    with pytest.raises(ProfileError, match="Profile 'gpu' is not one you may use"):
        ada.run_options_from_form({"profile": ["gpu"]})


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"profile": ["small"], "image": ["evil/image"]}, "Unexpected form field(s): image."),
        ({"profile": ["small", "roomy"]}, "Choose exactly one profile from the list."),
        ({"profile": ["Small"]}, "Choose exactly one profile from the list."),
        ({}, "Choose exactly one profile from the list."),
    ],
)
def test_a_form_with_anything_but_one_profile_name_is_refused(db, shared, form, message):
    ada = spawner_of(db, "ada", groups=("ds101",))
    with pytest.raises(ProfileError) as refused:
        ada.run_options_from_form(form)
    assert str(refused.value) == message


def test_after_a_hub_restart_a_running_server_keeps_its_gpus(db, shared):
    user = user_of(db, "ada", groups=("gpu-users",))
    # What the hub's database holds of a running GPU server; a restarted hub makes its spawner from it.
    user.orm_spawners[""].state = {
        "object_id": "c0ffee",
        "profile": "gpu",
        "gpus": ["1"],
        "gpu_shared": False,
    }
    db.commit()
    spawner = user.spawner
    assert shared.gpu_assignments.holding("ada/") == Holding("ada", ("1",), False)
    assert (spawner.profile_name, spawner.gpu_devices) == ("gpu", ["1"])
    state = spawner.get_state()
    assert (state["profile"], state["gpus"], state["gpu_shared"]) == ("gpu", ["1"], False)
    spawner.clear_state()
    assert (spawner.profile_name, spawner.chosen_profile, spawner.disk_state) == ("", None, None)


def test_servers_report_activity_often_enough_for_the_culler(db, shared):
    c = Config()
    c.DataPoolSpawner.cull_idle_timeout = 600
    env = spawner_of(db, "ada", config=c).get_env()
    assert (env["HOME"], env["JUPYTERHUB_ACTIVITY_INTERVAL"]) == (HOME, "150")
    assert not any(key.startswith("DSHUB_DISK_") for key in env), "no quota, no figures"
    assert spawner_of(db, "bob").get_env()["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"


def test_the_hubs_limit_on_a_start_is_the_wait_in_line_and_then_the_servers_own(db, shared):
    c = Config()
    c.DataPoolSpawner.update(start_concurrency=4, start_queue_timeout=600, server_start_timeout=120)
    assert spawner_of(db, "ada", config=c).start_timeout == 720
    c.DataPoolSpawner.start_concurrency = 0  # no line, no wait in it
    assert spawner_of(db, "bob", config=c).start_timeout == 120


def test_the_home_page_links_each_server_to_its_tools(shared, db):
    """The default server first, then the named ones; each link is the spawn page, then the tool."""
    user = user_of(db, "ada.b")
    named_spawner(user, "gpu")
    servers = launchers(user, lambda spawner: TOOLS)
    assert [(s["name"], s["title"]) for s in servers] == [("", "My Server"), ("gpu", "gpu")]
    default, gpu = ({t["key"]: t["href"] for t in s["tools"]} for s in servers)
    assert default["vscode"] == "spawn/ada.b?next=%2Fuser%2Fada.b%2Fvscode%2F"
    assert gpu["lab"] == "spawn/ada.b/gpu?next=%2Fuser%2Fada.b%2Fgpu%2Flab"
    assert launchers(None, lambda spawner: TOOLS) == []


def test_a_server_offers_the_tools_of_its_profiles_image(shared, db):
    """Only JupyterLab until the hub has looked inside the image; nothing for a profile out of reach."""
    ada = spawner_of(db, "ada")
    assert [t.key for t in ada.launch_tools()] == ["lab"]
    ada.user_options = {"profile": "roomy"}  # open to ds101 only
    assert ada.launch_tools() == ()
