"""Sharing a running server with classmates: the hub page on top of JupyterHub's sharing API.

JupyterHub 6 can share servers (``/hub/api/shares``) but has no page to do it.
``/hub/sharing`` says what a share gives, lists who has access to your server,
shares it with a user or a group, and revokes; the hub home page lists the
servers shared with you.

A share lets the classmate act inside the owner's server as the owner. JupyterHub's
revoke only deletes the share: the hub then refuses the classmate's *new*
requests, but connections already open (kernels, terminals, co-editing, VS Code)
stay, processes they started keep running, and the server's API token, which they
can read from its environment, still opens the server. A restart ends all of that:
the container is removed with every process in it (``remove=True``), and the hub
deletes the server's API token and its OAuth client, and with it every sign-in
to the server.

So Revoke on the page is ``POST /hub/sharing/revoke/<owner>/<server>``
(:class:`RevokeHandler`): it revokes through JupyterHub's ORM, then restarts the
server with the hub's own stop and spawn, and answers once the restart is done,
so the page can tell the owner what happened. Other ways were weighed:

- Replacing JupyterHub's share API would make a revoke through the REST API end
  access too, but only the authenticator's handlers come before JupyterHub's own
  (``extra_handlers`` come after them and cannot override).
- A periodic check that restarts a server when one of its shares disappears would
  also catch the REST API and group membership changes, but it ends access a
  period late, restarts the server at a moment the owner neither chose nor sees,
  and has to remember what it saw across hub restarts.

A revoke through the REST API therefore refuses new requests only; docs/datapool.md
says how to end open connections then (restart the server, or use this endpoint,
which takes an API token too).
"""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

from docker.errors import NotFound
from dockerspawner import DockerSpawner
from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers import BaseHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.user import User
from tornado import web

from spawner.auth.oauth import pass_access_token

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Users may share their own servers and look up who to share with by name.
USER_ROLE = {
    "name": "user",
    "scopes": ["self", "shares!user", "read:users:name", "read:groups:name"],
}


class SharingHandler(BaseHandler):
    @web.authenticated
    async def get(self) -> None:
        user = self.current_user
        spawner = user.spawner
        html = await self.render_template(
            "sharing.html",
            user=user,
            # Sharing a server that holds more than a student's power is confirmed first.
            admin=user.admin,
            instructor=any(group.name == spawner.instructors_group for group in user.groups),
            provider_token=spawner.auth_state_hook is pass_access_token,
            # Without per-user origins, pages of a server run in the browser on the hub's origin.
            servers_on_hub_origin=not self.subdomain_host,
        )
        self.finish(html)


# Seconds a stopped server's container may take to be removed before it starts again.
REMOVAL_WAIT = 10


class Restart(StrEnum):
    """What a revoke did to the owner's server, for the page to tell the owner."""

    DONE = "restarted"
    UNDER_WAY = "restarting"
    # Stopped, starting or stopping: no connection of the classmate's is open.
    NOT_RUNNING = "not running"
    # Stopped, but it did not start again (e.g. its profile was withdrawn).
    STOPPED = "stopped"


def share_target(body: Any) -> tuple[str, str]:
    """The one user or group a revoke names, from ``{"user": name}`` or ``{"group": name}``."""
    if isinstance(body, dict) and len(body) == 1:
        ((kind, name),) = body.items()
        if kind in ("user", "group") and isinstance(name, str) and name:
            return kind, name
    raise web.HTTPError(400, 'Send {"user": "<name>"} or {"group": "<name>"}')


class RevokeHandler(APIHandler):
    """``POST /hub/sharing/revoke/<owner>/<server>``: revoke a share and restart the server."""

    @needs_scope("shares")
    async def post(self, user_name: str, server_name: str) -> None:
        # Restarting stops and starts the server: only for who may do that anyway.
        if not self.has_scope(f"servers!server={user_name}/{server_name}"):
            raise web.HTTPError(403, "Revoking here restarts the server: that needs permission to stop it")
        kind, name = share_target(self.get_json_body())
        owner = self.find_user(user_name)
        orm_spawner = owner.orm_spawners.get(server_name) if owner else None
        if owner is None or orm_spawner is None:
            raise web.HTTPError(404, f"No such server: {user_name}/{server_name}")
        if kind == "user":
            found = self.find_user(name)
            share_with = found.orm_user if found else None
        else:
            share_with = orm.Group.find(self.db, name=name)
        if share_with is None or orm.Share.find(self.db, orm_spawner, share_with=share_with) is None:
            raise web.HTTPError(404, f"The server is not shared with {kind} {name}")
        orm.Share.revoke(self.db, orm_spawner, share_with)
        restart = await self._end_open_access(owner, server_name)
        self.finish(json.dumps({"server": restart.value}))

    async def _end_open_access(self, owner: User, server_name: str) -> Restart:
        spawner = owner.spawners[server_name]
        if not spawner.ready:
            return Restart.NOT_RUNNING
        container = spawner.object_id
        await (await self.stop_single_user(owner, server_name))
        # The hub counts a server as stopped even when stopping failed (it logs why);
        # only a container with nothing running in it ends what the classmate started.
        lingering = await lingering_container(spawner, container)
        if lingering and lingering["Running"]:
            raise web.HTTPError(
                500,
                "Access is revoked for new requests, but the server's container could not be stopped, "
                "so connections already open stay: stop the server from the home page.",
            )
        try:
            await self.spawn_single_user(owner, server_name)
        except Exception as error:
            self.log.warning(
                "Server %s/%s did not start again after a revoke: %s", owner.name, server_name, error
            )
            return Restart.STOPPED
        return Restart.DONE if spawner.ready else Restart.UNDER_WAY


async def lingering_container(spawner: DockerSpawner, container: str) -> dict[str, Any] | None:
    """The state of a stopped server's container if it is still there after REMOVAL_WAIT, else None.

    The engine removes a stopped container a moment later (DockerSpawner sets
    auto_remove); starting again before that fails, as the name is still taken.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REMOVAL_WAIT
    while True:
        try:
            info = await spawner.docker("inspect_container", container)
        except NotFound:
            return None
        if loop.time() > deadline:
            return info["State"]
        await asyncio.sleep(0.1)


HANDLERS = [
    (r"/sharing", SharingHandler),
    (r"/sharing/revoke/([^/]+)/([^/]*)", RevokeHandler),
]
