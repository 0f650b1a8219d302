from pathlib import Path

import pytest

from spawner.cli import settings as settings_cli
from spawner.config import settings as s

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_valid_and_complete():
    loaded = s.load({})
    assert loaded.project == "dshub"
    assert loaded.bind_address == "127.0.0.1"
    assert loaded.http_port == 8000
    assert loaded.mem_limit == 2 * 2**30
    assert loaded.pool_dir == REPO / "data" / "pool"
    assert loaded.network == "dshub-users"
    assert set(loaded.as_env()) == {s.env_name(name) for name in s.Settings.model_fields}


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("DSHUB_HTTP_PORT", "8443", 8443),
        ("DSHUB_MEM_LIMIT", "512M", 512 * 2**20),
        ("DSHUB_MEM_LIMIT", "1g", 2**30),
        ("DSHUB_CPU_LIMIT", "0.5", 0.5),
        ("DSHUB_BIND_ADDRESS", "::1", "::1"),
        ("DSHUB_POOL_DIR", "/srv/pool", Path("/srv/pool")),
        ("DSHUB_ADMIN_USERS", "ada.lovelace@uni.example, bob", ("ada.lovelace@uni.example", "bob")),
    ],
)
def test_good_values(key, raw, expected):
    assert s.load({key: raw}).values[key] == expected


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("DSHUB_HTTP_PORT", "eighty", "not a whole number"),
        ("DSHUB_HTTP_PORT", "70000", "out of range"),
        ("DSHUB_MEM_LIMIT", "2 GB", "not a memory size"),
        ("DSHUB_MEM_LIMIT", "1M", "below the 64M"),
        ("DSHUB_MEM_LIMIT", "1025T", "out of range: use 64M..1024T"),
        ("DSHUB_CPU_LIMIT", "lots", "not a number of CPUs"),
        ("DSHUB_CPU_LIMIT", "0", "out of range"),
        ("DSHUB_BIND_ADDRESS", "localhost", "not an IP address"),
        ("DSHUB_POOL_DIR", "data/pool", "absolute path"),
        ("DSHUB_POOL_DIR", "/srv/../etc", "absolute path"),
        ("DSHUB_ADMIN_USERS", "Admin", "lowercase username"),
        ("DSHUB_ADMIN_USERS", "ada,../root", "lowercase username"),
        ("DSHUB_ADMIN_USERS", "ada,ada", "lists an item twice"),
        ("DSHUB_OAUTH_ALLOW_ALL", "maybe", "not true or false"),
        ("DSHUB_PROJECT", "My Hub", "lowercase name"),
        ("DSHUB_AUTHENTICATOR", "ldap", "not one of"),
        ("DSHUB_UID_MIN", "0", "out of range"),
        ("DSHUB_USER_IMAGE", "Bad Image", "image reference"),
        ("DSHUB_DEBIAN_MIRROR", "ftp://mirror", "http(s) URL"),
        ("DSHUB_OAUTH_INSTRUCTORS_FROM_IDP", "sometimes", "not true or false"),
        # Identity provider URLs: https, plain http only on this machine or to the dev provider.
        ("DSHUB_OIDC_ISSUER", "http://sso.uni.example/realms/t", "use 'https://sso.uni.example/realms/t'"),
        ("DSHUB_OIDC_BACKCHANNEL_URL", "http://keycloak:8080/realms/t", "uses plain http"),
        ("DSHUB_OAUTH_AUTHORIZE_URL", "http://idp.uni.example/authorize", "uses plain http"),
        ("DSHUB_OAUTH_TOKEN_URL", "http://10.0.0.5/token", "uses plain http"),
        ("DSHUB_OAUTH_USERDATA_URL", "http://localhost.evil.example/userinfo", "uses plain http"),
        ("DSHUB_OAUTH_USERDATA_URL", "http://oidc.evil.example/userinfo", "uses plain http"),
        ("DSHUB_GITLAB_URL", "http://gitlab.uni.example", "use 'https://gitlab.uni.example'"),
        ("DSHUB_GITLAB_URL", "http://[::2]:8929", "uses plain http"),
        ("DSHUB_OIDC_ISSUER", "http://[::::]:9400", "not an http(s) URL"),
        ("DSHUB_OIDC_ISSUER", "ftp://sso.uni.example", "not an http(s) URL"),
        ("DSHUB_POOL_DIR", "/srv/a:/etc", "must not hold ':' or ','"),
        ("DSHUB_CONFIG_DIR", "/srv/config,ro", "must not hold ':' or ','"),
        ("DSHUB_DISK_QUOTA", "10 GB", "not a disk size"),
        ("DSHUB_DISK_QUOTA", "-1G", "not a disk size"),
        ("DSHUB_DISK_QUOTA", "512K", "out of range: use 1M..1024T"),
        ("DSHUB_DISK_QUOTA", "2000T", "out of range"),
        ("DSHUB_DISK_QUOTA", "9" * 40, "not a disk size"),
        ("DSHUB_DISK_QUOTA", "10G; rm -rf /", "not a disk size"),
        ("DSHUB_DISK_QUOTA_WARN", "0", "out of range: use 1..100"),
        ("DSHUB_DISK_QUOTA_REFUSE", "99", "out of range: use 100..1000"),
        ("DSHUB_DISK_QUOTA_ENFORCE", "xfs", "not one of: off, project"),
    ],
)
def test_bad_values_name_the_setting(key, raw, message):
    with pytest.raises(s.SettingsError) as info:
        s.load({key: raw})
    assert key in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("DSHUB_OIDC_ISSUER", "https://sso.uni.example/realms/t"),
        ("DSHUB_OIDC_ISSUER", "http://127.0.0.1:9400"),
        ("DSHUB_OIDC_ISSUER", "http://127.8.9.10:9400"),
        ("DSHUB_OIDC_ISSUER", "http://localhost:9400"),
        ("DSHUB_OIDC_ISSUER", "http://[::1]:9400"),
        ("DSHUB_OIDC_BACKCHANNEL_URL", "http://oidc:9400"),
        ("DSHUB_GITLAB_URL", "http://127.0.0.1:8929"),
        ("DSHUB_GITLAB_URL", "https://gitlab.uni.example"),
    ],
)
def test_identity_provider_urls_on_this_machine_may_be_plain_http(key, raw):
    env = {
        "DSHUB_AUTHENTICATOR": "gitlab" if key == "DSHUB_GITLAB_URL" else "generic",
        "DSHUB_OAUTH_CLIENT_ID": "dshub-client",
        "DSHUB_OAUTH_CLIENT_SECRET": "s3cret-value",
        "DSHUB_OIDC_ISSUER": "http://127.0.0.1:9400",
        key: raw,
    }
    if key == "DSHUB_GITLAB_URL":
        del env["DSHUB_OIDC_ISSUER"]
    assert s.load(env).values[key] == raw


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("DSHUB_BIND_ADDRESS", "::1%a'; echo INJECTED #"),
        ("DSHUB_OAUTH_CLIENT_ID", "abc\\"),
        ("DSHUB_OAUTH_SCOPES", "openid x\\"),
    ],
)
def test_values_the_settings_file_could_not_hold_are_refused(key, raw):
    with pytest.raises(s.SettingsError, match=key):
        s.load({key: raw})


def test_unknown_key_is_rejected_with_a_hint():
    with pytest.raises(s.SettingsError, match=r"DSHUB_MEM_LIMT is not a dshub setting.*DSHUB_MEM_LIMIT"):
        s.load({"DSHUB_MEM_LIMT": "1G"})


def test_other_variables_are_ignored():
    assert s.load({"PATH": "/bin", "HOME": "/root"}).project == "dshub"


def test_uid_range_must_be_ordered():
    with pytest.raises(s.SettingsError, match="DSHUB_UID_MIN must be below DSHUB_UID_MAX"):
        s.load({"DSHUB_UID_MIN": "30000", "DSHUB_UID_MAX": "20000"})


def test_all_errors_reported_at_once():
    with pytest.raises(s.SettingsError) as info:
        s.load({"DSHUB_HTTP_PORT": "x", "DSHUB_CPU_LIMIT": "y", "DSHUB_NOPE": "1"})
    text = str(info.value)
    assert "DSHUB_HTTP_PORT" in text and "DSHUB_CPU_LIMIT" in text and "DSHUB_NOPE" in text


def test_render_env_file_and_environment_precedence(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nDSHUB_HTTP_PORT=9000\nexport DSHUB_PROJECT='lab'\n\n")
    rendered = settings_cli.render(env_file, {"DSHUB_HTTP_PORT": "9100", "UNRELATED": "x"})
    lines = dict(line.split("=", 1) for line in rendered.splitlines())
    assert lines["DSHUB_HTTP_PORT"] == "9100"
    assert lines["DSHUB_PROJECT"] == "lab"
    assert "UNRELATED" not in lines
    assert lines["COMPOSE_PROFILES"] == ""
    monitored = dict(
        line.split("=", 1) for line in settings_cli.render(None, {"DSHUB_MONITORING": "yes"}).splitlines()
    )
    assert monitored["COMPOSE_PROFILES"] == "monitoring"


def test_render_rejects_malformed_lines(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DSHUB_HTTP_PORT 9000\n")
    with pytest.raises(s.SettingsError, match=r"\.env:1: expected KEY=value"):
        settings_cli.render(env_file, {})


def test_cli_exits_2_with_message(tmp_path, capsys):
    env_file = tmp_path / ".env"
    env_file.write_text("DSHUB_HTTP_PORT=0\n")
    assert settings_cli.main(["render", "--env-file", str(env_file)]) == 2
    assert "DSHUB_HTTP_PORT=0 is out of range" in capsys.readouterr().err


def test_env_example_is_generated_from_the_settings_table():
    assert (REPO / ".env.example").read_text() == settings_cli.example(), (
        "run: python -m spawner.cli.settings example > .env.example"
    )
    # The example itself is a valid .env.
    settings_cli.render(REPO / ".env.example", {})


def test_culling_settings_and_their_service():
    from spawner.hub import culling

    assert s.load({}).cull_idle_timeout == 3600
    assert s.load({"DSHUB_CULL_IDLE_TIMEOUT": "0"}).cull_idle_timeout == 0
    with pytest.raises(s.SettingsError, match="DSHUB_CULL_IDLE_TIMEOUT=10 is out of range"):
        s.load({"DSHUB_CULL_IDLE_TIMEOUT": "10"})
    with pytest.raises(s.SettingsError, match="DSHUB_CULL_MAX_AGE needs the culler"):
        s.load({"DSHUB_CULL_IDLE_TIMEOUT": "0", "DSHUB_CULL_MAX_AGE": "3600"})
    assert culling.hub_service(0, 0) is None
    service, role = culling.hub_service(3600, 43200)
    assert service["command"][-4:] == [
        "--timeout=3600",
        "--cull-every=300",
        "--max-age=43200",
        "--url=http://127.0.0.1:8081/hub/api",
    ]
    assert role["services"] == [service["name"]] and "admin:users" not in role["scopes"]
    # Servers report activity often enough that a short timeout never culls an active one.
    assert culling.check_interval(40) == 10 and culling.check_interval(3600) == 300


def test_load_reads_only_the_mapping_it_is_given(monkeypatch):
    monkeypatch.setenv("DSHUB_PROJECT", "from-process")
    assert s.load({}).project == "dshub"
    assert s.load().project == "from-process"


def test_the_client_secret_is_never_shown():
    env = {
        "DSHUB_AUTHENTICATOR": "github",
        "DSHUB_OAUTH_CLIENT_ID": "c",
        "DSHUB_OAUTH_CLIENT_SECRET": "s3cret-value",
    }
    assert "s3cret-value" not in repr(s.load(env))
