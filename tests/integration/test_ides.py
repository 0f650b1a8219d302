"""The data-science image: R, Python with R cells, and VS Code through the user's server."""

import json

import pytest
import requests

from tests.support.stack import docker


@pytest.fixture(scope="module")
def people(stack):
    ann, ben = stack.sign_up("ann", "ann-password"), stack.sign_up("ben", "ben-password")
    for person in (ann, ben):
        person.start_server()
    yield ann, ben
    for person in (ann, ben):
        person.stop_server()


def test_default_image_is_datascience(stack):
    assert stack.settings.user_image.startswith("dshub/datascience:")


def test_server_proxy_lists_the_ides(stack, people):
    ann, _ = people
    info = ann.server_get("server-proxy/servers-info").json()
    names = {server["name"] for server in info["server_processes"]}
    assert "vscode" in names
    assert ("rstudio" in names) == stack.has_rserver()


def test_r_kernel_runs(people):
    ann, _ = people
    kernel_id = requests.post(
        f"{ann.base_url}/user/ann/api/kernels",
        headers={"Authorization": f"token {ann.token}"},
        json={"name": "ir"},
        timeout=60,
    ).json()["id"]
    kernel = ann.kernel(kernel_id)
    try:
        assert kernel.execute("1+1") == "[1] 2"
        assert kernel.execute("R.version$major") == '[1] "4"'
    finally:
        kernel.close()


def test_notebook_with_python_and_r_cells_runs(stack, people):
    ann, _ = people
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {
                "cell_type": "code",
                "id": "py",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
                "source": "import pandas as pd\ndf = pd.DataFrame({'x': [1, 2, 3]})\n%load_ext rpy2.ipython",
            },
            {
                "cell_type": "code",
                "id": "r",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
                "source": "%%R -i df -o total\ntotal <- sum(df$x) * 2",
            },
            {
                "cell_type": "code",
                "id": "back",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
                "source": "print(int(total[0]))",
            },
        ],
    }
    resp = requests.put(
        f"{ann.base_url}/user/ann/api/contents/mixed.ipynb",
        headers={"Authorization": f"token {ann.token}"},
        json={"type": "notebook", "content": notebook},
        timeout=30,
    )
    assert resp.status_code in (200, 201), resp.text
    run = docker(
        "exec",
        stack.user_container("ann"),
        "dshub-entrypoint",
        "jupyter",
        "execute",
        "--inplace",
        "/home/jovyan/mixed.ipynb",
    )
    assert run.returncode == 0, run.stderr
    done = json.loads((stack.pool / "users" / "ann" / "mixed.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for o in done["cells"][2]["outputs"])
    assert text.strip() == "12"


def is_loopback(hex_address):
    # /proc/net/tcp spells IPv4 little-endian: 127.x.x.x ends in 7F (Docker's DNS is 127.0.0.11).
    return (len(hex_address) == 8 and hex_address.endswith("7F")) or hex_address == "0" * 24 + "01000000"


def reachable_listening_ports(container):
    """TCP ports listening on a non-loopback address, from /proc/net/tcp{,6}."""
    table = docker("exec", container, "sh", "-c", "cat /proc/net/tcp /proc/net/tcp6").stdout
    ports = set()
    for row in table.splitlines():
        fields = row.split()
        if len(fields) > 3 and fields[3] == "0A":  # LISTEN
            address, port = fields[1].rsplit(":", 1)
            if not is_loopback(address):
                ports.add(int(port, 16))
    return ports


def vscode_page(person, owner):
    # The browser's way in: the user's cookie, through Traefik and the owner's Jupyter server.
    return person.http.get(f"{person.base_url}/user/{owner}/vscode/", timeout=120)


def test_vscode_serves_and_its_websocket_connects(people):
    ann, _ = people
    page = vscode_page(ann, "ann")
    assert page.status_code == 200
    assert "vscode-workbench-web-configuration" in page.text or "code-server" in page.text
    ws = ann.vscode_websocket()
    try:
        assert ws.connected
    finally:
        ws.close()


def test_ides_are_private_to_their_user(stack, people):
    ann, ben = people
    assert vscode_page(ann, "ann").status_code == 200  # ann's code-server is running
    # Through the edge: ben's cookie or token cannot reach ann's IDE.
    assert vscode_page(ben, "ann").status_code == 403
    resp = requests.get(
        f"{ben.base_url}/user/ann/vscode/", headers={"Authorization": f"token {ben.token}"}, timeout=30
    )
    assert resp.status_code == 403
    # Inside ann's container only the Jupyter server listens on a reachable TCP address
    # (kernels listen on loopback); code-server is a unix socket.
    ann_box = stack.user_container("ann")
    assert reachable_listening_ports(ann_box) == {8888}
    # code-server's own command line names the socket it listens on, and the kernel has it open.
    cmdline = docker("exec", ann_box, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' '\\n'").stdout
    (socket_path,) = {line.split("=", 1)[1] for line in cmdline.splitlines() if line.startswith("--socket=")}
    assert socket_path.startswith("/tmp/jupyter-server-proxy-")
    assert socket_path in docker("exec", ann_box, "cat", "/proc/net/unix").stdout
    # From ben's container: nothing of ann's answers, not even the Jupyter port (the
    # network policy: only the edge proxy and the hub reach a user server).
    ann_ip = json.loads(docker("inspect", ann_box).stdout)[0]["NetworkSettings"]["Networks"][
        stack.settings.network
    ]["IPAddress"]
    probe = (
        "import socket\n"
        "for port in (8080, 8787, 13434, 8888):\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        f"    print(port, s.connect_ex(('{ann_ip}', port)) == 0)\n"
    )
    out = docker("exec", stack.user_container("ben"), "python3", "-c", probe).stdout.split("\n")
    assert [line for line in out if line.endswith("False")] == [
        "8080 False",
        "8787 False",
        "13434 False",
        "8888 False",
    ]
