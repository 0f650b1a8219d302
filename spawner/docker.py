"""The DockerSpawner subclass: the user's own uid, their pool folder, limits, hardening."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from dockerspawner import DockerSpawner
from traitlets import Instance, Integer, List, Unicode, default

from .datapool import Account, DataPool, escape_name
from .faststart import FastStart

HOME = "/home/jovyan"


def container_labels(project: str, username: str, server_name: str) -> dict[str, str]:
    """Labels that `make down`, `make clean` and the tests select user containers by."""
    return {
        "dshub.project": project,
        "dshub.role": "user-server",
        "dshub.user": username,
        "dshub.server": server_name,
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
    volumes: dict[str, dict[str, str]]
    group_add: list[int]
    # Mount points the user replaced by a link or a file: not mounted.
    skipped: list[str]


def pool_mounts(
    pool: DataPool, account: Account, groups: list[str], group_folders: list[str], instructors: str
) -> Mounts:
    """Home, the user's group folders and the course's shared folder, with the gids they need.

    Runs in an executor: it creates folders in the pool.
    """
    folders = [pool.ensure_group(g) for g in sorted(groups) if wants_folder(g, group_folders)]
    instructor = instructors in groups
    instructors_gid = pool.ensure_group(instructors).gid
    shared = pool.ensure_shared(instructors_gid)
    wanted = {f"groups/{f.escaped}": f for f in folders}
    safe = set(pool.ensure_mountpoints(account, [*wanted, "shared"]))
    volumes = {str(account.host_path): {"bind": HOME, "mode": "rw"}}
    for relpath, folder in wanted.items():
        if relpath in safe:
            volumes[str(folder.host_path)] = {"bind": f"{HOME}/{relpath}", "mode": "rw"}
    if "shared" in safe:
        volumes[str(shared)] = {"bind": f"{HOME}/shared", "mode": "rw" if instructor else "ro"}
    gids = sorted({f.gid for f in folders} | ({instructors_gid} if instructor else set()))
    return Mounts(volumes, gids, sorted({*wanted, "shared"} - safe))


class DataPoolSpawner(FastStart, DockerSpawner):
    """Runs each user's container as their own uid with their pool folder as home.

    The folder and uid come from :class:`~spawner.datapool.DataPool`. The uid, the
    mounts, the labels and the hardening are derived at every start and replace
    ``extra_create_kwargs``/``extra_host_config``: config cannot weaken them.
    """

    pool = Instance(DataPool, help="The data pool, set by jupyterhub_config.py.").tag(config=True)
    project = Unicode("dshub", help="Deployment name; value of the dshub.project label.").tag(config=True)
    pids_limit = Integer(512, help="Most processes in a user container.").tag(config=True)
    group_folders = List(
        Unicode(), ["*"], help="Groups with a shared folder; '*' for all (DSHUB_GROUP_FOLDERS)."
    ).tag(config=True)
    instructors_group = Unicode("instructors", help="Group whose members may write the shared folder.").tag(
        config=True
    )

    @property
    def escaped_name(self) -> str:
        return escape_name(self.user.name)

    @default("remove")
    def _remove_default(self) -> bool:
        # The container is disposable; everything of the user's is in the pool.
        return True

    @default("notebook_dir")
    def _notebook_dir_default(self) -> str:
        return HOME

    async def start(self) -> Any:
        loop = asyncio.get_running_loop()
        account = await loop.run_in_executor(None, self.pool.ensure_user, self.user.name)
        self.log.info("Pool folder of %s: %s (uid %d)", self.user.name, account.host_path, account.uid)
        groups = [group.name for group in self.user.groups]
        mounts = await loop.run_in_executor(
            None, pool_mounts, self.pool, account, groups, list(self.group_folders), self.instructors_group
        )
        if mounts.skipped:
            self.log.warning(
                "Not mounting %s for %s: the user replaced the mount point in their folder by a "
                "link or a file; it is mounted again once they restore the directory",
                ", ".join(mounts.skipped),
                self.user.name,
            )
        self.volumes = mounts.volumes
        self.extra_create_kwargs = {
            "user": f"{account.uid}:{account.gid}",
            "working_dir": HOME,
            "labels": container_labels(self.project, self.user.name, self.name),
        }
        self.extra_host_config = {**hardened_host_config(self.pids_limit), "group_add": mounts.group_add}
        return await super().start()

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env["HOME"] = HOME
        return env
