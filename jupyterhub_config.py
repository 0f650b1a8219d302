"""dshub's JupyterHub configuration: the table of contents.

The settings (validated, from .env) and the profiles are read here; each part of
the configuration is a function of spawner/hubconfig.py, in this order.
spawner/config/layout.py says where compose mounts things in this container.
"""

import logging
import sys

from spawner import hubconfig
from spawner.config import settings as dshub_settings
from spawner.config.layout import CONFIG_DIR, METRICS_DIR, secrets_dir
from spawner.config.profiles import PROFILES_FILE_NAME, Defaults, ProfileError, ProfilesFile
from spawner.core.names import ControlFreeLogRecord

# Names in log lines come from users: no control characters, no forged lines.
logging.setLogRecordFactory(ControlFreeLogRecord)

try:
    settings = dshub_settings.load()
    profiles = ProfilesFile(CONFIG_DIR / PROFILES_FILE_NAME, Defaults.from_settings(settings))
except (dshub_settings.SettingsError, ProfileError) as error:
    sys.exit(f"dshub: {error}")

c = get_config()  # noqa: F821 -- provided by JupyterHub when it loads this file
secrets = secrets_dir()

hubconfig.hub(c, settings, secrets)
hubconfig.edge_proxy(c, settings, secrets)
hubconfig.pages(c)
hubconfig.services(c, settings, secrets, METRICS_DIR)
hubconfig.sign_in(c, settings)
hubconfig.user_servers(c, settings, profiles)
hubconfig.start(settings, profiles)
