"""The pool as a class's filesystem: private homes, group folders, course material, off-boarding."""

import json
import os
import re
import stat

import pytest

from tests.support.hub import HubSession
from tests.support.stack import docker

pytestmark = pytest.mark.integration

ROSTER = """username,groups,role
ada,g1,student
bob,g1,student
olga,,student
ivan,,instructor
"""


def roster(stack, *args, stdin=None):
    return stack.hub_exec("python3", "-m", "spawner.roster", *args, stdin=stdin)


@pytest.fixture(scope="module")
def people(stack):
    imported = roster(stack, "import", "-", stdin=ROSTER)
    assert imported.returncode == 0, imported.stderr
    assert "created user(s): ada, bob, olga, ivan" in imported.stdout
    assert "added to g1: ada, bob" in imported.stdout
    assert "added to instructors: ivan" in imported.stdout
    # The import prints each new user's one-time initial password, once.
    initial = dict(re.findall(r"^  ([a-z]+): (\S+)$", imported.stdout, re.M))
    assert sorted(initial) == ["ada", "bob", "ivan", "olga"]
    sessions = {}
    for name in ("ada", "bob", "olga", "ivan"):
        person = HubSession(stack.url)
        person.sign_in(name, initial[name], new_password=f"{name}-password")
        person.start_server()
        sessions[name] = person
    yield sessions
    for name, person in sessions.items():
        if name != "ada":  # ada is off-boarded by the last test
            person.stop_server()


def test_roster_import_is_idempotent_and_all_or_nothing(stack, people):
    again = roster(stack, "import", "-", stdin=ROSTER)
    assert again.returncode == 0 and again.stdout.strip().endswith("no changes")
    bad = roster(
        stack, "import", "-", stdin="username,groups,role\nnewbie,g2,student\nnewbie,g2,student\n../x,,boss\n"
    )
    assert bad.returncode == 1
    assert "line 3: duplicate of line 2" in bad.stderr and "line 4: bad username '../x'" in bad.stderr
    assert "unknown role 'boss'" in bad.stderr
    admin = HubSession(stack.url)
    admin.sign_in(stack.settings.admin_users[0], stack.admin_password())
    assert admin.api("GET", "/users/newbie").status_code == 404
    assert admin.api("GET", "/groups/g2").status_code == 404


def test_group_members_share_a_folder_and_outsiders_do_not_see_it(stack, people):
    ada, bob, olga = people["ada"], people["bob"], people["olga"]
    ada.run("open('groups/g1/plan.txt', 'w').write('from ada\\n')")
    appended = bob.run(
        "open('groups/g1/plan.txt', 'a').write('and bob\\n'); open('groups/g1/plan.txt').read()"
    )
    assert appended == "'from ada\\nand bob\\n'"
    on_host = stack.pool / "groups" / "g1" / "plan.txt"
    group_dir = os.stat(on_host.parent)
    assert stat.S_IMODE(group_dir.st_mode) == 0o2770
    assert os.stat(on_host).st_gid == group_dir.st_gid, "setgid folder: files belong to the group"
    assert os.stat(on_host).st_mode & 0o060 == 0o060, "created files stay group-writable"
    assert olga.run("import os; os.path.isdir('groups') and os.listdir('groups')") in ("False", "[]")
    assert olga.run("import os; os.path.exists('groups/g1')") == "False"


def test_shared_is_read_only_for_students_and_writable_for_instructors(people):
    ivan, ada = people["ivan"], people["ada"]
    ivan.run("open('shared/syllabus.md', 'w').write('week 1')")
    assert ada.run("open('shared/syllabus.md').read()") == "'week 1'"
    refused = ada.run("try:\n    open('shared/mine.txt', 'w')\nexcept OSError as e:\n    print(e.errno)")
    assert refused.strip() == "30"  # EROFS


def test_a_user_sees_only_their_own_folders(stack, people):
    ada_box = stack.user_container("ada")
    (spec,) = json.loads(docker("inspect", ada_box).stdout)
    sources = sorted(m["Source"] for m in spec["Mounts"])
    assert sources == sorted(
        [str(stack.pool / "users" / "ada"), str(stack.pool / "groups" / "g1"), str(stack.pool / "shared")]
    )
    assert people["ada"].run("import os; sorted(os.listdir('/home'))") == "['jovyan']"
    assert people["ada"].run("import os; os.access('/home/jovyan/../bob', os.F_OK)") == "False"


def snapshot(*paths):
    return {str(p): (os.lstat(p).st_uid, os.lstat(p).st_gid, os.lstat(p).st_mode) for p in paths}


def test_planted_links_change_nothing_outside_on_restart_and_archive(stack, people):
    ada = people["ada"]
    bob_home = stack.pool / "users" / "bob"
    watched = ["/etc", "/etc/passwd", bob_home, stack.pool / "groups" / "g1", stack.pool / "shared"]
    before = snapshot(*watched)
    ada.run(f"import os; os.symlink('/etc', 'x'); os.symlink('{bob_home}', 'bob')")
    ada.stop_server()
    # What ada could have done inside: her groups folder swapped for a link to /etc.
    home = stack.pool / "users" / "ada"
    os.rename(home / "groups", home / "groups.old")
    os.symlink("/etc", home / "groups")
    ada.start_server()
    assert ada.run("import os; os.readlink('groups')") == "'/etc'"
    assert "Not mounting groups/g1 for ada" in stack.logs()
    ada.stop_server()
    assert snapshot(*watched) == before

    archived = roster(stack, "archive", "--remove-from-hub", "ada")
    assert archived.returncode == 0, archived.stderr
    target = next((stack.pool / "archive").iterdir())
    assert target.name.startswith("ada-")
    assert os.readlink(target / "x") == "/etc" and os.readlink(target / "groups") == "/etc"
    assert not home.exists()
    assert snapshot(*watched) == before
