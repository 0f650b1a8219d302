"""The pool as a class's filesystem: private homes, group folders, course material, off-boarding."""

import json
import os
import re
import stat
import uuid

import pytest

from tests.support.hub import HubSession
from tests.support.stack import docker

ROSTER = """username,groups,role
ada,g1,student
bob,g1,student
olga,,student
ivan,,instructor
"""


def roster(stack, *args, stdin=None):
    return stack.hub_exec("python3", "-m", "spawner.cli.roster", *args, stdin=stdin)


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
    ada.run("open('/srv/groups/g1/plan.txt', 'w').write('from ada\\n')")
    # ~/groups is the hub's link to /srv/groups, there to help people find it.
    appended = bob.run(
        "open('groups/g1/plan.txt', 'a').write('and bob\\n'); open('/srv/groups/g1/plan.txt').read()"
    )
    assert appended == "'from ada\\nand bob\\n'"
    listed = bob.server_get("api/contents/groups/g1")  # what JupyterLab's file browser shows
    assert listed.status_code == 200 and "plan.txt" in [f["name"] for f in listed.json()["content"]]
    on_host = stack.pool / "groups" / "g1" / "plan.txt"
    group_dir = os.stat(on_host.parent)
    assert stat.S_IMODE(group_dir.st_mode) == 0o2770
    assert os.stat(on_host).st_gid == group_dir.st_gid, "setgid folder: files belong to the group"
    assert os.stat(on_host).st_mode & 0o060 == 0o060, "created files stay group-writable"
    assert olga.run("import os; os.path.isdir('groups') and os.listdir('groups')") in ("False", "[]")
    assert olga.run("import os; os.path.exists('groups/g1') or os.path.exists('/srv/groups')") == "False"


def test_shared_is_read_only_for_students_and_writable_for_instructors(people):
    ivan, ada = people["ivan"], people["ada"]
    ivan.run("open('/srv/shared/syllabus.md', 'w').write('week 1')")
    assert ada.run("open('shared/syllabus.md').read()") == "'week 1'"
    refused = ada.run("try:\n    open('/srv/shared/mine.txt', 'w')\nexcept OSError as e:\n    print(e.errno)")
    assert refused.strip() == "30"  # EROFS


def mounts_of(container):
    """(type, source, destination, writable) of each mount, as the engine reports them."""
    (spec,) = json.loads(docker("inspect", container).stdout)
    assert not spec["HostConfig"]["Binds"], "no legacy binds: they would make a missing source as root"
    return sorted((m["Type"], m["Source"], m["Destination"], m["RW"]) for m in spec["Mounts"])


def ada_mounts(stack):
    return sorted(
        [
            ("bind", str(stack.pool / "users" / "ada"), "/home/jovyan", True),
            ("bind", str(stack.pool / "groups" / "g1"), "/srv/groups/g1", True),
            ("bind", str(stack.pool / "shared"), "/srv/shared", False),
        ]
    )


def test_a_user_sees_only_their_own_folders(stack, people):
    assert mounts_of(stack.user_container("ada")) == ada_mounts(stack)
    assert people["ada"].run("import os; sorted(os.listdir('/home'))") == "['jovyan']"
    assert people["ada"].run("import os; os.access('/home/jovyan/../bob', os.F_OK)") == "False"
    assert people["ada"].run("import os; sorted(os.listdir('/srv/groups'))") == "['g1']"
    # The mount points are the image's (made by the engine as root), not the user's to change.
    assert people["ada"].run("import os; [os.access(p, os.W_OK) for p in ('/srv', '/srv/groups')]") == (
        "[False, False]"
    )


def test_the_engine_refuses_a_missing_bind_source_instead_of_making_it(stack):
    # What the hub asks for (bind mounts, see above), with a source that is gone.
    missing = stack.workdir / "vanished"
    made = docker(
        "create", "--label", f"dshub.project={stack.project}",
        "--mount", f"type=bind,source={missing},target=/srv/groups/g1",
        stack.settings.user_image, "true",
        check=False,
    )  # fmt: skip
    assert made.returncode != 0
    assert f"bind source path does not exist: {missing}" in made.stderr
    assert not os.path.lexists(missing)


def mount_table(container):
    """The mounts under /home and /srv, as the container's own kernel lists them: (where, options)."""
    script = (
        "import json\n"
        "rows = [line.split() for line in open('/proc/self/mountinfo')]\n"
        "print(json.dumps(sorted((r[4], r[5].split(',')[0]) for r in rows"
        " if r[4].startswith(('/home/', '/srv/')))))"
    )
    return [tuple(row) for row in json.loads(docker("exec", container, "python3", "-c", script).stdout)]


def test_a_link_swap_in_a_running_server_does_not_change_the_next_spawns_mounts(stack, people):
    bob = people["bob"]
    box = stack.user_container("bob")
    # A classmate's file in the group folder, to recognise it later.
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    people["ada"].run(f"open('/srv/groups/g1/{marker}', 'w').write('g1')")
    ada_home = stack.pool / "users" / "ada"
    watched = ["/etc", ada_home, stack.pool / "groups" / "g1", stack.pool / "shared"]
    before = snapshot(*watched)
    # Inside bob's running server, as bob: the hub's links point elsewhere now.
    swapped = docker(
        "exec", box, "sh", "-c",
        f"cd /home/jovyan && rm groups shared && ln -s /etc groups && ln -s {ada_home} shared",
        check=False,
    )  # fmt: skip
    assert swapped.returncode == 0, swapped.stderr
    bob.stop_server()
    bob.start_server()
    box = stack.user_container("bob")
    assert mounts_of(box) == sorted(
        [
            ("bind", str(stack.pool / "users" / "bob"), "/home/jovyan", True),
            ("bind", str(stack.pool / "groups" / "g1"), "/srv/groups/g1", True),
            ("bind", str(stack.pool / "shared"), "/srv/shared", False),
        ]
    )
    assert mount_table(box) == [("/home/jovyan", "rw"), ("/srv/groups/g1", "rw"), ("/srv/shared", "ro")]
    assert docker("exec", box, "cat", f"/srv/groups/g1/{marker}").stdout == "g1"
    # The hub left bob's own links as he made them, and followed neither.
    assert bob.run("import os; os.readlink('groups'), os.readlink('shared')") == f"('/etc', '{ada_home}')"
    assert snapshot(*watched) == before


def snapshot(*paths):
    return {str(p): (os.lstat(p).st_uid, os.lstat(p).st_gid, os.lstat(p).st_mode) for p in paths}


def test_planted_links_change_nothing_outside_on_restart_and_archive(stack, people):
    ada = people["ada"]
    bob_home = stack.pool / "users" / "bob"
    watched = ["/etc", "/etc/passwd", bob_home, stack.pool / "groups" / "g1", stack.pool / "shared"]
    before = snapshot(*watched)
    ada.run(f"import os; os.symlink('/etc', 'x'); os.symlink('{bob_home}', 'bob')")
    ada.stop_server()
    # What ada could have done inside: the hub's groups link swapped for a link to /etc.
    home = stack.pool / "users" / "ada"
    os.rename(home / "groups", home / "groups.old")
    os.symlink("/etc", home / "groups")
    ada.start_server()
    assert ada.run("import os; os.readlink('groups')") == "'/etc'"
    assert mounts_of(stack.user_container("ada")) == ada_mounts(stack)
    ada.stop_server()
    assert snapshot(*watched) == before

    archived = roster(stack, "archive", "--remove-from-hub", "ada")
    assert archived.returncode == 0, archived.stderr
    target = next((stack.pool / "archive").iterdir())
    assert target.name.startswith("ada-")
    assert os.readlink(target / "x") == "/etc" and os.readlink(target / "groups") == "/etc"
    assert not home.exists()
    assert snapshot(*watched) == before
