"""What a test needs of the process that runs it."""

import os

import pytest

# For tests whose code makes folders owned by the pool's uids and gids, as the hub
# does (it runs as root), or that check that root still owns something.
needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the pool hands folders to other uids: needs root (run as root, like the hub)",
)
