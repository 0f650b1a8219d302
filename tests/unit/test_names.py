"""The one username rule: normalisation, refusals, and names made safe to print."""

import logging

import pytest

from spawner.core.names import (
    ControlFreeLogRecord,
    InvalidUsername,
    checked_username,
    is_valid_username,
    normalize_username,
    without_control,
)
from spawner.hub.proxy import route_problem
from tests.support.hostile import REFUSED, SAME_AS


@pytest.mark.parametrize("name", REFUSED)
def test_hostile_names_are_refused_with_the_rule(name):
    with pytest.raises(InvalidUsername, match="a username is 1 to 64 characters"):
        checked_username(name)


@pytest.mark.parametrize(("spelling", "name"), SAME_AS.items())
def test_spellings_normalise_to_one_user(spelling, name):
    assert checked_username(spelling) == name
    assert is_valid_username(name)


def test_a_name_not_in_normal_form_is_not_valid():
    # What JupyterHub hands validate_username is normalised already; anything else is refused.
    assert not is_valid_username("Ada")
    assert normalize_username("\u212aate") == "kate"


@pytest.mark.parametrize("name", ["ada", "a", "s1234567", "ada.lovelace@uni.example", "a_b-c.d", "a" * 64])
def test_ordinary_names_pass(name):
    assert checked_username(name) == name


@pytest.mark.parametrize("name", REFUSED)
def test_a_hostile_name_never_makes_a_route(name):
    # Whatever reaches the proxy, as JupyterHub would quote it or raw.
    from urllib.parse import quote

    for spec in (f"/user/{quote(name, safe='@~')}/", f"/user/{name}/"):
        assert route_problem(spec, "http://172.18.0.5:8888", {"user": name}) is not None


def test_control_characters_are_escaped_for_printing():
    assert without_control("eve\nFAKE\x1b[2J\r\x07\u202e") == "eve\\nFAKE\\x1b[2J\\r\\x07\\u202e"
    assert without_control("ada.lovelace@uni.example") == "ada.lovelace@uni.example"


def test_log_records_cannot_forge_lines():
    record = ControlFreeLogRecord(
        "hub", logging.WARNING, __file__, 1, "Failed login for %s", ("ada\nINFO x",), None
    )
    assert record.getMessage() == "Failed login for ada\\nINFO x"
