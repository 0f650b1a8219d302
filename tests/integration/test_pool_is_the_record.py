"""The pool, not the hub database, records who owns what."""

import os


def test_uid_and_files_survive_loss_of_the_hub_database(stack):
    carol = stack.sign_up("carol", "first password")
    carol.start_server()
    uid = int(carol.run("import os; open('notes.txt', 'w').write('keep me'); os.getuid()"))
    carol.stop_server()
    assert os.stat(stack.pool / "users" / "carol").st_uid == uid

    # Everything of the hub goes: database, password db, secrets. The pool stays.
    stack.recreate()

    carol = stack.sign_up("carol", "a new password after the loss")
    dave = stack.sign_up("dave", "dave's password")
    for person in (carol, dave):
        person.start_server()
    try:
        assert carol.run("import os; os.getuid()") == str(uid)
        assert carol.run("open('notes.txt').read()") == "'keep me'"
        assert dave.run("import os; os.getuid()") != str(uid)
    finally:
        for person in (carol, dave):
            person.stop_server()
