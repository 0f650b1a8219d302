"""What a user server loads at its start, in the user images as built.

jsonschema imports rfc3987-syntax, where it is installed, for its "iri" formats, and
that builds 38 Earley grammars at import: about 0.7 s of CPU on every server start
(BENCHMARKS.md, "Spawn → ready"). Every pip install into /opt/lab brings it back
(jupyter-events asks for jsonschema[format-nongpl]), so each image removes it after its
own; a new pip install that forgets to is caught here. The server extensions the images
are for stay enabled.
"""

from __future__ import annotations

import json

import pytest

from spawner.core.constants import VERSION
from tests.support.stack import docker

# The modules a server start loads (the single-user server's and JupyterLab's), then
# what is in memory and which server extensions the image's configuration enables.
LOADED = """
import json, sys
import jupyterhub.singleuser.extension, jupyterlab, jupyter_server_ydoc
from jsonschema import FormatChecker
from jupyter_server.serverapp import ServerApp
app = ServerApp()
app.load_config_file()
app.find_server_extensions()
print(json.dumps({
    "modules": sorted(m for m in ("rfc3987_syntax", "lark") if m in sys.modules),
    "formats": sorted(FormatChecker.checkers),
    "extensions": app.jpserver_extensions,
}))
"""
LOADS = {
    "lab": ["jupyter_server_fileid", "jupyter_server_terminals", "jupyter_server_ydoc", "jupyterlab"],
    "datascience": ["jupyter_server_proxy", "nbgitpuller"],
}


def image(name: str) -> str:
    return f"dshub/{name}:{VERSION}"


def loaded(name: str) -> dict[str, object]:
    run = ("run", "--rm", "--network", "none", "--entrypoint", "python")
    return json.loads(docker(*run, image(name), "-c", LOADED).stdout)


@pytest.mark.parametrize("name", ["lab", "datascience"])
def test_a_server_start_builds_no_iri_grammars_and_loads_what_the_image_is_for(name):
    seen = loaded(name)
    assert seen["modules"] == [], f"{image(name)} loads {seen['modules']} at a server's start"
    # jsonschema still checks the URI formats (rfc3986-validator); only "iri" is unchecked.
    assert {"uri", "uri-reference"} <= set(seen["formats"])
    assert "iri" not in seen["formats"]
    extensions = seen["extensions"]
    assert isinstance(extensions, dict)
    wanted = LOADS["lab"] + (LOADS["datascience"] if name == "datascience" else [])
    assert all(extensions.get(ext) for ext in wanted), extensions
