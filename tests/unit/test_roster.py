from spawner.cli.roster import parse

GOOD = """username,groups,role
ada,g1;stats,student
Bob,g1,instructor
carol,,admin
"""


def test_good_rows():
    roster = parse(GOOD, "instructors")
    assert roster.errors == []
    by_name = {m.name: m for m in roster.members}
    assert by_name["ada"].groups == ("g1", "stats")
    assert by_name["bob"].groups == ("g1", "instructors"), (
        "names are lowercased; instructors join their group"
    )
    assert by_name["carol"].role == "admin" and by_name["carol"].groups == ()


def test_every_bad_row_is_reported():
    text = """username,groups,role
ada,g1,student
ADA,g2,student
../etc,g1,student
dave,g<1>,student
erin,g1,teacher
,g1,student
"""
    roster = parse(text, "instructors")
    assert [e.split(":")[0] for e in roster.errors] == ["line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "duplicate of line 2" in roster.errors[0]
    assert "bad username '../etc'" in roster.errors[1]
    assert "bad group name" in roster.errors[2]
    assert "unknown role 'teacher'" in roster.errors[3]
    assert [m.name for m in roster.members] == ["ada"]


def test_missing_columns():
    roster = parse("user,group\nada,g1\n", "instructors")
    assert roster.errors == ["header: missing column(s) groups, role, username (need username,groups,role)"]
