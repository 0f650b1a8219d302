"""Sharing a running server with classmates: the hub page on top of JupyterHub's sharing API.

JupyterHub 6 can share servers (``/hub/api/shares``) but has no page to do it.
``/hub/sharing`` lists who has access to your server, shares it with a user or a
group, and revokes; the hub home page lists the servers shared with you.
"""

from __future__ import annotations

from pathlib import Path

from jupyterhub.handlers import BaseHandler
from tornado import web

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Users may share their own servers and look up who to share with by name.
USER_ROLE = {
    "name": "user",
    "scopes": ["self", "shares!user", "read:users:name", "read:groups:name"],
}


class SharingHandler(BaseHandler):
    @web.authenticated
    async def get(self) -> None:
        html = await self.render_template("sharing.html", user=self.current_user)
        self.finish(html)


HANDLERS = [(r"/sharing", SharingHandler)]
