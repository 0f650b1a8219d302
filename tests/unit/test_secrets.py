import os
import stat

import pytest

from spawner.config.secrets import ensure_secret


def test_secret_made_once_with_private_mode(tmp_path):
    directory = tmp_path / "secrets"
    first = ensure_secret(directory, "cookie-secret")
    assert len(bytes.fromhex(first)) == 32
    assert ensure_secret(directory, "cookie-secret") == first
    assert stat.S_IMODE(os.stat(directory / "cookie-secret").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_secrets_differ(tmp_path):
    assert ensure_secret(tmp_path, "a") != ensure_secret(tmp_path, "b")


def test_planted_link_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(victim, tmp_path / "planted")
    with pytest.raises(OSError):
        ensure_secret(tmp_path, "planted")
    assert victim.read_text() == "keep"


def test_empty_secret_file_is_an_error(tmp_path):
    (tmp_path / "empty").write_text("")
    with pytest.raises(RuntimeError, match="delete it"):
        ensure_secret(tmp_path, "empty")
