import json
import logging
import os
import re
from pathlib import Path

import pytest

from spawner.cli import settings as settings_cli
from spawner.config import settings as dshub_settings
from spawner.config.profiles import SCHEMA, Defaults, ProfileError, ProfilesFile, parse
from spawner.spawn.form import options_form, profile_from_form

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = Defaults(image="dshub/lab:test", cpu=1.0, mem_limit=2 * 2**30, pids=512)

GOOD = """
limits: {servers_per_user: 3, gpus_per_user: 2}
gpus: {devices: ["0", "1"]}
profiles:
  - name: small
    image: dshub/lab:test
    default: true
  - name: big
    display_name: Big <b>one</b>
    description: "For projects & theses"
    image: dshub/datascience:test
    cpu: 4
    memory: 8G
    pids: 1024
    groups: [projects]
  - name: gpu
    image: dshub/datascience:test
    gpus: 1
    gpu_shared: true
    groups: [dl]
"""


def test_a_good_file_with_defaults_filled_in():
    profiles = parse(GOOD, DEFAULTS)
    small, big, gpu = profiles.profiles
    assert (small.cpu, small.mem_limit, small.pids, small.display_name) == (1.0, 2 * 2**30, 512, "small")
    assert (big.cpu, big.mem_limit, big.pids, big.groups) == (4.0, 8 * 2**30, 1024, ("projects",))
    assert (gpu.gpus, gpu.gpu_shared) == (1, True)
    assert profiles.servers_per_user == 3
    assert profiles.gpus_per_user == 2
    assert profiles.gpu_devices == ("0", "1")
    assert profiles.images == {"dshub/lab:test", "dshub/datascience:test"}


def test_the_shipped_example_is_valid():
    example = parse((REPO / "config" / "profiles.example.yaml").read_text(), DEFAULTS)
    assert [p.name for p in example.profiles if p.default] == ["standard"]


def test_without_a_file_one_profile_comes_from_the_settings(tmp_path):
    settings = dshub_settings.load({"DSHUB_MEM_LIMIT": "1G", "DSHUB_CPU_LIMIT": "0.5"})
    profiles = ProfilesFile(tmp_path / "profiles.yaml", Defaults.from_settings(settings)).current()
    (only,) = profiles.profiles
    assert (only.image, only.mem_limit, only.cpu) == (settings.user_image, 2**30, 0.5)
    assert options_form(profiles.open_to([]), None) == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profiles: []", "profiles: [] should be non-empty"),
        (
            "profiles:\n  - {name: a, image: x, colour: red}",
            "Additional properties are not allowed ('colour'",
        ),
        ("profiles:\n  - {name: a, image: x}\nextra: 1", "Additional properties are not allowed ('extra'"),
        ("profiles:\n  - {name: A b, image: x}", "profiles[0].name: 'A b' does not match"),
        ("profiles:\n  - {name: a, image: 'x; rm -rf /'}", "profiles[0].image"),
        ("profiles:\n  - {name: a, image: x, memory: 2X}", "profiles[0].memory: '2X' does not match"),
        ("profiles:\n  - {name: a, image: x, memory: 1M}", "below the 64M"),
        ("profiles:\n  - {name: a, image: x, memory: 1025T}", "out of range: use 64M..1024T"),
        ("profiles:\n  - {name: a, image: x, cpu: 0}", "profiles[0].cpu: 0 is less than the minimum"),
        ("profiles:\n  - {name: a, image: x, pids: 5}", "profiles[0].pids: 5 is less than the minimum"),
        ("profiles:\n  - {name: a, image: x, groups: [a, a]}", "has non-unique elements"),
        ("profiles:\n  - {name: a, image: x}\n  - {name: a, image: y}", "profile name 'a' is used twice"),
        (
            "profiles:\n  - {name: a, image: x, default: true}\n  - {name: b, image: x, default: true}",
            "more than one profile says default",
        ),
        ("profiles:\n  - {name: a, image: x, gpus: 1}", "asks for 1 GPU(s) but gpus.devices lists 0"),
        ("profiles:\n  - {name: a, image: x, gpu_shared: true}", "says gpu_shared without gpus"),
        (
            "profiles:\n  - {name: a, image: x}\n  - name: b\n    name: c\n    image: x",
            "'name' is given twice",
        ),
        ("profiles: [", "not valid YAML"),
        ("- just a list", "the file: ['just a list'] is not of type 'object'"),
    ],
)
def test_bad_files_are_refused_with_the_place_named(text, message):
    with pytest.raises(ProfileError) as info:
        parse(text, DEFAULTS)
    assert message in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ProfileError) as info:
        parse("profiles:\n  - {name: a, image: x, cpu: -1, memory: lots}", DEFAULTS)
    assert "profiles[0].cpu" in str(info.value) and "profiles[0].memory" in str(info.value)


def test_choosing_respects_groups_and_defaults():
    profiles = parse(GOOD, DEFAULTS)
    assert profiles.choose(None, []).name == "small"
    assert profiles.choose("big", ["projects"]).name == "big"
    with pytest.raises(ProfileError, match=r"'big' is not one you may use; you may use: small\."):
        profiles.choose("big", ["students"])
    with pytest.raises(ProfileError, match="not one you may use"):
        profiles.choose("nonexistent", ["projects"])
    with pytest.raises(ProfileError, match="given as its name"):
        profiles.choose(["big"], ["projects"])
    only_for_groups = parse("profiles:\n  - {name: a, image: x, groups: [g]}", DEFAULTS)
    with pytest.raises(ProfileError, match="No profile is open to your groups"):
        only_for_groups.choose(None, ["other"])


@pytest.mark.parametrize(
    "formdata",
    [
        {},
        {"profile": []},
        {"profile": ["small", "big"]},
        {"profile": ["../etc"]},
        {"profile": ["x" * 500]},
        {"profile": [""]},
    ],
)
def test_forged_form_values_are_refused(formdata):
    with pytest.raises(ProfileError, match="Choose exactly one profile"):
        profile_from_form(formdata)


def test_extra_form_fields_are_refused():
    with pytest.raises(ProfileError, match=r"Unexpected form field.*image"):
        profile_from_form({"profile": ["small"], "image": ["evil/image"], "_xsrf": ["t"]})
    assert profile_from_form({"profile": ["small"], "_xsrf": ["t"]}) == {"profile": "small"}


def test_the_form_lists_only_allowed_profiles_escaped_with_the_last_choice_checked():
    profiles = parse(GOOD, DEFAULTS)
    form = options_form(profiles.open_to(["projects"]), "big")
    assert re.findall(r'value="([^"]+)"', form) == ["small", "big"]
    assert re.search(r'value="big" checked', form)
    assert "Big &lt;b&gt;one&lt;/b&gt;" in form and "projects &amp; theses" in form
    assert "<b>one" not in form
    assert "4 CPU, 8G memory" in form
    # A stale or foreign last choice falls back to the default.
    assert re.search(r'value="small" checked', options_form(profiles.open_to(["projects"]), "gpu"))


def test_a_broken_edit_keeps_the_last_good_profiles(tmp_path, caplog):
    path = tmp_path / "profiles.yaml"
    path.write_text(GOOD)
    file = ProfilesFile(path, DEFAULTS, logging.getLogger("test"))
    assert len(file.current().profiles) == 3
    path.write_text("profiles:\n  - {name: only, image: x}\n")
    os.utime(path, ns=(1, 1))  # a distinct stamp even within the clock's resolution
    assert [p.name for p in file.current().profiles] == ["only"]
    path.write_text("profiles: [")
    os.utime(path, ns=(2, 2))
    with caplog.at_level(logging.ERROR):
        assert [p.name for p in file.current().profiles] == ["only"]
    assert "Keeping the previous profiles" in caplog.text


def test_a_broken_file_at_start_stops_the_hub_with_the_reason(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text("profiles:\n  - {name: a}\n")
    with pytest.raises(ProfileError, match=r"profiles\.yaml:\nprofiles\[0\]: 'image' is a required property"):
        ProfilesFile(path, DEFAULTS)


def test_make_settings_refuses_a_broken_profiles_file(tmp_path):
    (tmp_path / "profiles.yaml").write_text("profiles:\n  - {name: a, image: x, memroy: 1G}\n")
    with pytest.raises(dshub_settings.SettingsError, match=r"DSHUB_CONFIG_DIR.*\n.*'memroy' was unexpected"):
        settings_cli.render(None, {"DSHUB_CONFIG_DIR": str(tmp_path)})


def test_the_schema_is_printable_json():
    assert json.loads(json.dumps(SCHEMA))["$defs"]["profile"]["additionalProperties"] is False


def test_the_largest_memory_the_settings_take_makes_a_profile_too(tmp_path):
    """Without a file the settings' limits make the one profile: what they accept must hold there."""
    settings = dshub_settings.load({"DSHUB_MEM_LIMIT": "1024T"})
    only = ProfilesFile(tmp_path / "profiles.yaml", Defaults.from_settings(settings)).current().profiles[0]
    assert only.mem_limit == 2**50
