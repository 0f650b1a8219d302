"""Where compose/compose.yaml mounts things in the hub container."""

from pathlib import Path

DATA_DIR = Path("/srv/dshub/data")  # volume: database, password db, secrets
POOL_DIR = Path("/srv/dshub/pool")  # the host pool, bind-mounted
CONFIG_DIR = Path("/srv/dshub/config")  # DSHUB_CONFIG_DIR, read-only: profiles.yaml
RULES_FILE = "/srv/dshub/proxy-rules/rules.toml"  # volume shared with Traefik
METRICS_DIR = Path("/srv/dshub/metrics")  # volume shared with Prometheus: its scrape token
QUOTA_DIR = Path("/srv/dshub/quota")  # volume shared with the quota service: users' disk quotas


def secrets_dir(data_dir: Path = DATA_DIR) -> Path:
    return data_dir / "secrets"


def initial_passwords_dir(data_dir: Path = DATA_DIR) -> Path:
    """One 0600 file per user whose one-time initial password is still unused."""
    return secrets_dir(data_dir) / "initial-passwords"
