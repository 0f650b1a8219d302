"""Names the parts of dshub agree on: its version, its labels, the hub's API port.

Each is written once here: compose, the stack file, the spawners, the services and
the operators' commands all select dshub's containers by these labels, and a
label spelled two ways would quietly select nothing.
"""

from __future__ import annotations

# The images' tag; the Makefile reads it from this line.
VERSION = "0.1.0"

# Labels on everything dshub starts (containers, services, networks, volumes).
PROJECT_LABEL = "dshub.project"
ROLE_LABEL = "dshub.role"
USER_LABEL = "dshub.user"
SERVER_LABEL = "dshub.server"
PROFILE_LABEL = "dshub.profile"
GPUS_LABEL = "dshub.gpus"
DISK_QUOTA_LABEL = "dshub.disk_quota"

# Values of ROLE_LABEL.
USER_SERVER_ROLE = "user-server"
HUB_ROLE = "hub"

# JupyterHub's own API and pages for the servers and services, inside the stack only.
HUB_API_PORT = 8081
# The culler and the roster run in the hub's container and call its API there.
HUB_API_URL_IN_HUB = f"http://127.0.0.1:{HUB_API_PORT}/hub/api"


def project_filter(project: str, role: str | None = None) -> list[str]:
    """The engine's label filter for one deployment's objects (of one role)."""
    labels = [f"{PROJECT_LABEL}={project}"]
    return [*labels, f"{ROLE_LABEL}={role}"] if role else labels
