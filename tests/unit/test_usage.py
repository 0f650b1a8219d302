import re

import pytest

from spawner.cli.usage import ContainerRow, ServerUsage, container_row, ps_table, safe_cell, table

HOSTILE = [
    "eve\nada  (default)  small  0% of 1",
    "eve\x1b[2J",
    "eve\rada",
    "eve\x07",
    "eve\x1b]0;owned\x07",
    "eve\u2028ada",
    "eve\x9b2J",
]
# Anything a terminal acts on: C0 and C1 controls (ESC, BEL, CR, LF, CSI...), DEL,
# and the Unicode line and paragraph separators.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def usage(**fields: str) -> ServerUsage:
    values = {"user": "ada", "server": "(default)", "profile": "small", "image": "dshub/lab:1", "gpus": ""}
    values.update(fields)
    return ServerUsage(
        cpu_percent=12.0,
        cpu_limit=1.0,
        memory=2**20,
        memory_limit=2**30,
        disk=2**20,
        status="running",
        **values,
    )


def assert_safe(text: str, rows: int) -> None:
    assert not CONTROL.search(text.replace("\n", "")), repr(text)
    assert text.count("\n") == rows, "one line per row: no value can add or split a line"


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("field", ["user", "server", "profile", "image", "gpus"])
def test_usage_table_escapes_every_user_derived_field(field, hostile):
    text = table([usage(), usage(**{field: hostile})])
    assert_safe(text, rows=3)  # header, two servers, the count line
    assert text.splitlines()[-1] == "2 running server(s)"


def test_usage_table_reads_as_before_for_plain_names():
    assert table([usage()]).splitlines() == [
        "USER  SERVER     PROFILE  CPU       MEMORY   DISK  GPUS  IMAGE",
        "ada   (default)  small    12% of 1  1M / 1G  1M    -     dshub/lab:1",
        "1 running server(s)",
    ]


def test_cells_escape_controls_and_quote_blanks():
    assert safe_cell("ada") == "ada"
    assert safe_cell("eve\x1b[2J") == "eve\\x1b[2J"
    assert safe_cell("eve\x07") == "eve\\x07"
    # A value with blanks could pass for more columns: it is quoted as a whole.
    assert safe_cell("eve\nada") == "'eve\\nada'"
    assert safe_cell("eve ada") == "'eve ada'"
    assert safe_cell("") == "''"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_ps_table_escapes_labels_and_names(hostile):
    summaries = [
        {
            "Id": "a" * 64,
            "Names": ["/dshub-hub-1"],
            "Status": "Up 2 minutes",
            "Labels": {"dshub.role": "hub"},
        },
        {
            "Id": "b" * 64,
            "Names": [f"/{hostile}"],
            "Status": f"Exited (0) {hostile}",
            "Labels": {"dshub.role": hostile, "dshub.user": hostile},
        },
    ]
    text = ps_table([container_row(s) for s in summaries])
    assert_safe(text, rows=2)
    assert text.splitlines()[1].split() == ["dshub-hub-1", "Up", "2", "minutes", "hub", "-"]


def test_ps_row_from_the_engine_list():
    row = container_row(
        {
            "Id": "c" * 64,
            "Names": ["/dshub-user-ada"],
            "Status": "Up 1 hour",
            "Labels": {"dshub.project": "dshub", "dshub.role": "user-server", "dshub.user": "ada"},
        }
    )
    assert row == ContainerRow(name="dshub-user-ada", status="Up 1 hour", role="user-server", user="ada")
    assert ps_table([row]).splitlines() == [
        "NAME            STATUS     ROLE         USER",
        "dshub-user-ada  Up 1 hour  user-server  ada",
    ]
