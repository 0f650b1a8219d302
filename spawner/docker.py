"""The DockerSpawner subclass: the user's own uid, their pool folder, profile, limits, hardening."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from docker.errors import APIError
from docker.types import DeviceRequest, Mount
from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Bool, Dict, Instance, Integer, List, Unicode, default

from .culling import check_interval
from .datapool import Account, DataPool, PoolError, escape_name
from .disk import LimitsFile, QuotaState, UsageMeter
from .faststart import FastStart
from .gpus import GpuAssignments, NoGpuFree
from .names import shown, username_problem
from .profiles import Profile, ProfileError, ProfilesFile, options_form, profile_from_form

HOME = "/home/jovyan"
# Group folders and course material are mounted outside the home, in the image's
# root-owned /srv: nothing the user can write decides where a mount goes.
GROUPS_DIR = "/srv/groups"
SHARED_DIR = "/srv/shared"
# The engine's answer, at create or at start, when a bind mount's source is missing.
_MISSING_SOURCE = re.compile(r"bind source path does not exist: (.+)")


def container_labels(
    project: str,
    username: str,
    server_name: str,
    profile: str,
    gpus: tuple[str, ...] = (),
    disk_quota: int | None = None,
) -> dict[str, str]:
    """Labels that `make down`, `make clean`, `make usage` and the tests select user containers by."""
    return {
        "dshub.project": project,
        "dshub.role": "user-server",
        "dshub.user": username,
        "dshub.server": server_name,
        "dshub.profile": profile,
        "dshub.gpus": ",".join(gpus),
        # Bytes; empty: no quota. make usage compares the folder with it.
        "dshub.disk_quota": str(disk_quota or ""),
    }


def disk_env(state: QuotaState) -> dict[str, str]:
    """What the server's JupyterLab needs to warn near the quota (images/lab/dshub_disk_notice.py)."""
    if state.quota is None:
        return {}
    return {
        "DSHUB_DISK_QUOTA": str(state.quota),
        "DSHUB_DISK_USED": str(state.usage.used),
        "DSHUB_DISK_WARN_PERCENT": str(state.warn_percent),
        "DSHUB_DISK_REFUSE_PERCENT": str(state.refuse_percent),
    }


def hardened_host_config(pids_limit: int) -> dict[str, Any]:
    """No capabilities, no privilege gain, bounded process count, no engine socket."""
    return {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": pids_limit,
        "init": False,  # the image runs tini itself
    }


def wants_folder(group: str, group_folders: list[str]) -> bool:
    return "*" in group_folders or group in group_folders


@dataclass(frozen=True)
class Mounts:
    """What a user's container mounts, and the gids it needs for them."""

    mounts: list[Mount]
    group_add: list[int]


def bind(source: Path, target: str, read_only: bool = False) -> Mount:
    # A bind Mount, unlike a legacy bind (`-v`, ``volumes``), makes the engine
    # refuse a missing source instead of creating it, as root.
    return Mount(target=target, source=str(source), type="bind", read_only=read_only)


def pool_mounts(
    pool: DataPool, account: Account, groups: list[str], group_folders: list[str], instructors: str
) -> Mounts:
    """Home, the user's group folders and the course's shared folder, with the gids they need.

    Derived from the user's hub groups and the pool alone, never from anything in
    the user's folder. Runs in an executor: it creates folders in the pool, and
    the links in the home that lead people to the mounts.
    """
    folders = [pool.ensure_group(g) for g in sorted(groups) if wants_folder(g, group_folders)]
    instructor = instructors in groups
    instructors_gid = pool.ensure_group(instructors).gid
    shared = pool.ensure_shared(instructors_gid)
    # Without a group folder /srv/groups does not exist in the container: no link to nowhere.
    pool.ensure_links(account, ({"groups": GROUPS_DIR} if folders else {}) | {"shared": SHARED_DIR})
    mounts = [
        bind(account.host_path, HOME),
        *(bind(f.host_path, f"{GROUPS_DIR}/{f.escaped}") for f in folders),
        bind(shared, SHARED_DIR, read_only=not instructor),
    ]
    gids = sorted({f.gid for f in folders} | ({instructors_gid} if instructor else set()))
    return Mounts(mounts, gids)


def vanished_folder(error: BaseException, pool: DataPool) -> str | None:
    """The folder an engine error says is missing as a bind source (pool-relative), if it says so."""
    if not isinstance(error, APIError):
        return None
    match = _MISSING_SOURCE.search(str(error.explanation))
    if match is None:
        return None
    path = Path(match[1])
    return str(path.relative_to(pool.host_root)) if path.is_relative_to(pool.host_root) else str(path)


@dataclass(frozen=True)
class HubShared:
    """What all of the hub's spawners hold together, each object once.

    Kept on the spawner class, as DockerSpawner keeps its engine client, not in
    traitlets config, which hands every spawner a deep copy of its values: two
    spawners with two copies of the pool's lock could give one uid twice.
    """

    pool: DataPool
    profiles: ProfilesFile
    gpu_assignments: GpuAssignments = field(default_factory=GpuAssignments)
    usage_meter: UsageMeter = field(default_factory=UsageMeter)
    # None: the quota service does not enforce limits (DSHUB_DISK_QUOTA_ENFORCE).
    quota_limits: LimitsFile | None = None


class DataPoolSpawner(FastStart, DockerSpawner):
    """Runs each user's container as their own uid with their pool folder as home.

    The folder and uid come from :class:`~spawner.datapool.DataPool`; image and
    limits from the profile the user chose (:mod:`spawner.profiles`), checked
    again here whatever the form or the API sent. The uid, the mounts, the
    labels and the hardening are derived at every start and replace
    ``extra_create_kwargs``/``extra_host_config``: config cannot weaken them.
    """

    # Set once by jupyterhub_config.py (share()); one for all spawners of the hub.
    shared: ClassVar[HubShared | None] = None

    project = Unicode("dshub", help="Deployment name; value of the dshub.project label.").tag(config=True)
    pids_limit = Integer(512, help="Most processes in a user container (the profile's pids).").tag(
        config=True
    )
    group_folders = List(
        Unicode(), ["*"], help="Groups with a shared folder; '*' for all (DSHUB_GROUP_FOLDERS)."
    ).tag(config=True)
    instructors_group = Unicode("instructors", help="Group whose members may write the shared folder.").tag(
        config=True
    )
    cull_idle_timeout = Integer(
        0, help="DSHUB_CULL_IDLE_TIMEOUT: sets how often servers report activity."
    ).tag(config=True)
    disk_warn_percent = Integer(90, help="DSHUB_DISK_QUOTA_WARN.").tag(config=True)
    disk_refuse_percent = Integer(110, help="DSHUB_DISK_QUOTA_REFUSE.").tag(config=True)

    chosen_profile = Instance(Profile, allow_none=True, help="The profile checked for the spawn under way.")
    profile_name = Unicode("", help="The running server's profile (kept in the hub's state).")
    gpu_devices = List(Unicode(), help="GPU device ids this server holds.")
    gpu_shared = Bool(False, help="Whether those GPUs may be given to other servers too.")
    progress_events = List(Dict(), help="Progress messages of the spawn under way.")
    disk_state = Instance(
        QuotaState, allow_none=True, help="The user's folder against their quota, at start."
    )

    @classmethod
    def share(cls, shared: HubShared) -> None:
        """What all spawners use together (jupyterhub_config.py calls this once)."""
        cls.shared = shared

    def _shared(self) -> HubShared:
        if self.shared is None:
            raise RuntimeError("DataPoolSpawner.share() was not called: jupyterhub_config.py does that")
        return self.shared

    @property
    def pool(self) -> DataPool:
        return self._shared().pool

    @property
    def profiles(self) -> ProfilesFile:
        return self._shared().profiles

    @property
    def gpu_assignments(self) -> GpuAssignments:
        return self._shared().gpu_assignments

    @property
    def usage_meter(self) -> UsageMeter:
        return self._shared().usage_meter

    @property
    def quota_limits(self) -> LimitsFile | None:
        return self._shared().quota_limits

    @property
    def escaped_name(self) -> str:
        return escape_name(self.user.name)

    @property
    def owner_key(self) -> str:
        return f"{self.user.name}/{self.name}"

    @default("remove")
    def _remove_default(self) -> bool:
        # The container is disposable; everything of the user's is in the pool.
        return True

    @default("notebook_dir")
    def _notebook_dir_default(self) -> str:
        return HOME

    # -- choosing a profile: the form, then the same check for form and API ----

    def _group_names(self) -> list[str]:
        return [group.name for group in self.user.groups]

    @default("options_form")
    def _options_form_default(self) -> Any:
        def form(spawner: DataPoolSpawner) -> str:
            available = spawner.profiles.current().open_to(spawner._group_names())
            return options_form(available, spawner.user_options.get("profile"))

        return form

    @default("options_from_form")
    def _options_from_form_default(self) -> Any:
        def from_form(formdata: dict[str, list[Any]], spawner: DataPoolSpawner) -> dict[str, str]:
            options = profile_from_form(formdata)
            # Refuse here too, so the form comes back with the reason instead of a failed spawn.
            spawner.profiles.current().choose(options["profile"], spawner._group_names())
            return options

        return from_form

    @default("apply_user_options")
    def _apply_user_options_default(self) -> Any:
        return DataPoolSpawner._apply_profile

    async def _apply_profile(self, user_options: dict[str, Any]) -> None:
        """Check the requested profile (from the form or the API) and take its image and limits."""
        self.progress_events = []
        unknown = sorted(str(k)[:40] for k in user_options if k != "profile")
        if unknown:
            self._forget_options()
            raise web.HTTPError(
                400, f"Unknown server option(s): {', '.join(unknown)}. Only 'profile' is accepted."
            )
        profiles = self.profiles.current()
        try:
            profile = profiles.choose(user_options.get("profile"), self._group_names())
        except ProfileError as e:
            self._forget_options()
            raise web.HTTPError(403, str(e)) from None
        running = [s for s in self.user.spawners.values() if s is not self and s.active]
        if len(running) >= profiles.servers_per_user:
            raise web.HTTPError(
                403,
                f"You may run at most {profiles.servers_per_user} server(s) at once: stop one first.",
            )
        quota = profiles.disk_quota(self._group_names())
        # Without a quota nothing is counted: a walk of the folder would only slow the start.
        self.disk_state = None if quota is None else await self._measure_against(quota)
        if self.disk_state is not None and self.disk_state.refused:
            self.log.warning(
                "Not starting a server for %s: %s", shown(self.user.name), self.disk_state.refusal()
            )
            raise web.HTTPError(403, self.disk_state.refusal())
        self._take_profile(profile)

    async def _measure_against(self, quota: int) -> QuotaState:
        meter = self.usage_meter
        usage = await asyncio.get_running_loop().run_in_executor(
            meter.executor, meter.measure, self.pool.user_path(self.user.name), quota
        )
        return QuotaState(usage, quota, self.disk_warn_percent, self.disk_refuse_percent)

    def _forget_options(self) -> None:
        # The hub stores options as the default for the next start before they are
        # checked; a refused (or since withdrawn) choice must not stick.
        self.orm_spawner.user_options = {}

    def _take_profile(self, profile: Profile) -> None:
        self.chosen_profile = profile
        self.profile_name = profile.name
        self.gpu_shared = profile.gpu_shared
        self.image = profile.image
        self.mem_limit = profile.mem_limit
        self.cpu_limit = profile.cpu
        self.pids_limit = profile.pids

    # -- progress shown on the hub's spawn-pending page -------------------------

    def _progress(self, percent: int, message: str) -> None:
        self.progress_events = [*self.progress_events, {"progress": percent, "message": message}]

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        sent = 0
        while True:  # the hub stops reading when the spawn ends
            events = self.progress_events
            for event in events[sent:]:
                yield event
            sent = len(events)
            await asyncio.sleep(0.5)

    # -- start and stop ----------------------------------------------------------

    async def start(self) -> Any:
        problem = username_problem(self.user.name)
        if problem:
            # A user named before the username rule existed: no container, no folder, no route.
            self.log.error("Not starting a server for %s: %s", shown(self.user.name), problem)
            raise web.HTTPError(403, f"This username breaks the username rule ({problem}): ask an admin.")
        profiles = self.profiles.current()
        if self.chosen_profile is None:
            # The hub always applies user options first; a direct start gets the default.
            self._take_profile(profiles.choose(None, self._group_names()))
        profile = self.chosen_profile
        assert profile is not None
        loop = asyncio.get_running_loop()
        self._progress(10, f"Preparing your folders (profile {profile.display_name}: {profile.summary()})")
        account = await loop.run_in_executor(None, self.pool.ensure_user, self.user.name)
        self.log.info("Pool folder of %s: %s (uid %d)", self.user.name, account.host_path, account.uid)
        disk = self.disk_state
        if disk is not None and disk.quota is not None:
            self._progress(15, disk.warning() if disk.warned else f"{disk.summary()}.")
        if self.quota_limits is not None:
            # The quota service makes it the folder's hard limit (spawner/quota.py).
            await loop.run_in_executor(
                None, self.quota_limits.set, account.path.name, disk.quota if disk else None
            )
        mounts = await loop.run_in_executor(
            None,
            pool_mounts,
            self.pool,
            account,
            self._group_names(),
            list(self.group_folders),
            self.instructors_group,
        )
        host_config: dict[str, Any] = {
            **hardened_host_config(self.pids_limit),
            "group_add": mounts.group_add,
            # Merged over DockerSpawner's own list, it replaces it: config adds no mount.
            "mounts": mounts.mounts,
        }
        if profile.gpus:
            try:
                devices = self.gpu_assignments.assign(
                    self.owner_key,
                    self.user.name,
                    profile.gpus,
                    profiles.gpu_devices,
                    shared=profile.gpu_shared,
                    user_limit=profiles.gpus_per_user,
                )
            except NoGpuFree as e:
                raise web.HTTPError(409, str(e)) from None
            self.gpu_devices = list(devices)
            host_config["device_requests"] = [
                DeviceRequest(driver=profiles.gpu_driver, device_ids=list(devices), capabilities=[["gpu"]])
            ]
            self._progress(20, f"GPU(s) {', '.join(devices)} assigned")
        # No legacy binds at all, not even from config: they make a missing source as root.
        self.volumes = {}
        self.extra_create_kwargs = {
            "user": f"{account.uid}:{account.gid}",
            "working_dir": HOME,
            "labels": container_labels(
                self.project,
                self.user.name,
                self.name,
                profile.name,
                tuple(self.gpu_devices),
                self.disk_state.quota if self.disk_state else None,
            ),
        }
        self.extra_host_config = host_config
        self._progress(40, f"Starting your container from {profile.image}")
        try:
            return await super().start()
        except BaseException as e:
            self._release_gpus()
            folder = vanished_folder(e, self.pool)
            if folder is not None:
                raise PoolError(
                    f"The folder {folder} of the data pool vanished while your server was starting, "
                    "so it was not mounted (a missing folder is never created in its place). "
                    "Start again; if this repeats, an admin must look at the pool."
                ) from e
            raise

    async def start_object(self) -> None:
        await super().start_object()
        self._progress(70, "Container started; waiting for your server to answer")

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        self._release_gpus()

    def _release_gpus(self) -> None:
        self.gpu_assignments.release(self.owner_key)
        self.gpu_devices = []

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.object_id:
            state["profile"] = self.profile_name
            state["gpus"] = list(self.gpu_devices)
            state["gpu_shared"] = self.gpu_shared
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.profile_name = state.get("profile", "")
        self.gpu_devices = list(state.get("gpus", []))
        self.gpu_shared = bool(state.get("gpu_shared", False))
        if self.gpu_devices:
            # After a hub restart: the running server keeps its GPUs and nobody else gets them.
            self.gpu_assignments.restore(
                self.owner_key, self.user.name, tuple(self.gpu_devices), shared=self.gpu_shared
            )

    def clear_state(self) -> None:
        super().clear_state()
        self.chosen_profile = None
        self.profile_name = ""
        self.disk_state = None

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env["HOME"] = HOME
        env["JUPYTERHUB_ACTIVITY_INTERVAL"] = str(check_interval(self.cull_idle_timeout))
        if self.disk_state is not None:
            env.update(disk_env(self.disk_state))
        return env
