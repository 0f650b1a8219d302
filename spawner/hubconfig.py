"""The hub's JupyterHub configuration, made from validated settings.

``jupyterhub_config.py`` is the table of contents: it loads the settings and
profiles and calls these functions in order. Each one only sets traits on the
config object it is given, so a unit test runs it on a bare traitlets
``Config()`` and reads what the hub would get; :func:`start` does what needs the
hub's own process (threads, state shared by all spawners).
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyterhub_traefik_proxy.traefik_utils import deep_merge
from traitlets.config import Config

from spawner.auth.configure import authenticator_config
from spawner.cli import roster
from spawner.config.layout import DATA_DIR, QUOTA_DIR, RULES_FILE
from spawner.config.profiles import ProfilesFile
from spawner.config.secrets import ensure_secret
from spawner.config.settings import Settings
from spawner.core.constants import HUB_API_PORT
from spawner.hub import culling, edge, metrics
from spawner.hub.proxy import (
    DshubTraefikProxy,
    hub_pages_only_on_hub_host,
    sign_in_rules,
    user_subdomain,
)
from spawner.hub.sharing import HANDLERS as SHARING_HANDLERS
from spawner.hub.sharing import TEMPLATES
from spawner.hub.sharing import USER_ROLE as SHARING_USER_ROLE
from spawner.pool.datapool import DataPool
from spawner.pool.disk import LimitsFile
from spawner.spawn.docker import HOME, DataPoolSpawner, HubShared, SwarmDataPoolSpawner
from spawner.spawn.tools import ImageTools, launchers


def hub(c: Config, settings: Settings, secrets: Path) -> None:
    """The hub process: its database, secrets, addresses and cookies."""
    c.JupyterHub.log_level = settings.log_level
    c.JupyterHub.db_url = f"sqlite:///{DATA_DIR}/jupyterhub.sqlite"
    c.JupyterHub.cookie_secret = bytes.fromhex(ensure_secret(secrets, "cookie-secret"))
    c.CryptKeeper.keys = [bytes.fromhex(ensure_secret(secrets, "crypt-key"))]
    c.JupyterHub.bind_url = "http://:8000"
    c.JupyterHub.hub_bind_url = f"http://0.0.0.0:{HUB_API_PORT}"
    c.JupyterHub.hub_connect_url = f"http://hub:{HUB_API_PORT}"
    if settings.public_url.startswith("https://"):
        # Served over https: every cookie of the hub and of the user servers is Secure
        # (servers set theirs from JUPYTERHUB_PUBLIC_URL and HubOAuth.cookie_options).
        c.JupyterHub.public_url = settings.public_url
        c.JupyterHub.tornado_settings = {"cookie_options": {"secure": True}}
        c.DataPoolSpawner.args = ["--HubOAuth.cookie_options=secure=True"]
    if settings.user_subdomains:
        # Each user's servers on a host of their own, the hub alone on its host: a page
        # a server serves runs in its visitors' browsers on that server's origin, never
        # on the hub's (docs/operating.md, Per-user origins).
        c.JupyterHub.subdomain_host = settings.subdomain_host
        c.JupyterHub.subdomain_hook = user_subdomain
        # __Host- cookies cannot be set from the users' hosts below the hub's; browsers
        # take them over https only.
        c.JupyterHub.cookie_host_prefix_enabled = settings.public_url.startswith("https://")
    # Users survive the hub: their containers and routes outlive a hub restart.
    c.JupyterHub.cleanup_servers = False
    if settings.mode == "swarm":
        # `make swarm-up` after `make build` is the upgrade: the new hub migrates the
        # database as it starts, after copying the SQLite file (docs/scale-out.md).
        c.JupyterHub.upgrade_db = True


def edge_proxy(c: Config, settings: Settings, secrets: Path) -> None:
    """Traefik in its own container, driven through its API and a rules file."""
    c.JupyterHub.proxy_class = DshubTraefikProxy
    c.DshubTraefikProxy.should_start = False
    c.DshubTraefikProxy.dynamic_config_file = RULES_FILE
    c.DshubTraefikProxy.traefik_api_url = "http://proxy-api:8099"
    c.DshubTraefikProxy.traefik_api_username = "jupyterhub"
    c.DshubTraefikProxy.traefik_api_password = ensure_secret(secrets, "proxy-api-password")
    # Every route on the entry point people reach: https with DSHUB_TLS on (spawner/hub/edge.py).
    entrypoint = edge.web_entrypoint(settings)
    c.DshubTraefikProxy.traefik_entrypoint = entrypoint
    rules = sign_in_rules(
        settings.signin_rate, entrypoint, f"http://hub:{HUB_API_PORT}", settings.trusted_proxies
    )
    if settings.user_subdomains:
        rules = deep_merge(rules, hub_pages_only_on_hub_host(settings.subdomain_host, entrypoint))
    c.DshubTraefikProxy.extra_dynamic_config = rules


def pages(c: Config) -> None:
    """The home page's tools for each server; sharing a server with classmates (/hub/sharing,
    and shared servers on the home page)."""
    c.JupyterHub.template_paths = [str(TEMPLATES)]
    c.JupyterHub.template_vars = {"launchers": lambda user: launchers(user, DataPoolSpawner.launch_tools)}
    c.JupyterHub.extra_handlers = SHARING_HANDLERS


def services(c: Config, settings: Settings, secrets: Path, metrics_dir: Path) -> None:
    """Roles: users share their servers; the roster tool (make roster / make archive),
    the metrics scraper (its token in ``metrics_dir``) and the idle culler are services
    with only the scopes they need."""
    wanted = [
        roster.hub_service(secrets),
        metrics.hub_service(metrics_dir),
        culling.hub_service(settings.cull_idle_timeout, settings.cull_max_age),
    ]
    present = [pair for pair in wanted if pair is not None]
    c.JupyterHub.services = [service for service, _ in present]
    c.JupyterHub.load_roles = [SHARING_USER_ROLE, *(role for _, role in present)]
    # Active users counted every minute, not hourly (one query of the users table).
    c.PeriodicMetricsCollector.active_users_update_interval = 60


def sign_in(c: Config, settings: Settings) -> None:
    """The authenticator DSHUB_AUTHENTICATOR names, with what its spawners need."""
    auth = authenticator_config(settings, DATA_DIR)
    c.JupyterHub.authenticator_class = auth.cls
    c[auth.cls.__name__].update(auth.traits)
    c.DataPoolSpawner.update(auth.spawner_traits)


def user_servers(c: Config, settings: Settings, profiles: ProfilesFile) -> None:
    """Each user's servers: image and limits from the profile they chose, files from the pool."""
    # DSHUB_MODE=swarm: the same servers as swarm services, on any node (spawner/cli/swarmstack.py).
    c.JupyterHub.spawner_class = SwarmDataPoolSpawner if settings.mode == "swarm" else DataPoolSpawner
    c.SwarmDataPoolSpawner.network_policy = settings.network_policy
    c.DataPoolSpawner.group_folders = list(settings.group_folders)
    c.DataPoolSpawner.instructors_group = settings.instructors_group
    c.DataPoolSpawner.project = settings.project
    c.DataPoolSpawner.prefix = f"{settings.project}-user"
    c.DataPoolSpawner.pull_policy = "never"  # images are built locally by `make build`
    c.DataPoolSpawner.network_name = settings.network
    c.DataPoolSpawner.use_internal_ip = True
    c.DataPoolSpawner.cull_idle_timeout = settings.cull_idle_timeout
    c.DataPoolSpawner.server_start_timeout = settings.start_timeout
    c.DataPoolSpawner.http_timeout = settings.start_timeout
    c.DataPoolSpawner.start_concurrency = start_concurrency(settings)
    c.DataPoolSpawner.start_queue_timeout = settings.start_queue_timeout
    # JupyterHub's own limit (100 by default) refuses starts past it with 429; the start
    # line above is the limit, and a class larger than 100 waits in it.
    c.JupyterHub.concurrent_spawn_limit = 0
    c.DataPoolSpawner.disk_warn_percent = settings.disk_quota_warn
    c.DataPoolSpawner.disk_refuse_percent = settings.disk_quota_refuse
    c.Spawner.default_url = "/lab"

    # User servers load only the image's configuration and extensions. A file in a
    # home (a stray config, an extension from `pip install --user`) can neither break
    # a server nor change how it treats those who open it: a classmate it is shared
    # with, an admin (docs/operating.md). JupyterHub's switch takes the home out of
    # the server's config files and Jupyter's data path (labextensions); JupyterLab
    # reads labconfig (page_config.json) from the config dir by another way, so that
    # is /dev/null: it holds nothing and takes no writes, and jupyter_core's config
    # migration, which would try to create a missing one at every start, gives up on
    # it. JupyterLab's settings and workspaces (UI preferences) stay where they were.
    c.DataPoolSpawner.disable_user_config = True
    c.DataPoolSpawner.environment = {
        "JUPYTER_CONFIG_DIR": "/dev/null",
        "JUPYTERLAB_SETTINGS_DIR": f"{HOME}/.jupyter/lab/user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": f"{HOME}/.jupyter/lab/workspaces",
        # images/datascience/dshub-code-server reads it.
        "DSHUB_VSCODE_AI": "true" if settings.vscode_ai else "false",
    }

    # Named servers (e.g. a CPU and a GPU server side by side), as many as profiles.yaml allows.
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = lambda handler: profiles.current().servers_per_user


def start_concurrency(settings: Settings) -> int:
    """DSHUB_START_CONCURRENCY, auto worked out: twice this machine's cores, or no limit for a swarm."""
    if settings.start_concurrency is not None:
        return settings.start_concurrency
    # A server's start is mostly CPU (Python importing Jupyter); two per core keep the
    # cores busy while a start waits on the engine or the edge (BENCHMARKS.md, Login storm).
    return 0 if settings.mode == "swarm" else 2 * len(os.sched_getaffinity(0))


def start(settings: Settings, profiles: ProfilesFile) -> None:
    """In the hub's process only: what all spawners share, and the hub's watcher threads."""
    DataPoolSpawner.share(
        HubShared(
            pool=DataPool.from_settings(settings),
            profiles=profiles,
            # Counted at every start where a quota applies; a hard limit with the quota service.
            quota_limits=LimitsFile(QUOTA_DIR) if settings.disk_quota_enforce == "project" else None,
            image_tools=ImageTools(settings.project),
        )
    )
    # The home page offers the tools each profile's image has.
    DataPoolSpawner.shared.image_tools.keep_fresh(lambda: {p.image for p in profiles.current().profiles})
    # /hub/metrics (read:metrics only) with each user server's CPU and memory.
    metrics.start_user_server_sampler(settings.project)
    if settings.tls == "files":
        edge.follow_operator_files(settings)
