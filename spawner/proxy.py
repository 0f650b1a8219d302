"""Traefik in its own container, fed by the hub through the file provider.

Traefik runs as an unprivileged user in its container and must be able to read
the rules file the hub (root) writes. jupyterhub-traefik-proxy writes it through
a 0600 temporary file; this writes it 0644 from the start, so Traefik never sees
a file it cannot read.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
from jupyterhub_traefik_proxy.traefik_utils import TraefikConfigFileHandler
from traitlets import default, observe

RULES_MODE = 0o644


class ReadableRulesFileHandler(TraefikConfigFileHandler):
    def atomic_dump(self, data: Any) -> None:
        directory, base = os.path.split(os.path.abspath(self.file_path))
        # The name must not end in .toml/.yaml, or Traefik would load a half-written file.
        fd, tmp = tempfile.mkstemp(prefix=f".{base}-", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, RULES_MODE)
            with os.fdopen(fd, "w") as f:
                self._dump(data, f)
            os.replace(tmp, self.file_path)
        except BaseException:
            os.unlink(tmp)
            raise


class DshubTraefikProxy(TraefikFileProviderProxy):
    """TraefikFileProviderProxy for an external Traefik that runs unprivileged."""

    @default("dynamic_config_handler")
    def _default_handler(self) -> ReadableRulesFileHandler:
        return ReadableRulesFileHandler(self.dynamic_config_file)

    @observe("dynamic_config_file")
    def _set_dynamic_config_file(self, change: Any) -> None:
        self.dynamic_config_handler = ReadableRulesFileHandler(change.new)
