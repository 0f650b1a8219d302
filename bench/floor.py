"""The floor of a server's start, and what each step of a user image's start costs.

The floor: `docker run` of an image (a plain `jupyter server`, published on 127.0.0.1)
until its /api/status answers: the engine and the image, nothing else. The minimal
JupyterLab image (bench/minimal-lab/: the lab image's JupyterLab release alone) gives the
floor's floor.

The breakdown starts the lab image with one step taken away (or, for the hub's kind of
uid, added) at a time, and the datascience image without each server extension it adds
to the lab's; all variants interleaved round by round in a shuffled order. Each one's
p50 is given as a delta to its image's floor measured in the same rounds, in wall time
and in the CPU time of the container until it answered (less bent by a busy machine):

* each server extension the image loads, disabled (``jpserver_extensions``);
* dshub's config hooks (the nodelay websocket and the disk notice classes) set back to
  Jupyter's own;
* the entrypoint (tini and dshub-entrypoint) skipped, and the entrypoint with a uid the
  image does not know (as the hub starts it: nss_wrapper);
* no usable bytecode: ``PYTHONPYCACHEPREFIX`` points at an empty folder, so every module
  is compiled at start;
* rfc3987-syntax put back, as the image was before it took the package out (the minimal
  image's copy, which pip installs with JupyterLab, mounted where it was): jsonschema
  imports it when it is there and it builds its grammars at every start;
* ``jupyterhub-singleuser`` against plain ``jupyter server``. The single-user server does
  not start without a hub: it asks the hub's API for its version before it listens, and
  exits after 5 failed tries. Both are started in the network namespace of a stand-in
  (a 10-line HTTP server answering that one request with the hub's version header), so
  what is measured is the single-user server's own work, not the hub's.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import requests

from bench.common import container_cpu_seconds, p50, pct, table, wait_until
from spawner.core.constants import VERSION
from tests.support.stack import docker, free_port

MINIMAL_IMAGE = f"dshub/bench-minimal-lab:{VERSION}"
POLL = 0.05
TIMEOUT = 300
# Rounds of the breakdown: each starts every variant once (15 variants, ~2.5 s each here
# with the container's removal: about 4 minutes in all).
ROUNDS = 7
SERVER = ("jupyter", "server", "--ip=0.0.0.0", "--port=8888")
FLOOR = "floor"
# Where dshub-entrypoint puts HOME for the image's uid (its home is not writable).
TMP_HOME = "/tmp/home-65534"  # noqa: S108 -- the container's own /tmp
# A uid and gid from dshub's default ranges (DSHUB_UID_MIN, DSHUB_GID_MIN): unknown to
# the image, as every user's is when the hub starts their server.
HUB_USER = "20000:60000"
# Jupyter's own classes for what dshub's jupyter_server_config.json sets.
# The package the lab image takes out (images/lab/Dockerfile), and its row.
STOCK_PACKAGE = "rfc3987_syntax"
PUT_BACK = "rfc3987-syntax put back (the image before it took it out)"
JUPYTER_DEFAULT_HOOKS = (
    "--ServerApp.kernel_websocket_connection_class="
    "jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection",
    "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.CheckForUpdate",
)
# The stand-in hub: answers the single-user server's version check (any GET) and nothing else.
STANDIN_HUB = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Hub(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", "{version}")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{{}}")
ThreadingHTTPServer(("127.0.0.1", 8081), Hub).serve_forever()
"""
PREFIX = "/user/floor/"
STANDIN_SERVER = "stand-in hub: jupyter server"
STANDIN_SINGLEUSER = "stand-in hub: jupyterhub-singleuser"
SINGLEUSER_ENV = {
    "JUPYTERHUB_API_TOKEN": "standin",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-floor",
    "JUPYTERHUB_USER": "floor",
    "JUPYTERHUB_BASE_URL": "/",
    "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
    "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888{PREFIX}",
}


@dataclass(frozen=True)
class Variant:
    """One way to start an image: its row in the breakdown."""

    label: str
    image: str
    options: tuple[str, ...] = ()  # docker run options
    command: tuple[str, ...] = SERVER
    entrypoint: str | None = None  # instead of the image's: command[0] then runs without it
    # In the stand-in hub's network namespace (and behind its published port).
    standin: bool = False
    # /api/status needs the token; the single-user server checks tokens with the hub, so
    # the stand-in pair asks the unauthenticated /api (the server's version) instead.
    path: str = "api/status"
    prefix: str = "/"
    versus: str = FLOOR  # the row of the same image its delta is taken against


@dataclass(frozen=True)
class Standin:
    container: str
    port: int


def start(variant: Variant, project: str, standin: Standin | None = None) -> tuple[float, float]:
    """Seconds from `docker run` until the server answers on 127.0.0.1, and the CPU seconds
    the container used until then; the container is removed."""
    if variant.standin:
        assert standin is not None, f"{variant.label} needs the stand-in hub"
        port, network = standin.port, ("--network", f"container:{standin.container}")
    else:
        port = free_port()
        network = ("-p", f"127.0.0.1:{port}:8888")
    entry = ("--entrypoint", variant.entrypoint) if variant.entrypoint else ()
    argv = list(variant.command[1:] if variant.entrypoint else variant.command)
    # The single-user server would ask the (stand-in) hub about any token: it gets none.
    token = secrets.token_hex(16)
    headers = {}
    if variant.command[:2] == SERVER[:2]:
        argv.append(f"--IdentityProvider.token={token}")
        headers["Authorization"] = f"token {token}"
    url = f"http://127.0.0.1:{port}{variant.prefix}{variant.path}"
    label = ("--label", f"dshub.project={project}")
    started = time.monotonic()
    cid = docker("run", "-d", *label, *network, *entry, *variant.options, variant.image, *argv).stdout.strip()

    def answers() -> bool:
        try:
            r = requests.get(url, headers=headers, timeout=10)
        except requests.RequestException:
            return False
        return r.status_code == 200

    try:
        wait_until(answers, TIMEOUT, POLL, f"{variant.label} ({variant.image})")
        return time.monotonic() - started, container_cpu_seconds(cid)
    finally:
        docker("rm", "-f", cid, check=False)


def floor(image: str) -> Variant:
    """The floor: the image as built, a plain `jupyter server`."""
    return Variant(FLOOR, image)


def extensions(image: str) -> list[str]:
    """The server extensions a plain server of the image loads: its jupyter_server_config.d
    as the image's own config leaves them."""
    out = docker(
        "run", "--rm", "--entrypoint", "python", image, "-c",
        "import json; from jupyter_server.serverapp import ServerApp; app = ServerApp();"
        "app.load_config_file(); app.find_server_extensions(); print(json.dumps(app.jpserver_extensions))",
    ).stdout  # fmt: skip
    return sorted(name for name, enabled in json.loads(out).items() if enabled)


def without(base: Variant, names: list[str]) -> list[Variant]:
    """The image's floor with each of these server extensions disabled alone."""
    off = "--ServerApp.jpserver_extensions={}=False"
    return [replace(base, label=f"without {name}", command=(*SERVER, off.format(name))) for name in names]


def lab_variants(image: str, stock_package: str) -> list[Variant]:
    """The lab floor and each step of its start taken away (or added) alone; stock_package:
    the volume with the package the image takes out, as a stock install has it."""
    base = floor(image)
    put_back = f"{stock_package}:{site_packages(image)}/{STOCK_PACKAGE}:ro"
    env = tuple(f"--env={key}={value}" for key, value in SINGLEUSER_ENV.items())
    shared = replace(base, standin=True, options=env, path="api", prefix=PREFIX)
    return [
        base,
        *without(base, extensions(image)),
        replace(base, label="without dshub's config hooks", command=(*SERVER, *JUPYTER_DEFAULT_HOOKS)),
        replace(
            base,
            label="without the entrypoint (tini, dshub-entrypoint)",
            entrypoint="jupyter",
            options=("-e", f"HOME={TMP_HOME}"),
        ),
        replace(
            base, label="entrypoint, uid unknown to the image (nss_wrapper)", options=("--user", HUB_USER)
        ),
        replace(
            base,
            label="no usable bytecode (.pyc): all compiled",
            options=("-e", "PYTHONPYCACHEPREFIX=/tmp/pyc"),
        ),
        replace(base, label=PUT_BACK, options=("-v", put_back)),
        replace(shared, label=STANDIN_SERVER, command=(*SERVER, f"--ServerApp.base_url={PREFIX}")),
        replace(shared, label=STANDIN_SINGLEUSER, command=("jupyterhub-singleuser",), versus=STANDIN_SERVER),
    ]


def added_variants(image: str, lab: str) -> list[Variant]:
    """An image built on the lab image: its floor and each server extension it adds, disabled."""
    base, lab_loads = floor(image), set(extensions(lab))
    return [base, *without(base, [name for name in extensions(image) if name not in lab_loads])]


def site_packages(image: str) -> str:
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return docker("run", "--rm", "--entrypoint", "python", image, "-c", where).stdout.strip()


def stock_package(project: str) -> str:
    """A volume (labelled with the project) holding STOCK_PACKAGE as the minimal image has it,
    bytecode included."""
    volume = docker("volume", "create", "--label", f"dshub.project={project}").stdout.strip()
    source = f"{site_packages(MINIMAL_IMAGE)}/{STOCK_PACKAGE}/."
    copy = ("--user", "0", "-v", f"{volume}:/out", "--entrypoint", "cp", MINIMAL_IMAGE, "-a", source, "/out")
    docker("run", "--rm", *copy)
    return volume


@contextmanager
def standin_hub(image: str, project: str) -> Iterator[Standin]:
    """The stand-in hub's container, removed afterwards."""
    port = free_port()
    name = f"{project}-standin"
    version = docker(
        "run",
        "--rm",
        "--entrypoint",
        "python",
        image,
        "-c",
        "import jupyterhub; print(jupyterhub.__version__)",
    ).stdout.strip()
    docker(
        "run", "-d", "--name", name, "--label", f"dshub.project={project}", "-p", f"127.0.0.1:{port}:8888",
        "--entrypoint", "python3", image, "-c", STANDIN_HUB.format(version=version),
    )  # fmt: skip
    try:
        yield Standin(name, port)
    finally:
        docker("rm", "-f", name, check=False)


@dataclass
class Sample:
    image: str
    variant: str
    versus: str
    row: int  # the variant's place in the report
    run: int
    seconds: float
    cpu_seconds: float


def breakdown(images: dict[str, str], project: str, rounds: int = ROUNDS) -> list[Sample]:
    """The lab image's variants and those of the images built on it ({name: image}), each
    started once per round, in a shuffled order each round; what it makes is labelled with the
    project, for the caller to remove."""
    lab = images["lab"]
    rows = [("lab", variant) for variant in lab_variants(lab, stock_package(project))]
    for name, image in images.items():
        if name != "lab":
            rows += [(name, variant) for variant in added_variants(image, lab)]
    samples: list[Sample] = []
    with standin_hub(lab, project) as standin:
        for i in range(rounds):
            # An order, not a secret.
            for row, (name, variant) in random.Random(i).sample(list(enumerate(rows)), len(rows)):  # noqa: S311
                seconds, cpu = start(variant, project, standin)
                samples.append(Sample(name, variant.label, variant.versus, row, i, seconds, cpu))
    return samples


def spread(values: list[float]) -> float:
    """p75 - p25: how far a variant's samples scatter."""
    return pct(values, 75) - pct(values, 25)


def report(samples: list[Sample]) -> list[str]:
    """Each variant's p50 and its delta to its image's floor (or pair) of the same rounds."""
    rows = sorted({(s.row, s.image, s.variant, s.versus) for s in samples})

    def of(image: str, variant: str) -> tuple[list[float], list[float]]:
        chosen = [s for s in samples if (s.image, s.variant) == (image, variant)]
        return [s.seconds for s in chosen], [s.cpu_seconds for s in chosen]

    body = []
    for _, image, variant, versus in rows:
        wall, cpu = of(image, variant)
        base_wall, base_cpu = of(image, versus)
        delta = "" if variant == versus else f"{(p50(wall) - p50(base_wall)) * 1000:+.0f}"
        cpu_delta = "" if variant == versus else f"{(p50(cpu) - p50(base_cpu)) * 1000:+.0f}"
        body.append([
            image, variant, len(wall), f"{p50(wall):.2f}", f"{spread(wall):.2f}", delta,
            f"{p50(cpu):.2f}", f"{spread(cpu):.2f}", cpu_delta, "" if variant == versus else versus,
        ])  # fmt: skip
    header = ["image", "started", "starts", "p50 s", "p75-p25 s", "Δ p50 ms", "CPU p50 s", "CPU p75-p25 s"]
    header += ["Δ CPU ms", "Δ to"]
    return table(header, body)
