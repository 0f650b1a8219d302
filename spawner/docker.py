"""The DockerSpawner subclass: the user's own uid, their pool folder, limits, hardening."""

from __future__ import annotations

import asyncio
from typing import Any

from dockerspawner import DockerSpawner
from traitlets import Dict, Instance, Integer, Unicode, default

from .datapool import Account, DataPool, escape_name

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


def user_volumes(account: Account) -> dict[str, dict[str, str]]:
    return {str(account.host_path): {"bind": HOME, "mode": "rw"}}


class DataPoolSpawner(DockerSpawner):
    """Runs each user's container as their own uid with their pool folder as home.

    The folder and uid come from :class:`~spawner.datapool.DataPool`; limits and
    hardening are applied on top of (and win over) operator ``extra_*`` config.
    """

    pool = Instance(DataPool, help="The data pool, set by jupyterhub_config.py.").tag(config=True)
    project = Unicode("dshub", help="Deployment name; value of the dshub.project label.").tag(config=True)
    pids_limit = Integer(512, help="Most processes in a user container.").tag(config=True)
    extra_labels = Dict(help="More labels for user containers.").tag(config=True)

    account = Instance(Account, allow_none=True)

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
        self.account = account
        self.volumes = user_volumes(account)
        # These two are derived, not operator config: a per-user uid and hardening
        # that config must not be able to weaken.
        self.extra_create_kwargs = {
            "user": f"{account.uid}:{account.gid}",
            "working_dir": HOME,
            "labels": {**self.extra_labels, **container_labels(self.project, self.user.name, self.name)},
        }
        self.extra_host_config = hardened_host_config(self.pids_limit)
        return await super().start()

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env["HOME"] = HOME
        return env
