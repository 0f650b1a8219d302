"""What a user may choose at spawn: profiles (image, cpu, memory, processes, GPUs).

Profiles come from ``<DSHUB_CONFIG_DIR>/profiles.yaml``, checked against
:data:`SCHEMA` (unknown keys are errors) and then for what a schema cannot say
(unique names, one default, enough GPUs). Without that file there is one
profile made of the DSHUB_USER_IMAGE/MEM/CPU/PIDS settings. The hub re-reads the
file when it changes; a broken edit is logged and the last good profiles stay.

``python -m spawner.cli.profiles check FILE`` validates a file; ``... schema`` prints
the JSON schema (docs/profiles.md explains it).
"""

from __future__ import annotations

import html
import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from spawner.config.settings import (
    IDP_NAME_PATTERN,
    IMAGE_PATTERN,
    SettingsError,
    parse_disk_size,
    parse_memory,
)
from spawner.core.units import CPU_MAX, CPU_MIN, PIDS_MAX, PIDS_MIN, SIZE_PATTERN, docker_size

PROFILE_NAME_PATTERN = r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?"
GPU_ID_PATTERN = r"[A-Za-z0-9-]{1,64}"
PROFILES_FILE_NAME = "profiles.yaml"
# A disk quota: a size (checked again by parse_disk_size) or none.
DISK_QUOTA_PATTERN = r"^(none|[1-9][0-9]{0,15}[KMGTkmgt]?)$"

# A swarm placement constraint on what only a manager sets (a node's id, role,
# labels; not its hostname or engine labels, which a node reports of itself),
# == or !=, a plain value.
PLACEMENT_PATTERN = r"(node\.(id|role)|node\.labels\.[A-Za-z0-9._-]{1,64}) ?(==|!=) ?[A-Za-z0-9._-]{1,64}"

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "dshub profiles.yaml",
    "type": "object",
    "additionalProperties": False,
    "required": ["profiles"],
    "properties": {
        "profiles": {
            "description": "What users choose from at spawn, in the order shown.",
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/profile"},
        },
        "limits": {
            "description": "Totals per user, over all their running servers.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "servers_per_user": {
                    "description": "Servers a user may run at once, the default one included (default 2).",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                },
                "gpus_per_user": {
                    "description": "GPUs a user may hold at once (default: no limit but the profiles').",
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 64,
                },
                "disk_per_user": {
                    "description": "Disk quota of a user's folder: 10G, or none (default DSHUB_DISK_QUOTA).",
                    "type": "string",
                    "pattern": DISK_QUOTA_PATTERN,
                },
                "disk_per_group": {
                    "description": "Disk quota of the members of a hub group, instead of disk_per_user; "
                    "a member of several listed groups gets the most generous.",
                    "type": "object",
                    "propertyNames": {"pattern": f"^{IDP_NAME_PATTERN}$"},
                    "additionalProperties": {"type": "string", "pattern": DISK_QUOTA_PATTERN},
                },
            },
        },
        "gpus": {
            "description": "The host's GPUs that servers may be given, one device id each.",
            "type": "object",
            "additionalProperties": False,
            "required": ["devices"],
            "properties": {
                "devices": {
                    "description": "GPU ids as the driver knows them (nvidia-smi -L: 0, 1, GPU-<uuid>).",
                    "type": "array",
                    "items": {"type": "string", "pattern": f"^{GPU_ID_PATTERN}$"},
                    "uniqueItems": True,
                },
                "driver": {
                    "description": "Engine device driver for GPU requests (default nvidia).",
                    "type": "string",
                    "pattern": "^[a-z0-9_-]{1,32}$",
                },
            },
        },
    },
    "$defs": {
        "profile": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "image"],
            "properties": {
                "name": {
                    "description": "Short id: the form value and the dshub.profile label.",
                    "type": "string",
                    "pattern": f"^{PROFILE_NAME_PATTERN}$",
                },
                "display_name": {
                    "description": "Title on the form.",
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 80,
                },
                "description": {
                    "description": "One line under the title.",
                    "type": "string",
                    "maxLength": 300,
                },
                "image": {
                    "description": "User image; only images named in a profile can be spawned.",
                    "type": "string",
                    "pattern": f"^{IMAGE_PATTERN}$",
                },
                "cpu": {
                    "description": "CPU limit in CPUs (default DSHUB_CPU_LIMIT).",
                    "type": "number",
                    "minimum": CPU_MIN,
                    "maximum": CPU_MAX,
                },
                "memory": {
                    "description": "Memory limit, docker notation: 512M, 2G (default DSHUB_MEM_LIMIT).",
                    "type": "string",
                    "pattern": f"^{SIZE_PATTERN}$",
                },
                "pids": {
                    "description": "Most processes and threads (default DSHUB_PIDS_LIMIT).",
                    "type": "integer",
                    "minimum": PIDS_MIN,
                    "maximum": PIDS_MAX,
                },
                "gpus": {
                    "description": "GPUs given to the server (default 0).",
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 64,
                },
                "gpu_shared": {
                    "description": "true: other shared-GPU servers may get these GPUs (default: exclusive).",
                    "type": "boolean",
                },
                "placement": {
                    "description": "Swarm mode: constraints on the node the server runs on, as "
                    "docker service create --constraint takes them, on node.labels.*, node.role or "
                    "node.id (node.labels.gpu == true, node.role != manager); all must hold. Ignored "
                    "in single-host mode.",
                    "type": "array",
                    "items": {"type": "string", "pattern": f"^{PLACEMENT_PATTERN}$"},
                    "uniqueItems": True,
                    "maxItems": 16,
                },
                "groups": {
                    "description": "Hub groups whose members may use it; omitted: everyone.",
                    "type": "array",
                    "items": {"type": "string", "pattern": f"^{IDP_NAME_PATTERN}$"},
                    "uniqueItems": True,
                },
                "default": {
                    "description": "Preselected on the form (at most one profile).",
                    "type": "boolean",
                },
            },
        }
    },
}


class ProfileError(ValueError):
    """A profiles file is invalid, or a user asked for a profile they may not use."""


@dataclass(frozen=True)
class Profile:
    name: str
    display_name: str
    description: str
    image: str
    cpu: float
    mem_limit: int  # bytes
    pids: int
    gpus: int = 0
    gpu_shared: bool = False
    groups: tuple[str, ...] = ()
    default: bool = False
    placement: tuple[str, ...] = ()

    def open_to(self, groups: Iterable[str]) -> bool:
        return not self.groups or not set(self.groups).isdisjoint(groups)

    def summary(self) -> str:
        parts = [f"{self.cpu:g} CPU", f"{docker_size(self.mem_limit)} memory"]
        if self.gpus:
            parts.append(
                f"{self.gpus} {'shared ' if self.gpu_shared else ''}GPU{'s' if self.gpus > 1 else ''}"
            )
        return ", ".join(parts)


@dataclass(frozen=True)
class Profiles:
    profiles: tuple[Profile, ...]
    servers_per_user: int = 2
    gpus_per_user: int | None = None
    gpu_devices: tuple[str, ...] = ()
    gpu_driver: str = "nvidia"
    # Bytes, None: no quota. disk_per_user unset in the file: DSHUB_DISK_QUOTA.
    disk_per_user: int | None = None
    disk_per_group: tuple[tuple[str, int | None], ...] = ()
    images: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", frozenset(p.image for p in self.profiles))

    def open_to(self, groups: Iterable[str]) -> list[Profile]:
        groups = set(groups)
        return [p for p in self.profiles if p.open_to(groups)]

    def disk_quota(self, groups: Iterable[str]) -> int | None:
        """The user's disk quota in bytes (None: none).

        A member of groups listed in disk_per_group gets the most generous of their
        quotas, which may be below disk_per_user (e.g. guests); everyone else
        disk_per_user.
        """
        groups = set(groups)
        listed = [quota for group, quota in self.disk_per_group if group in groups]
        if not listed:
            return self.disk_per_user
        return None if None in listed else max(q for q in listed if q is not None)

    def choose(self, name: object, groups: Iterable[str]) -> Profile:
        """The profile called ``name`` (None: the default) if the user's groups may use it."""
        allowed = self.open_to(groups)
        if not allowed:
            raise ProfileError("No profile is open to your groups: ask an admin to add you to one.")
        if name is None:
            return next((p for p in allowed if p.default), allowed[0])
        if not isinstance(name, str):
            raise ProfileError("The profile must be given as its name.")
        chosen = next((p for p in allowed if p.name == name), None)
        if chosen is None:
            names = ", ".join(p.name for p in allowed)
            raise ProfileError(f"Profile {name[:40]!r} is not one you may use; you may use: {names}.")
        return chosen


@dataclass(frozen=True)
class Defaults:
    """Values of profiles that leave them out, and the profile used without a file."""

    image: str
    cpu: float
    mem_limit: int
    pids: int
    disk_quota: int | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> Defaults:
        return cls(
            settings.user_image,
            settings.cpu_limit,
            settings.mem_limit,
            settings.pids_limit,
            settings.disk_quota,
        )

    def single(self) -> Profiles:
        profile = Profile(
            "default", "Default", "", self.image, self.cpu, self.mem_limit, self.pids, default=True
        )
        return Profiles((profile,), disk_per_user=self.disk_quota)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice (plain YAML keeps the last one silently)."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ProfileError(f"line {key_node.start_mark.line + 1}: {key!r} is given twice.")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _where(error: jsonschema.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return path.lstrip(".") or "the file"


def parse(text: str, defaults: Defaults) -> Profiles:
    """Validate the text of a profiles file; every problem is named in one ProfileError."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ProfileError(f"not valid YAML: {e}") from None
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = [f"{_where(e)}: {e.message}" for e in sorted(validator.iter_errors(data), key=str)]
    if errors:
        raise ProfileError("\n".join(errors))
    limits = data.get("limits", {})
    gpus = data.get("gpus", {})
    devices = tuple(gpus.get("devices", ()))
    profiles = []
    for i, entry in enumerate(data["profiles"]):
        try:
            memory = parse_memory(f"profiles[{i}].memory", entry["memory"]) if "memory" in entry else None
        except SettingsError as e:
            errors.append(str(e))
            continue
        profiles.append(
            Profile(
                name=entry["name"],
                display_name=entry.get("display_name", entry["name"]),
                description=entry.get("description", ""),
                image=entry["image"],
                cpu=float(entry.get("cpu", defaults.cpu)),
                mem_limit=memory or defaults.mem_limit,
                pids=entry.get("pids", defaults.pids),
                gpus=entry.get("gpus", 0),
                gpu_shared=entry.get("gpu_shared", False),
                groups=tuple(entry.get("groups", ())),
                default=entry.get("default", False),
                placement=tuple(entry.get("placement", ())),
            )
        )
    disk_per_user = _disk_quota(
        "limits.disk_per_user", limits.get("disk_per_user"), defaults.disk_quota, errors
    )
    disk_per_group = tuple(
        (group, _disk_quota(f"limits.disk_per_group.{group}", raw, None, errors))
        for group, raw in sorted(limits.get("disk_per_group", {}).items())
    )
    names = [p.name for p in profiles]
    errors += [f"profile name {n!r} is used twice." for n in sorted({n for n in names if names.count(n) > 1})]
    if sum(p.default for p in profiles) > 1:
        errors.append("more than one profile says default: true.")
    for p in profiles:
        if p.gpus > len(devices):
            errors.append(
                f"profile {p.name!r} asks for {p.gpus} GPU(s) but gpus.devices lists {len(devices)}."
            )
        if p.gpu_shared and not p.gpus:
            errors.append(f"profile {p.name!r} says gpu_shared without gpus.")
    if errors:
        raise ProfileError("\n".join(errors))
    return Profiles(
        tuple(profiles),
        servers_per_user=limits.get("servers_per_user", 2),
        gpus_per_user=limits.get("gpus_per_user"),
        gpu_devices=devices,
        gpu_driver=gpus.get("driver", "nvidia"),
        disk_per_user=disk_per_user,
        disk_per_group=disk_per_group,
    )


def _disk_quota(where: str, raw: str | None, default: int | None, errors: list[str]) -> int | None:
    """A quota of the file in bytes (None: none); a bad one is added to errors."""
    if raw is None:
        return default
    if raw == "none":
        return None
    try:
        return parse_disk_size(where, raw)
    except SettingsError as e:
        errors.append(str(e))
        return None


class ProfilesFile:
    """The profiles in effect, re-read when the file changes.

    A broken edit never takes effect: the error is logged and the last good
    profiles stay until the file is fixed.
    """

    def __init__(self, path: Path, defaults: Defaults, log: logging.Logger | None = None) -> None:
        self.path = path
        self.defaults = defaults
        self.log = log or logging.getLogger("dshub.profiles")
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._current = self._read()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _read(self) -> Profiles:
        self._stamp = self._file_stamp()
        if self._stamp is None:
            return self.defaults.single()
        try:
            return parse(self.path.read_text(), self.defaults)
        except ProfileError as e:
            raise ProfileError(f"{self.path}:\n{e}") from None

    def current(self) -> Profiles:
        with self._lock:
            if self._file_stamp() != self._stamp:
                try:
                    self._current = self._read()
                    self.log.info("Profiles reloaded from %s", self.path)
                except ProfileError as e:
                    self.log.error("Keeping the previous profiles; the edited file is invalid: %s", e)
            return self._current


def options_form(profiles: list[Profile], selected: str | None) -> str:
    """The spawn form: one radio button per profile the user may use (none for one)."""
    if len(profiles) <= 1:
        return ""
    checked = selected if selected in {p.name for p in profiles} else None
    checked = checked or next((p.name for p in profiles if p.default), profiles[0].name)
    rows = []
    for p in profiles:
        esc = html.escape
        rows.append(
            f'<div class="form-check mb-2">'
            f'<input class="form-check-input" type="radio" name="profile" id="profile-{p.name}" '
            f'value="{p.name}"{" checked" if p.name == checked else ""}>'
            f'<label class="form-check-label" for="profile-{p.name}"><strong>{esc(p.display_name)}</strong>'
            f" <small>({esc(p.summary())})</small>"
            + (f'<br><span class="text-muted">{esc(p.description)}</span>' if p.description else "")
            + "</label></div>"
        )
    return '<fieldset><legend class="h5">Choose a profile</legend>' + "".join(rows) + "</fieldset>"


def profile_from_form(formdata: dict[str, list[Any]]) -> dict[str, str]:
    """user_options from a posted form; anything but one profile name is refused."""
    unknown = sorted(k for k in formdata if k not in ("profile", "_xsrf"))
    if unknown:
        raise ProfileError(f"Unexpected form field(s): {', '.join(k[:40] for k in unknown)}.")
    values = formdata.get("profile", [])
    if (
        len(values) != 1
        or not isinstance(values[0], str)
        or not re.fullmatch(PROFILE_NAME_PATTERN, values[0])
    ):
        raise ProfileError("Choose exactly one profile from the list.")
    return {"profile": values[0]}
