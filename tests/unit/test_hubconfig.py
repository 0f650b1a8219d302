"""The hub's configuration, made on a bare traitlets Config from settings, as the hub gets it."""

import os
from pathlib import Path

import pytest
from jupyterhub.app import JupyterHub
from jupyterhub.crypto import CryptKeeper
from jupyterhub.metrics import PeriodicMetricsCollector
from jupyterhub.spawner import Spawner
from traitlets.config import Config

from spawner import hubconfig
from spawner.config import settings as dshub_settings
from spawner.config.profiles import Defaults, ProfilesFile
from spawner.hub.proxy import DshubTraefikProxy
from spawner.spawn.docker import DataPoolSpawner, SwarmDataPoolSpawner

OIDC = {
    "DSHUB_AUTHENTICATOR": "generic",
    "DSHUB_OIDC_ISSUER": "https://idp.example.edu/realms/class",
    "DSHUB_OAUTH_CLIENT_ID": "dshub",
    "DSHUB_OAUTH_CLIENT_SECRET": "not-a-real-secret",
}


def configured(tmp_path: Path, **env: str) -> Config:
    settings = dshub_settings.load(env)
    profiles = ProfilesFile(tmp_path / "profiles.yaml", Defaults.from_settings(settings))
    c = Config()
    hubconfig.hub(c, settings, tmp_path / "secrets")
    hubconfig.edge_proxy(c, settings, tmp_path / "secrets")
    hubconfig.pages(c)
    hubconfig.services(c, settings, tmp_path / "secrets", tmp_path / "metrics")
    hubconfig.sign_in(c, settings)
    hubconfig.user_servers(c, settings, profiles)
    return c


@pytest.mark.parametrize(
    "env",
    [{}, {"DSHUB_MODE": "swarm"}, OIDC, {"DSHUB_TLS": "self-signed", "DSHUB_CULL_IDLE_TIMEOUT": "0"}],
    ids=["defaults", "swarm", "oidc", "https-no-culler"],
)
def test_every_trait_set_is_one_its_class_has(tmp_path, env):
    """A misspelt trait is only a warning in the hub's log, and the setting silently does nothing."""
    c = configured(tmp_path, **env)
    authenticator = c.JupyterHub.authenticator_class
    classes = {
        cls.__name__: cls
        for cls in (
            JupyterHub,
            CryptKeeper,
            PeriodicMetricsCollector,
            Spawner,
            DataPoolSpawner,
            SwarmDataPoolSpawner,
            DshubTraefikProxy,
            authenticator,
        )
    }
    assert set(c) <= set(classes), f"sections of no known class: {set(c) - set(classes)}"
    for section, values in c.items():
        traits = classes[section].class_traits(config=True)
        assert set(values) <= set(traits), f"{section}: no such traits {set(values) - set(traits)}"


def test_the_hub_listens_inside_the_stack_and_keeps_servers_across_restarts(tmp_path):
    c = configured(tmp_path)
    assert c.JupyterHub.hub_bind_url == "http://0.0.0.0:8081"
    assert c.JupyterHub.hub_connect_url == "http://hub:8081"
    assert c.JupyterHub.cleanup_servers is False
    assert c.JupyterHub.spawner_class is DataPoolSpawner
    assert "upgrade_db" not in c.JupyterHub
    # Secrets are made on first start, where the hub keeps them, and reused after.
    assert c.JupyterHub.cookie_secret == configured(tmp_path).JupyterHub.cookie_secret
    assert len(c.JupyterHub.cookie_secret) == 32


def test_swarm_mode_starts_services_and_migrates_its_database(tmp_path):
    c = configured(tmp_path, DSHUB_MODE="swarm")
    assert c.JupyterHub.spawner_class is SwarmDataPoolSpawner
    assert c.JupyterHub.upgrade_db is True


def test_https_makes_every_cookie_secure(tmp_path):
    c = configured(tmp_path, DSHUB_TLS="self-signed")
    assert c.JupyterHub.public_url == "https://127.0.0.1:8443"
    assert c.JupyterHub.tornado_settings == {"cookie_options": {"secure": True}}
    assert c.DataPoolSpawner.args == ["--HubOAuth.cookie_options=secure=True"]
    assert c.DshubTraefikProxy.traefik_entrypoint == "https"
    assert "public_url" not in configured(tmp_path).JupyterHub


def test_services_have_only_their_scopes_and_the_culler_only_when_culling(tmp_path):
    c = configured(tmp_path)
    assert [s["name"] for s in c.JupyterHub.services] == ["dshub-roster", "dshub-metrics", "idle-culler"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["dshub-metrics"]["scopes"] == ["read:metrics"]
    assert (tmp_path / "metrics").is_dir()
    off = configured(tmp_path, DSHUB_CULL_IDLE_TIMEOUT="0")
    assert [s["name"] for s in off.JupyterHub.services] == ["dshub-roster", "dshub-metrics"]
    assert "idle-culler" not in {r["name"] for r in off.JupyterHub.load_roles}


def test_user_servers_follow_the_settings_and_load_no_config_from_homes(tmp_path):
    c = configured(tmp_path, DSHUB_PROJECT="class1", DSHUB_START_TIMEOUT="90")
    assert c.DataPoolSpawner.prefix == "class1-user"
    assert c.DataPoolSpawner.network_name == "class1-users"
    assert (c.DataPoolSpawner.server_start_timeout, c.DataPoolSpawner.http_timeout) == (90, 90)
    assert c.DataPoolSpawner.start_concurrency == 2 * len(os.sched_getaffinity(0))
    assert c.DataPoolSpawner.start_queue_timeout == 600
    assert c.JupyterHub.concurrent_spawn_limit == 0, "the start line is the limit"
    assert c.DataPoolSpawner.pull_policy == "never"
    assert c.DataPoolSpawner.disable_user_config is True
    assert c.DataPoolSpawner.environment["JUPYTER_CONFIG_DIR"] == "/dev/null"
    assert c.JupyterHub.named_server_limit_per_user(None) == 2


def test_start_concurrency_auto_is_per_core_on_one_host_and_unlimited_on_a_swarm(tmp_path):
    assert configured(tmp_path, DSHUB_START_CONCURRENCY="3").DataPoolSpawner.start_concurrency == 3
    assert configured(tmp_path, DSHUB_START_CONCURRENCY="0").DataPoolSpawner.start_concurrency == 0
    assert hubconfig.start_concurrency(dshub_settings.load({"DSHUB_MODE": "swarm"})) == 0


def test_sign_in_uses_the_authenticator_the_settings_name(tmp_path):
    local = configured(tmp_path)
    assert local.JupyterHub.authenticator_class.__name__ in local
    oidc = configured(tmp_path, **OIDC)
    cls = oidc.JupyterHub.authenticator_class
    assert oidc[cls.__name__].client_id == "dshub"
    assert oidc[cls.__name__].oauth_callback_url == "http://127.0.0.1:8000/hub/oauth_callback"
