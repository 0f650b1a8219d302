"""The base image's Debian mirror comes from the host's own apt sources (spawner.cli.aptmirror)."""

import pytest

from spawner.cli import aptmirror
from spawner.cli import settings as settings_cli
from spawner.cli.aptmirror import debian_mirror, host_sources
from spawner.config import settings as s

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def no_files(path: str) -> str:
    raise FileNotFoundError(path)


def mirror(*sources: tuple[str, str], read=no_files) -> str | None:
    return debian_mirror(sources, read)


def test_classic_sources_list_gives_its_first_debian_entry():
    text = (
        "# deb cdrom:[Debian GNU/Linux 12.5.0 _Bookworm_]/ bookworm main\n"
        "deb cdrom:[Debian GNU/Linux 12.5.0 _Bookworm_]/ bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb http://mirror.example/debian/ bookworm main non-free-firmware  # the mirror\n"
        "deb http://other.example/debian bookworm-updates main\n"
    )
    assert mirror(("sources.list", text)) == "http://mirror.example/debian"


def test_deb822_stanzas_with_comments_several_suites_and_disabled_entries():
    text = (
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\nComponents: main\n\n"
        "Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: trixie\nComponents: main\n\n"
        "Types: deb deb-src\n"
        "# a comment inside the stanza\n"
        "URIs: https://proxy.example:3142/debian https://second.example/debian\n"
        "Suites: trixie trixie-updates\n"
        "Components: main\n"
        f"Signed-By: {DEBIAN_KEYRING}\n"
    )
    assert mirror(("debian.sources", text)) == "https://proxy.example:3142/debian"


def test_third_party_repositories_are_not_debian_mirrors():
    vendor_list = (
        "deb [arch=amd64 signed-by=/etc/apt/keyrings/v.asc] https://v.example/debian trixie stable\n"
    )
    vendor_sources = (
        "Types: deb\nURIs: https://pkgs.vendor.example/apt\nSuites: nodistro\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/vendor.gpg\n"
    )
    debian = f"Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie\nSigned-By: {DEBIAN_KEYRING}\n"
    assert (
        mirror(
            ("archive_uri-vendor.list", vendor_list),
            ("azure.sources", vendor_sources),
            ("debian.sources", debian),
        )
        == "http://mirror.example/debian"
    )
    assert mirror(("archive_uri-vendor.list", vendor_list), ("azure.sources", vendor_sources)) is None


def test_bracketed_options_with_spaces_and_the_debian_keyring():
    text = f"deb [ arch=amd64 signed-by={DEBIAN_KEYRING} ] http://mirror.example/debian trixie main\n"
    assert mirror(("sources.list", text)) == "http://mirror.example/debian"


def test_a_cloud_images_mirror_list_gives_its_first_mirror():
    text = (
        "Types: deb\nURIs: mirror+file:///etc/apt/mirrors/debian.list\nSuites: bookworm\n"
        f"Components: main\nSigned-By: {DEBIAN_KEYRING}\n"
    )
    lists = {"/etc/apt/mirrors/debian.list": "# mirrors\nhttps://cloud.example/debian\tpriority:1\n"}
    assert mirror(("debian.sources", text), read=lambda path: lists[path]) == "https://cloud.example/debian"
    # A list that cannot be read is skipped like any other unusable entry.
    assert mirror(("debian.sources", text)) is None


def test_no_usable_entry_gives_none():
    assert mirror() is None
    assert mirror(("sources.list", "# deb http://mirror.example/debian trixie main\n")) is None
    assert mirror(("sources.list", "deb file:/srv/debian trixie main\n")) is None
    assert mirror(("sources.list", "deb http://mirror.example/debian\n")) is None  # no suite


def test_host_sources_are_read_in_apts_order_and_only_from_files_apt_reads(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("# emptied by the admin\n")
    parts = {
        "zz.list": "deb http://late.example/debian trixie main\n",
        "debian.sources": "Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie\n",
        "a.list.disabled": "deb http://disabled.example/debian trixie main\n",
        "a.list.save": "deb http://saved.example/debian trixie main\n",
    }
    for name, text in parts.items():
        (tmp_path / "sources.list.d" / name).write_text(text)
    assert [name for name, _ in host_sources(tmp_path)] == ["sources.list", "debian.sources", "zz.list"]
    assert mirror(*host_sources(tmp_path)) == "http://mirror.example/debian"


@pytest.fixture
def host(tmp_path, monkeypatch):
    etc_apt, os_release = tmp_path / "apt", tmp_path / "os-release"
    etc_apt.mkdir()
    monkeypatch.setattr(aptmirror, "ETC_APT", etc_apt)
    monkeypatch.setattr(aptmirror, "OS_RELEASE", os_release)
    return etc_apt, os_release


def test_the_command_prints_the_mirror(host, capsys):
    etc_apt, os_release = host
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\n')
    (etc_apt / "sources.list").write_text("deb http://mirror.example/debian trixie main\n")
    assert aptmirror.main() == 0
    assert capsys.readouterr().out == "http://mirror.example/debian\n"


@pytest.mark.parametrize(
    ("os_id", "sources", "reason"),
    [
        ("debian", "", "names no Debian mirror"),
        ("ubuntu", "deb http://archive.example/ubuntu noble main\n", "is not Debian"),
    ],
)
def test_without_a_host_mirror_the_command_says_to_set_the_setting(host, capsys, os_id, sources, reason):
    etc_apt, os_release = host
    os_release.write_text(f"ID={os_id}\nID_LIKE=debian\n")
    (etc_apt / "sources.list").write_text(sources)
    assert aptmirror.main() == 1
    err = capsys.readouterr().err
    assert reason in err
    assert "set DSHUB_DEBIAN_MIRROR in .env to the URL of a Debian mirror" in err


def test_the_setting_defaults_to_the_hosts_mirror_and_still_overrides_it():
    assert s.load({}).debian_mirror is None
    assert "DSHUB_DEBIAN_MIRROR=\n" in settings_cli.render(None, {})
    assert s.load({"DSHUB_DEBIAN_MIRROR": "http://mirror.example/debian"}).debian_mirror == (
        "http://mirror.example/debian"
    )
