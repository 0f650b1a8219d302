"""The pool, not the hub database, records who owns what."""

import os

import pytest

from tests.support.hub import HubSession

pytestmark = pytest.mark.integration


def sign_up(stack, name, password):
    admin = HubSession(stack.url)
    admin.sign_in(stack.settings.admin_users[0], stack.admin_password())
    assert admin.api("POST", f"/users/{name}").status_code == 201
    person = HubSession(stack.url)
    person.sign_in(name, password)
    return person


def run(person, code):
    kernel = person.kernel(person.new_kernel())
    try:
        return kernel.execute(code)
    finally:
        kernel.close()


def test_uid_and_files_survive_loss_of_the_hub_database(stack):
    carol = sign_up(stack, "carol", "first password")
    carol.start_server()
    uid = int(run(carol, "import os; open('notes.txt', 'w').write('keep me'); os.getuid()"))
    carol.stop_server()
    assert os.stat(stack.pool / "users" / "carol").st_uid == uid

    # Everything of the hub goes: database, password db, secrets. The pool stays.
    stack.compose("down", "-v")
    stack.up()

    carol = sign_up(stack, "carol", "a new password after the loss")
    dave = sign_up(stack, "dave", "dave's password")
    for person in (carol, dave):
        person.start_server()
    try:
        assert run(carol, "import os; os.getuid()") == str(uid)
        assert run(carol, "open('notes.txt').read()") == "'keep me'"
        assert run(dave, "import os; os.getuid()") != str(uid)
    finally:
        for person in (carol, dave):
            person.stop_server()
