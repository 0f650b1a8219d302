"""dshub's JupyterHub configuration: read settings, wire the parts together.

Every value comes from spawner.settings (validated, from .env); the logic lives in
the spawner package; spawner.layout says where compose mounts things.
"""

import logging
import sys

from spawner import culling, roster
from spawner import settings as dshub_settings
from spawner.auth import authenticator_config
from spawner.datapool import DataPool
from spawner.docker import DataPoolSpawner
from spawner.gpus import GpuAssignments
from spawner.layout import CONFIG_DIR, DATA_DIR, RULES_FILE, secrets_dir
from spawner.names import ControlFreeLogRecord
from spawner.profiles import PROFILES_FILE_NAME, Defaults, ProfileError, ProfilesFile
from spawner.proxy import DshubTraefikProxy, sign_in_rate_limit
from spawner.secrets import ensure_secret
from spawner.sharing import HANDLERS as SHARING_HANDLERS
from spawner.sharing import TEMPLATES
from spawner.sharing import USER_ROLE as SHARING_USER_ROLE

SECRETS_DIR = secrets_dir()
# Names in log lines come from users: no control characters, no forged lines.
logging.setLogRecordFactory(ControlFreeLogRecord)

try:
    settings = dshub_settings.load()
    profiles = ProfilesFile(CONFIG_DIR / PROFILES_FILE_NAME, Defaults.from_settings(settings))
except (dshub_settings.SettingsError, ProfileError) as error:
    sys.exit(f"dshub: {error}")

c = get_config()  # noqa: F821 -- provided by JupyterHub when it loads this file

# -- hub --------------------------------------------------------------------
c.JupyterHub.log_level = settings.log_level
c.JupyterHub.db_url = f"sqlite:///{DATA_DIR}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret = bytes.fromhex(ensure_secret(SECRETS_DIR, "cookie-secret"))
c.CryptKeeper.keys = [bytes.fromhex(ensure_secret(SECRETS_DIR, "crypt-key"))]
c.JupyterHub.bind_url = "http://:8000"
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = "http://hub:8081"
if settings.public_url.startswith("https://"):
    # Served over https: every cookie of the hub and of the user servers is Secure
    # (servers set theirs from JUPYTERHUB_PUBLIC_URL and HubOAuth.cookie_options).
    c.JupyterHub.public_url = settings.public_url
    c.JupyterHub.tornado_settings = {"cookie_options": {"secure": True}}
    c.DataPoolSpawner.args = ["--HubOAuth.cookie_options=secure=True"]
# Users survive the hub: their containers and routes outlive a hub restart.
c.JupyterHub.cleanup_servers = False

# -- edge proxy: Traefik in its own container -------------------------------
c.JupyterHub.proxy_class = DshubTraefikProxy
c.DshubTraefikProxy.should_start = False
c.DshubTraefikProxy.dynamic_config_file = RULES_FILE
c.DshubTraefikProxy.traefik_api_url = "http://proxy-api:8099"
c.DshubTraefikProxy.traefik_api_username = "jupyterhub"
c.DshubTraefikProxy.traefik_api_password = ensure_secret(SECRETS_DIR, "proxy-api-password")
c.DshubTraefikProxy.traefik_entrypoint = "http"
c.DshubTraefikProxy.extra_dynamic_config = sign_in_rate_limit(settings.signin_rate, "http", "http://hub:8081")

# -- pages: sharing a server with classmates (/hub/sharing, shared servers on home)
c.JupyterHub.template_paths = [str(TEMPLATES)]
c.JupyterHub.extra_handlers = SHARING_HANDLERS

# -- roles: users share their servers; the roster tool (make roster / make archive)
# and the idle culler are services with only the scopes they need
services = [
    roster.hub_service(SECRETS_DIR),
    culling.hub_service(settings.cull_idle_timeout, settings.cull_max_age),
]
c.JupyterHub.services = [service for service, _ in filter(None, services)]
c.JupyterHub.load_roles = [SHARING_USER_ROLE, *(role for _, role in filter(None, services))]

# -- sign-in ----------------------------------------------------------------
auth = authenticator_config(settings, DATA_DIR)
c.JupyterHub.authenticator_class = auth.cls
c[auth.cls.__name__].update(auth.traits)
c.DataPoolSpawner.update(auth.spawner_traits)

# -- user servers: image and limits come from the profile the user chose -----
c.JupyterHub.spawner_class = DataPoolSpawner
c.DataPoolSpawner.pool = DataPool.from_settings(settings)
c.DataPoolSpawner.profiles = profiles
c.DataPoolSpawner.gpu_assignments = GpuAssignments()
c.DataPoolSpawner.group_folders = list(settings.group_folders)
c.DataPoolSpawner.instructors_group = settings.instructors_group
c.DataPoolSpawner.project = settings.project
c.DataPoolSpawner.prefix = f"{settings.project}-user"
c.DataPoolSpawner.pull_policy = "never"  # images are built locally by `make build`
c.DataPoolSpawner.network_name = settings.network
c.DataPoolSpawner.use_internal_ip = True
c.DataPoolSpawner.cull_idle_timeout = settings.cull_idle_timeout
c.DataPoolSpawner.start_timeout = settings.start_timeout
c.DataPoolSpawner.http_timeout = settings.start_timeout
c.Spawner.default_url = "/lab"

# -- named servers (e.g. a CPU and a GPU server side by side) ----------------
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = lambda handler: profiles.current().servers_per_user
