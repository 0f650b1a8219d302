"""The DockerSpawner subclass: the user's own uid, their pool folder, profile, limits, hardening."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from docker.errors import APIError
from docker.types import (
    ContainerSpec,
    DeviceRequest,
    EndpointSpec,
    Mount,
    Placement,
    Resources,
    RestartPolicy,
    TaskTemplate,
)
from dockerspawner import DockerSpawner, SwarmSpawner
from tornado import web
from traitlets import Bool, Dict, Float, Instance, Integer, List, Unicode, default

from spawner.config.profiles import Profile, ProfileError, Profiles, ProfilesFile
from spawner.core.constants import (
    DISK_QUOTA_LABEL,
    GPUS_LABEL,
    PROFILE_LABEL,
    PROJECT_LABEL,
    ROLE_LABEL,
    SERVER_LABEL,
    USER_LABEL,
    USER_SERVER_ROLE,
)
from spawner.core.names import shown, username_problem
from spawner.hub.culling import check_interval
from spawner.pool.datapool import Account, DataPool, PoolError, escape_name
from spawner.pool.disk import LimitsFile, QuotaState, UsageMeter
from spawner.services.swarmpolicy import POLICED_ALIAS
from spawner.spawn.faststart import FastStart, StartFailed
from spawner.spawn.form import options_form, profile_from_form
from spawner.spawn.gpus import GpuAssignments, NoGpuFree
from spawner.spawn.tools import ImageTools, Tool

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
        PROJECT_LABEL: project,
        ROLE_LABEL: USER_SERVER_ROLE,
        USER_LABEL: username,
        SERVER_LABEL: server_name,
        PROFILE_LABEL: profile,
        GPUS_LABEL: ",".join(gpus),
        # Bytes; empty: no quota. make usage compares the folder with it.
        DISK_QUOTA_LABEL: str(disk_quota or ""),
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


class ServiceFailed(StartFailed):
    """Swarm mode: the server's task was refused or ended before it ran; the message says why."""


def vanished_folder(error: BaseException, pool: DataPool) -> str | None:
    """The folder an engine error says is missing as a bind source (pool-relative), if it says so."""
    if isinstance(error, APIError):
        said = str(error.explanation)
    elif isinstance(error, ServiceFailed):
        said = str(error)
    else:
        return None
    match = _MISSING_SOURCE.search(said)
    if match is None:
        return None
    path = Path(match[1])
    return str(path.relative_to(pool.host_root)) if path.is_relative_to(pool.host_root) else str(path)


@dataclass(frozen=True)
class ServerSpec:
    """What makes a user's server theirs and safe, the same whatever runs it.

    Derived at every start from the pool, the profile and the user's groups; each
    mode turns it into its engine's terms (:meth:`DataPoolSpawner._apply_server_spec`
    for a container, :meth:`SwarmDataPoolSpawner.create_object` for a swarm service).
    """

    user: str  # "uid:gid"
    group_add: list[int]
    mounts: list[Mount]
    labels: dict[str, str]
    pids_limit: int
    gpus: int = 0
    # Single-host mode: the devices given; swarm mode: none (the swarm picks a node's).
    gpu_devices: tuple[str, ...] = ()
    gpu_driver: str = "nvidia"
    # Swarm placement constraints of the profile (node.labels.course == ds101).
    placement: tuple[str, ...] = ()


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
    image_tools: ImageTools = field(default_factory=ImageTools)


class DataPoolSpawner(FastStart, DockerSpawner):
    """Runs each user's container as their own uid with their pool folder as home.

    The folder and uid come from :class:`~spawner.pool.datapool.DataPool`; image and
    limits from the profile the user chose (:mod:`spawner.config.profiles`), checked
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
    server_spec = Instance(ServerSpec, allow_none=True, help="The server's uid, mounts, limits and labels.")

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

    def launch_tools(self) -> tuple[Tool, ...]:
        """The tools of the image this server starts with: its last profile, else the default."""
        try:
            profile = self.profiles.current().choose(self.user_options.get("profile"), self._group_names())
        except ProfileError:
            return ()
        return self._shared().image_tools.of(profile.image)

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
            # The quota service makes it the folder's hard limit (spawner/services/quota.py).
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
        gpu_devices: tuple[str, ...] = ()
        if profile.gpus:
            gpu_devices = self._assign_gpus(profile, profiles)
            if gpu_devices:
                self._progress(20, f"GPU(s) {', '.join(gpu_devices)} assigned")
        self.server_spec = ServerSpec(
            user=f"{account.uid}:{account.gid}",
            group_add=mounts.group_add,
            mounts=mounts.mounts,
            labels=container_labels(
                self.project,
                self.user.name,
                self.name,
                profile.name,
                gpu_devices,
                self.disk_state.quota if self.disk_state else None,
            ),
            pids_limit=self.pids_limit,
            gpus=profile.gpus,
            gpu_devices=gpu_devices,
            gpu_driver=profiles.gpu_driver,
            placement=profile.placement,
        )
        # No legacy binds at all, not even from config: they make a missing source as root.
        self.volumes = {}
        self._apply_server_spec(self.server_spec)
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

    def _told_place_in_line(self, ahead: int) -> None:
        place = f"{ahead} ahead of yours" if ahead else "yours is next"
        self._progress(
            30, f"Waiting for your turn: the hub starts {self.start_concurrency} at a time; {place}"
        )

    def _assign_gpus(self, profile: Profile, profiles: Profiles) -> tuple[str, ...]:
        """This host's GPU devices for the server, from the hub's ledger."""
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
        return tuple(devices)

    def _apply_server_spec(self, spec: ServerSpec) -> None:
        """The spec as a container's create arguments and host config.

        They replace ``extra_create_kwargs``/``extra_host_config`` from config:
        config cannot weaken them.
        """
        host_config: dict[str, Any] = {
            **hardened_host_config(spec.pids_limit),
            "group_add": spec.group_add,
            # Merged over DockerSpawner's own list, it replaces it: config adds no mount.
            "mounts": spec.mounts,
        }
        if spec.gpu_devices:
            host_config["device_requests"] = [
                DeviceRequest(
                    driver=spec.gpu_driver, device_ids=list(spec.gpu_devices), capabilities=[["gpu"]]
                )
            ]
        self.extra_create_kwargs = {"user": spec.user, "working_dir": HOME, "labels": spec.labels}
        self.extra_host_config = host_config

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


# A swarm task's states before its container runs (docker/swarmkit api/types.proto).
_TASK_STARTING = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
# Longest service name the swarm takes.
SERVICE_NAME_MAX = 63


def service_name(name: str) -> str:
    """``name`` cut to a service name's length, still one per server.

    A digest of the whole name ends a cut one, after a '_', which escaped names
    never hold: a cut name never equals another server's uncut one.
    """
    if len(name) <= SERVICE_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: SERVICE_NAME_MAX - 13]}_{digest}"


def service_resources(spec: ServerSpec, cpu_limit: float | None, mem_limit: int | None) -> Resources:
    """Limits of the server's task: CPU, memory, processes, and GPUs as the nodes advertise them."""
    resources = Resources(
        cpu_limit=int(cpu_limit * 1e9) if cpu_limit else None,
        mem_limit=mem_limit,
        # A node offers its GPUs as generic resources (docs/scale-out.md, GPUs).
        generic_resources={SWARM_GPU_RESOURCE: spec.gpus} if spec.gpus else None,
    )
    # docker-py has no argument for it; the engine's API has it since 1.41.
    resources.setdefault("Limits", {})["Pids"] = spec.pids_limit
    return resources


def task_address(task: dict[str, Any], network: str) -> str | None:
    """The task's address on ``network`` (its overlay), where Traefik and the hub reach it."""
    for attachment in task.get("NetworksAttachments") or ():
        if attachment.get("Network", {}).get("Spec", {}).get("Name") == network:
            addresses = attachment.get("Addresses") or ()
            return addresses[0].split("/")[0] if addresses else None
    return None


# The generic resource a node's GPUs are advertised as (dockerd's node-generic-resources).
SWARM_GPU_RESOURCE = "NVIDIA-GPU"
# Run before the image's entrypoint: nothing of the user's starts until the node's
# policy agent has put the server's firewall in place and marked its loopback
# interface, which it alone can (spawner/services/swarmpolicy.py).
POLICY_GATE = (
    "i=0; "
    f'until [ "$(cat /sys/class/net/lo/ifalias 2>/dev/null)" = {POLICED_ALIAS} ]; do '
    'i=$((i+1)); if [ "$i" -gt "$((DSHUB_POLICY_WAIT * 20))" ]; then '
    'echo "dshub: the network policy of this server was not in place within $DSHUB_POLICY_WAIT s: '
    "is the stack's netpolicy agent running on this node?\" >&2; exit 70; fi; "
    "sleep 0.05; done; "
    'exec "$@"'
)


def entrypoint_wrapper(entrypoint: list[str], policy: bool) -> list[str]:
    """The image's entrypoint behind no-new-privileges and (with the policy) the policy gate."""
    gate = ["/bin/sh", "-c", POLICY_GATE, "dshub-policy-gate"] if policy else []
    return ["setpriv", "--no-new-privs", "--", *gate, *entrypoint]


class SwarmDataPoolSpawner(DataPoolSpawner, SwarmSpawner):
    """Swarm mode (DSHUB_MODE=swarm): the same server as a one-task swarm service, on any node.

    Everything but the engine's terms comes from :class:`DataPoolSpawner`: uid,
    mounts, labels, limits and profile are the same :class:`ServerSpec`. What swarm
    mode changes:

    * the task never restarts by itself (``condition: none``): a server that ends,
      or whose node fails, is reported stopped, and the next start is placed anew;
    * the hub and Traefik reach the task's own address on the overlay (no virtual
      IP, so no load-balancer hop and no address spent per server);
    * no-new-privileges, which a service's spec cannot carry on engine API 1.41,
      is set by ``setpriv --no-new-privs`` in front of the image's entrypoint;
      the kernel keeps the flag across every exec that follows;
    * a task the swarm refuses or cannot place ends the start with the swarm's reason.
    """

    unplaceable_timeout = Float(
        10.0,
        help="Seconds a task may wait for a node that meets its profile's placement and resources "
        "before the start fails with the swarm's reason.",
    ).tag(config=True)

    task_id = Unicode("", help="The swarm task the server runs as (kept in the hub's state).")
    network_policy = Bool(
        True, help="DSHUB_NETWORK_POLICY: servers wait for their node's policy agent before they start."
    ).tag(config=True)
    policy_wait = Integer(
        30, help="Seconds a server waits for its node's policy agent before it gives up."
    ).tag(config=True)

    @default("object_name")
    def _object_name_default(self) -> str:
        return service_name(super()._object_name_default())

    def _assign_gpus(self, profile: Profile, profiles: Profiles) -> tuple[str, ...]:
        # The swarm gives a node's GPUs to the task; the hub's per-host ledger does not apply.
        return ()

    def _apply_server_spec(self, spec: ServerSpec) -> None:
        # create_object builds the service from the spec itself; nothing from config.
        self.extra_create_kwargs = {}

    async def create_object(self) -> dict[str, Any]:
        spec = self.server_spec
        assert spec is not None
        image = await self.docker("inspect_image", self.image)
        entrypoint = image["Config"].get("Entrypoint") or []
        container = ContainerSpec(
            image=self.image,
            command=entrypoint_wrapper(entrypoint, self.network_policy),
            args=await self.get_command(),
            env=self.get_env(),
            user=spec.user,
            groups=[str(gid) for gid in spec.group_add],
            workdir=HOME,
            labels=spec.labels,
            mounts=spec.mounts,
            cap_drop=["ALL"],
            init=False,  # the image runs tini itself
        )
        task = TaskTemplate(
            container_spec=container,
            resources=service_resources(spec, self.cpu_limit, self.mem_limit),
            restart_policy=RestartPolicy(condition="none"),
            placement=Placement(constraints=list(spec.placement) or None),
            networks=[self.network_name],
        )
        return await self.docker(
            "create_service",
            task_template=task,
            name=self.object_name,
            labels=spec.labels,
            endpoint_spec=EndpointSpec(mode="dnsrr"),
        )

    async def start(self) -> Any:
        try:
            return await super().start()
        except StartFailed:
            # Removed at once: JupyterHub stops only servers its poll() finds
            # running, and this one never ran or has ended.
            if self.object_id:
                await self.remove_object()
                self.object_id = ""
            raise

    async def start_object(self) -> None:
        """Wait until the task runs; a refused or ended task, or one no node can take, fails the start."""
        await self._wait_for_task()
        self._progress(70, "Container started; waiting for your server to answer")

    async def _wait_for_task(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        interval = 0.1
        said = ""
        while True:
            task = await self.get_task()
            status = (task or {}).get("Status", {})
            state = str(status.get("State", "new")).lower()
            if task and state == "running":
                self.task_id = task["ID"]
                break
            reason = status.get("Err") or status.get("Message") or state
            if state not in _TASK_STARTING:
                raise ServiceFailed(await self._task_ended(state, reason))
            waited = loop.time() - began
            if state == "pending" and status.get("Err") and waited > self.unplaceable_timeout:
                raise ServiceFailed(f"No node of the swarm can run your server: {status['Err']}")
            if reason != said:
                said = reason
                node = f" on node {task['NodeID'][:12]}" if task and task.get("NodeID") else ""
                self._progress(50, f"Your server's task is {state}{node}")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 1.0)

    async def start_failure(self) -> str | None:
        task = await self.get_task()
        status = (task or {}).get("Status", {})
        state = str(status.get("State", "gone")).lower()
        if task and (state == "running" or state in _TASK_STARTING):
            return None
        return await self._task_ended(state, status.get("Err") or status.get("Message") or state)

    async def _task_ended(self, state: str, reason: str) -> str:
        """What the user is told of a task that ended: the swarm's reason and the server's last words."""
        said = f"Your server could not start on the swarm ({state}): {reason}"
        last = await asyncio.get_running_loop().run_in_executor(self.executor, self._last_log_line)
        return f"{said}. It said: {last}" if last else said

    def _last_log_line(self) -> str:
        """The last line the task wrote, cut and without control characters (from the node, via the swarm)."""
        try:
            chunks = self.client.service_logs(self.object_id, stdout=True, stderr=True, tail=5)
            text = b"".join(chunks).decode("utf-8", "replace")
        except (APIError, OSError):
            return ""
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            return ""
        return "".join(ch for ch in lines[-1] if ch.isprintable())[:300]

    async def poll(self) -> int | str | None:
        """Running only while the task that started is: a task the swarm put in its place
        (its node drained or lost) has another address and is reported stopped."""
        task = await self.get_task()
        if task is None:
            return 0
        status = task.get("Status", {})
        state = str(status.get("State", "")).lower()
        if self.task_id and task["ID"] != self.task_id:
            return f"moved by the swarm to task {task['ID'][:12]} ({state})"
        if state == "running" or state in _TASK_STARTING:
            return None
        return f"task {state}: {status.get('Err') or status.get('Message', '')}"

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.object_id and self.task_id:
            state["task_id"] = self.task_id
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.task_id = state.get("task_id", "")

    def clear_state(self) -> None:
        super().clear_state()
        self.task_id = ""

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self.network_policy:
            env["DSHUB_POLICY_WAIT"] = str(self.policy_wait)
        return env

    async def get_ip_and_port(self) -> tuple[str, int]:
        task = await self.get_task()
        address = task_address(task or {}, self.network_name)
        if address is None:
            raise ServiceFailed(f"Your server's task has no address on {self.network_name}.")
        return address, self.port
