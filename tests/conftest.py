"""Each test's marker comes from its directory: unit/, integration/, e2e/ or nodes/.

A file that forgets to say what it needs can then never drop out of `-m unit`
(or run there while needing the engine).
"""

from pathlib import Path

import pytest

KINDS = ("unit", "integration", "e2e", "nodes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(item.path).parent.name
        if kind not in KINDS:
            raise pytest.UsageError(
                f"{item.nodeid}: tests live in tests/unit, tests/integration, tests/e2e or tests/nodes"
            )
        item.add_marker(getattr(pytest.mark, kind))
