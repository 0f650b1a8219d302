"""jupyterhub-deploy-docker's jupyterhub_config.py, as the bench's baseline.

Deviations, each needed to run it side by side with dshub on one engine:
container names and labels carry the bench project (so the bench removes exactly
what it made); no per-user volume (nothing to clean up, no effect on start time);
FirstUseAuthenticator instead of NativeAuthenticator (whose sign-in fails on
JupyterHub 6: 'LoginHandler' object has no attribute 'statsd'; both check a bcrypt
hash on the event loop); the bench's token is
an admin service's; the limits on a start (start_timeout, http_timeout) are the
measure's to set (the storm gives it dshub's).
"""

import os

c = get_config()  # noqa: F821 -- provided by JupyterHub

project = os.environ["BENCH_PROJECT"]

c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = os.environ["DOCKER_NOTEBOOK_IMAGE"]
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.network_name = os.environ["DOCKER_NETWORK_NAME"]
c.DockerSpawner.remove = True
c.DockerSpawner.debug = True
c.DockerSpawner.prefix = f"{project}-user"
c.DockerSpawner.extra_create_kwargs = {"labels": {"dshub.project": project, "dshub.role": "user-server"}}
c.DockerSpawner.pull_policy = "never"

c.JupyterHub.hub_ip = "0.0.0.0"  # noqa: S104 -- user containers reach it on the bench network
c.JupyterHub.hub_connect_ip = "hub"
c.JupyterHub.hub_port = 8080
c.JupyterHub.db_url = "sqlite:////data/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/data/jupyterhub_cookie_secret"  # noqa: S105 -- a path

c.JupyterHub.authenticator_class = "firstuseauthenticator.FirstUseAuthenticator"
c.FirstUseAuthenticator.create_users = True
c.FirstUseAuthenticator.dbm_path = "/data/passwords.dbm"
c.Authenticator.admin_users = {"admin"}
c.Authenticator.allow_all = True

c.JupyterHub.services = [{"name": "bench", "api_token": os.environ["BENCH_TOKEN"]}]
c.JupyterHub.load_roles = [
    {
        "name": "bench",
        "scopes": ["admin:users", "admin:servers", "access:servers", "tokens"],
        "services": ["bench"],
    }
]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = int(os.environ["BENCH_START_TIMEOUT"])
c.Spawner.http_timeout = int(os.environ["BENCH_HTTP_TIMEOUT"])
