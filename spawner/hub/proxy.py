"""Traefik in its own container, fed by the hub through the file provider.

Traefik runs as an unprivileged user in its container and must be able to read
the rules file the hub (root) writes. jupyterhub-traefik-proxy writes it through
a 0600 temporary file; this writes it 0644 from the start, so Traefik never sees
a file it cannot read.

Adding a route is on every spawn's path, so four of jupyterhub-traefik-proxy's
costs are cut (BENCHMARKS.md, route registration):

* it waits for a new route by asking Traefik's API, which checks the API
  password's bcrypt hash on every request: ~300 ms of Traefik's CPU at bcrypt's
  default cost (12). The password is 256 random bits, which no work factor
  makes safer, so its hash uses bcrypt's lowest cost (4, ~1 ms);
* its wait for Traefik to load the route polls the API with randomised
  exponential backoff, so it can return long after Traefik has the route; this
  looks at short intervals, at most 50 ms apart;
* the `toml` package takes ~140 ms to write the rules of 1000 routes, and the
  whole file is rewritten per route; this writes the same TOML ~7x faster;
* the file is written in place, so Traefik rebuilds all routes once per write
  event; it is now written aside and moved in (one rebuild per change);
* the hub's own records of its routes (each route's target and data, which
  Traefik never uses) shared the watched file, nearly half its bytes, and
  Traefik parsed them at every reload; they are now a file of the hub's
  (:class:`SplitRulesFileHandler`).

Routes are checked before they reach Traefik, whatever the hub passes
(:func:`route_problem`). jupyterhub-traefik-proxy *unquotes* a routespec and
puts it between backticks in Traefik's rule language, so a username made of
rule syntax once became a rule that matched every request of the hub. The
username rule (spawner.core.names) keeps such names out; this is the second wall: a
route whose path, host, target or user holds anything outside a small safe set
is refused and logged, and one already in the rules file is removed.

With per-user origins (DSHUB_USER_SUBDOMAINS) each user's routes carry a host,
``<label>.<hub host>``: :func:`user_subdomain` makes the label, and
:func:`hub_pages_only_on_hub_host` keeps the hub's own pages off those hosts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import tempfile
from typing import Any
from urllib.parse import unquote, urlsplit

import bcrypt
from jupyterhub.utils import exponential_backoff, subdomain_hook_idna
from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
from jupyterhub_traefik_proxy.traefik_utils import TraefikConfigFileHandler, deep_merge
from traitlets import Float, Unicode, default, observe

from spawner.core.names import is_valid_username, shown
from spawner.pool.datapool import escape_name

RULES_MODE = 0o644
WRITING_DIR = ".writing"
RECORDS_DIR = ".records"
# bcrypt's lowest cost: see the module docstring on why that is safe for the API password.
API_HASH_ROUNDS = 4
# The largest sign-in form the edge lets through: a name, two passwords, a next URL, _xsrf.
SIGN_IN_BODY_MAX = 64 * 1024
# Names of dshub's own edge rules (sign-in page, per-user origins): made from the
# settings at every start. JupyterHub's routes are router_*/service_*.
EDGE_RULES_PREFIX = "dshub-"
# jupyterhub-traefik-proxy's names of a route's router and service (generate_alias).
_ROUTE_ALIASES = ("router_", "service_")
# A routespec: an optional host (DNS labels, optional port), then a path of
# segments made only of characters that mean nothing in Traefik's rule language
# or in a URL path (and never '.' or '..'). Checked both as given and unquoted (the form Traefik gets).
_ROUTESPEC = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?)?"
    r"/(?:(?!\.\.?/)[A-Za-z0-9._~@-]+/)*"
)
_TARGET = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~@/-]*)?")
_MAX_ROUTESPEC = 512
# DNS: a label has at most 63 characters, a whole name at most 253.
MAX_LABEL = 63
MAX_HOST = 253


def route_problem(routespec: str, target: str, data: dict[str, Any]) -> str | None:
    """Why this route must not reach Traefik, or None when it is safe to write."""
    if not isinstance(routespec, str) or len(routespec) > _MAX_ROUTESPEC:
        return "the route is not a string of at most 512 characters"
    if not (_ROUTESPEC.fullmatch(routespec) and _ROUTESPEC.fullmatch(unquote(routespec))):
        return f"the route {shown(routespec)} holds characters outside the safe set"
    host = routespec.partition("/")[0].partition(":")[0]
    if len(host) > MAX_HOST or any(len(label) > MAX_LABEL for label in host.split(".")):
        return f"the route's host {shown(host)} is longer than DNS allows"
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        return f"the target {shown(str(target))} is not a plain http(s)://host:port URL"
    user = data.get("user")
    if user is not None and not (isinstance(user, str) and is_valid_username(user)):
        return f"the user {shown(str(user))} breaks the username rule"
    return None


def user_label(name: str) -> str:
    """The DNS label of a user's host: their pool folder's name, which fits for most names.

    That escaping (spawner.pool.datapool.escape_name) keeps a-z and 0-9 and writes every
    other character as ``-xx`` (``ada.l@uni.example`` -> ``ada-2el-40uni-2eexample``),
    so different names give different labels, each a valid label that never holds
    ``--`` (so never an IDNA ``xn--`` label). Longer than 63 characters, the label is
    cut and ends in ``--`` and 128 bits of the name's hash: unlike JupyterHub's
    default hook (28 bits for names with ``.``, ``_`` or ``@``), nobody can pick a
    name that lands on another person's origin.
    """
    escaped = escape_name(name)
    if len(escaped) <= MAX_LABEL:
        return escaped
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
    return f"{escaped[: MAX_LABEL - 34]}--{digest}"


def user_subdomain(name: str, domain: str, kind: str) -> str:
    """JupyterHub.subdomain_hook: users at ``<user_label>.<hub host>``.

    Services keep JupyterHub's own hook (``<name>--service``, which no user label
    ends with); dshub's services have no pages anyway.
    """
    if kind == "user":
        return f"{user_label(name)}.{domain}"
    return subdomain_hook_idna(name, domain, kind)


def hub_pages_only_on_hub_host(public_host: str, entrypoint: str) -> dict[str, Any]:
    """Traefik rules that redirect /hub/... on any host but the hub's to the hub's host.

    The hub's route is Traefik's catch-all for every host, so that a stopped server's
    address (``<label>.<hub host>/user/<name>/``) reaches the hub, which sends the
    browser on to the hub's host. Its pages must not be served on a user's host: there
    a script of that user's server would share their origin (e.g. a sign-in page,
    and the cookies it sets, on a user's origin).
    """
    host = urlsplit(public_host).hostname
    return {
        "http": {
            "middlewares": {
                "dshub-to-hub-host": {
                    "redirectRegex": {"regex": "^[a-z]+://[^/]+/(.*)", "replacement": f"{public_host}/${{1}}"}
                }
            },
            "routers": {
                "dshub-hub-host-only": {
                    "rule": f"(Path(`/hub`) || PathPrefix(`/hub/`)) && !Host(`{host}`)",
                    "entryPoints": [entrypoint],
                    "middlewares": ["dshub-to-hub-host"],
                    "service": "noop@internal",
                    # Above the sign-in router, which matches /hub/login on any host.
                    "priority": 20_000,
                }
            },
        }
    }


# Header tables down to this depth ([http.routers]); deeper dicts are inline
# tables, one route per line.
_TABLE_DEPTH = 2


# A JSON value with " = " between key and value is a TOML inline value (JSON's
# string escapes are all valid TOML ones). ensure_ascii is off because TOML has no
# surrogate-pair escapes; TOML has no null, so None is dropped first.
_INLINE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(", ", " = "))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return value


def toml_dumps(data: dict[str, Any]) -> str:
    """TOML for a rules dict. None values are left out, as the `toml` package does."""
    lines: list[str] = []

    def table(path: list[str], node: dict[str, Any]) -> None:
        deeper = len(path) < _TABLE_DEPTH
        subtables = [(k, v) for k, v in node.items() if deeper and isinstance(v, dict)]
        values = [(k, v) for k, v in node.items() if v is not None and not (deeper and isinstance(v, dict))]
        if path and (values or not subtables):
            lines.append("[" + ".".join(map(_INLINE.encode, path)) + "]")
        lines.extend(f"{_INLINE.encode(k)} = {_INLINE.encode(_without_none(v))}" for k, v in values)
        for k, v in subtables:
            table([*path, k], v)

    table([], data)
    return "\n".join(lines) + "\n"


def sign_in_rules(
    per_second: int, entrypoint: str, hub_url: str, trusted_proxies: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Traefik rules for the sign-in page, in front of the hub: a bounded body and a rate limit.

    The hub's Tornado reads a body of up to 100 MB before any handler runs, and a
    sign-in may then wait its turn for up to 40 s (spawner/auth/localauth.py), body
    held: the edge refuses a sign-in body over SIGN_IN_BODY_MAX with 413 instead.

    The hub throttles failed sign-ins itself, but every request it answers, even
    a refusal, takes its one event loop; measured here, 200 parallel failed
    sign-ins from one address put the hub's API p95 at 10x its idle value.
    Traefik answers the excess (``per_second`` per client address; 0: no limit)
    with 429 before the hub sees it. Behind a TLS terminator (``trusted_proxies``)
    the address counted is the last one in X-Forwarded-For that no trusted proxy
    added, not the terminator's.
    """
    # In this order: the rate limit refuses the excess before its body is read.
    middlewares: dict[str, Any] = {}
    if per_second:
        limit: dict[str, Any] = {"average": per_second, "period": "1s", "burst": 2 * per_second}
        if trusted_proxies:
            limit["sourceCriterion"] = {"ipStrategy": {"excludedIPs": list(trusted_proxies)}}
        middlewares["dshub-signin-rate"] = {"rateLimit": limit}
    body = {"maxRequestBodyBytes": SIGN_IN_BODY_MAX, "memRequestBodyBytes": SIGN_IN_BODY_MAX}
    middlewares["dshub-signin-body"] = {"buffering": body}
    return {
        "http": {
            "middlewares": middlewares,
            "routers": {
                "dshub-signin": {
                    "rule": "PathPrefix(`/hub/login`)",
                    "entryPoints": [entrypoint],
                    "middlewares": list(middlewares),
                    "service": "dshub-signin-hub",
                    # Above the hub's catch-all route ("/"), whatever Traefik computes for it.
                    "priority": 10_000,
                }
            },
            "services": {"dshub-signin-hub": {"loadBalancer": {"servers": [{"url": hub_url}]}}},
        }
    }


class ReadableRulesFileHandler(TraefikConfigFileHandler):
    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        if file_path.endswith(".toml"):
            self._dump = lambda data, f: f.write(toml_dumps(data))

    def atomic_dump(self, data: Any) -> None:
        directory, base = os.path.split(os.path.abspath(self.file_path))
        # Written beside the watched directory, not in it: Traefik rebuilds every
        # route on each change it sees there, and writing a file in place gives it
        # one per write() (5 rebuilds per change measured; 1 with this). Traefik
        # watches no subdirectory and loads none of their *.tmp files.
        scratch = os.path.join(directory, WRITING_DIR)
        os.makedirs(scratch, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{base}-", suffix=".tmp", dir=scratch)
        try:
            os.fchmod(fd, RULES_MODE)
            with os.fdopen(fd, "w") as f:
                self._dump(data, f)
            os.replace(tmp, self.file_path)
        except BaseException:
            os.unlink(tmp)
            raise


class SplitRulesFileHandler(ReadableRulesFileHandler):
    """Traefik's rules in the watched file; the hub's records of its routes (the
    ``jupyterhub`` table) in ``records_path``, which Traefik never reads.

    A change writes the rules, then the records. The two can disagree only if the
    hub dies between the two writes; :meth:`load` (at the hub's start) then keeps
    a route only where both have it, and JupyterHub's route check adds back those
    of running servers, or rewrites one whose target changed. Records a writer
    left in the rules file (dshub before the split, or jupyterhub-traefik-proxy
    itself) are read too, so the route check sees those routes and judges them.
    Traefik loads the rules directory's subdirectories too, but only files it
    takes for rules (.toml, .yaml, .yml): the records are .json.
    """

    def __init__(self, file_path: str, records_path: str, log: logging.Logger) -> None:
        super().__init__(file_path)
        self.records_path = records_path
        self.log = log

    def load(self) -> dict[str, Any]:
        try:
            config = super().load()
        except FileNotFoundError:
            config = {}
        records = config.pop("jupyterhub", {})
        try:
            with open(self.records_path) as f:
                deep_merge(records, json.load(f))
        except FileNotFoundError:
            pass  # none yet
        except json.JSONDecodeError as e:
            # Safe to start without them: the rules' routes go below, the running ones come back.
            self.log.error("The hub's records of its routes are unreadable (%s): starting without them", e)
        config["jupyterhub"] = records
        for name in _keep_routes_in_both(config):
            self.log.warning(
                "Dropped %s: the hub's records of its routes and Traefik's rules disagreed", name
            )
        return config

    def atomic_dump(self, data: Any) -> None:
        super().atomic_dump({key: value for key, value in data.items() if key != "jupyterhub"})
        directory = os.path.dirname(os.path.abspath(self.records_path))
        # Readable: Traefik walks the rules directory, and one it cannot read fails its load.
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".routes-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                # None left out, as the TOML writer does: a record reads back as before.
                json.dump(_without_none(data.get("jupyterhub", {})), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.records_path)
        except BaseException:
            os.unlink(tmp)
            raise


def _keep_routes_in_both(config: dict[str, Any]) -> list[str]:
    """Take out of the config every route only the rules or only the records have; their names."""
    http = config.setdefault("http", {})
    routers, services = http.setdefault("routers", {}), http.setdefault("services", {})
    records = config["jupyterhub"].setdefault("routes", {})
    dropped = []
    for alias, record in list(records.items()):
        if record.get("router") not in routers or record.get("service") not in services:
            dropped.append(f"the record of {alias}")
            del records[alias]
    recorded = {record[kind] for record in records.values() for kind in ("router", "service")}
    for table in (routers, services):
        for name in [name for name in table if name.startswith(_ROUTE_ALIASES) and name not in recorded]:
            dropped.append(name)
            del table[name]
    return dropped


class DshubTraefikProxy(TraefikFileProviderProxy):
    """TraefikFileProviderProxy for an external Traefik that runs unprivileged."""

    check_route_interval = Float(
        0.01,
        config=True,
        help="""Seconds before the second look at Traefik's API while waiting for a new route.

        Each further wait is 1.25x longer, up to ``check_route_max_interval``.
        Traefik reloads the rules file in tens to hundreds of ms.
        """,
    )
    check_route_max_interval = Float(
        0.05,
        config=True,
        help="""Longest wait between two looks at Traefik's API for a new route: a spawn
        returns at most this long after Traefik has its route.""",
    )

    routes_records_file = Unicode(
        config=True, help="Where the hub keeps its records of its routes, apart from Traefik's rules."
    )

    @default("routes_records_file")
    def _records_beside_the_rules(self) -> str:
        # In a subdirectory, which Traefik does not watch; one per rules file.
        directory, name = os.path.split(self.dynamic_config_file)
        return os.path.join(directory, RECORDS_DIR, f"{name}.json")

    @default("dynamic_config_handler")
    def _default_handler(self) -> SplitRulesFileHandler:
        return SplitRulesFileHandler(self.dynamic_config_file, self.routes_records_file, self.log)

    @default("traefik_api_hashed_password")
    def _cheap_api_hash(self) -> str:
        salt = bcrypt.gensalt(rounds=API_HASH_ROUNDS)
        return bcrypt.hashpw(self.traefik_api_password.encode("utf8"), salt).decode("ascii")

    @default("dynamic_config")
    def _rules_rebuilt_from_the_records(self) -> dict[str, Any]:
        """The rules and records as loaded, each route's router and service made anew from its record.

        A router found in the rules under a recorded name, but with a rule, priority or
        middleware of someone else's making, does not survive the hub's start.
        """
        config = super()._load_dynamic_config()
        http = config["http"]
        for record in config["jupyterhub"]["routes"].values():
            if route_problem(record["routespec"], record["target"], record.get("data") or {}):
                continue  # JupyterHub's route check removes it, and says so
            made, _ = self._dynamic_config_for_route(
                record["routespec"], record["target"], record.get("data")
            )
            for table in ("routers", "services"):
                http[table].update(made["http"][table])
        return config

    @observe("dynamic_config_file", "routes_records_file")
    def _set_dynamic_config_file(self, change: Any) -> None:
        self.dynamic_config_handler = SplitRulesFileHandler(
            self.dynamic_config_file, self.routes_records_file, self.log
        )

    async def _setup_traefik_dynamic_config(self) -> None:
        """The rules file with this start's edge rules, not those of the last one too.

        jupyterhub-traefik-proxy merges the extra rules into the file it finds, which
        outlives the hub: a rule the settings no longer ask for (per-user origins or
        the sign-in limit turned off) would stay, e.g. redirecting every sign-in to a
        host name that is no longer the hub's.
        """
        http = self.dynamic_config.get("http", {})
        for table in ("routers", "middlewares", "services"):
            for name in [name for name in http.get(table, {}) if name.startswith(EDGE_RULES_PREFIX)]:
                del http[table][name]
        await super()._setup_traefik_dynamic_config()

    async def add_route(self, routespec: str, target: str, data: dict[str, Any]) -> None:
        problem = route_problem(routespec, target, data)
        if problem:
            self.log.error("Refused to write a route to Traefik: %s", problem)
            raise ValueError(f"route refused: {problem}")
        await super().add_route(routespec, target, data)

    async def check_routes(
        self, user_dict: dict[Any, Any], service_dict: dict[Any, Any], routes: dict[str, Any] | None = None
    ) -> None:
        """JupyterHub's periodic route check, minus routes and users that break the rules.

        Users whose names break the username rule (made before it existed) get
        no route: they are reported here at every check, until an admin renames
        or deletes them.
        """
        if not routes:
            routes = await self.get_all_routes()
        for routespec, route in list(routes.items()):
            problem = route_problem(routespec, route.get("target", ""), route.get("data") or {})
            if problem:
                self.log.error("Removing a route from Traefik's rules: %s", problem)
                await self.delete_route(routespec)
                del routes[routespec]
        routable = {}
        for key, user in user_dict.items():
            if is_valid_username(user.name):
                routable[key] = user
            elif any(spawner.ready for spawner in user.spawners.values()):
                self.log.error(
                    "User %s breaks the username rule and gets no route: rename or delete them",
                    shown(user.name),
                )
        await super().check_routes(routable, service_dict, routes)

    async def _wait_for_route(self, routespec: str) -> None:
        async def loaded() -> bool:
            found = await asyncio.gather(
                self._check_for_traefik_service(routespec, "service"),
                self._check_for_traefik_service(routespec, "router"),
            )
            return all(found)

        # JupyterHub's own backoff, at dshub's short intervals: never 50 ms late.
        await exponential_backoff(
            loaded,
            f"Traefik route for {routespec}: not ready",
            start_wait=self.check_route_interval,
            scale_factor=1.25,
            max_wait=self.check_route_max_interval,
            timeout=self.check_route_timeout,
            timeout_tolerance=0,
        )
