"""What a user may choose at spawn: profiles (image, cpu, memory, processes, GPUs).

Profiles come from ``<DSHUB_CONFIG_DIR>/profiles.yaml``, and :class:`Profiles` is
that file: one pydantic model holds its keys, their types, bounds and descriptions
(unknown keys are errors) and validators for what types cannot say (unique names,
one default, enough GPUs). What a profile leaves out comes from the settings
(:class:`Defaults`, the validation context). Without that file there is one profile
made of the DSHUB_USER_IMAGE/MEM/CPU/PIDS settings. The hub re-reads the file when
it changes; a broken edit is logged and the last good profiles stay.

``python -m spawner.cli.profiles check FILE`` validates a file; ``... schema`` prints
the JSON schema made from the model (docs/profiles.md explains it). The spawn form
is :mod:`spawner.spawn.form`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema, ErrorDetails, PydanticCustomError, PydanticKnownError

from spawner.config.settings import IDP_NAME_PATTERN, IMAGE_PATTERN
from spawner.core.units import (
    CPU_MAX,
    CPU_MIN,
    DISK_MAX,
    DISK_MIN,
    MEMORY_MAX,
    MEMORY_MIN,
    PIDS_MAX,
    PIDS_MIN,
    SIZE_PATTERN,
    docker_size,
    parse_size,
)

PROFILE_NAME_PATTERN = r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?"
GPU_ID_PATTERN = r"[A-Za-z0-9-]{1,64}"
PROFILES_FILE_NAME = "profiles.yaml"
# A disk quota: a size (checked against DISK_MIN..DISK_MAX too) or none.
DISK_QUOTA_PATTERN = r"(none|[1-9][0-9]{0,15}[KMGTkmgt]?)"

# A swarm placement constraint on what only a manager sets (a node's id, role,
# labels; not its hostname or engine labels, which a node reports of itself),
# == or !=, a plain value.
PLACEMENT_PATTERN = r"(node\.(id|role)|node\.labels\.[A-Za-z0-9._-]{1,64}) ?(==|!=) ?[A-Za-z0-9._-]{1,64}"


class ProfileError(ValueError):
    """A profiles file is invalid, or a user asked for a profile they may not use."""


# -- the values of the file ------------------------------------------------------


def _whole(pattern: str) -> str:
    return f"^{pattern}$"


def _text(raw: object, pattern: str) -> str:
    """raw if it is a string matching pattern, refused as pydantic refuses a string field."""
    if not isinstance(raw, str):
        raise PydanticKnownError("string_type")
    if not re.fullmatch(pattern, raw):
        raise PydanticKnownError("string_pattern_mismatch", {"pattern": _whole(pattern)})
    return raw


def _size_error(problem: str) -> PydanticCustomError:
    # _problem puts the place and the value in front, as settings.py words a size:
    # "profiles[0].memory='1M' is below ...".
    return PydanticCustomError("size", "{problem}", {"problem": problem})


def _invalid(problem: str) -> PydanticCustomError:
    return PydanticCustomError("profiles", "{problem}", {"problem": problem})


def _memory(raw: object) -> int:
    value = parse_size(_text(raw, SIZE_PATTERN))
    if value is None:
        raise _size_error("is not a memory size: write e.g. 512M or 2G.")
    if value < MEMORY_MIN:
        raise _size_error(f"is below the {docker_size(MEMORY_MIN)} a Jupyter server needs.")
    if value > MEMORY_MAX:
        raise _size_error(f"is out of range: use {docker_size(MEMORY_MIN)}..{docker_size(MEMORY_MAX)}.")
    return value


def _disk_quota(raw: object) -> int | None:
    text = _text(raw, DISK_QUOTA_PATTERN)
    if text == "none":
        return None
    value = parse_size(text)
    if value is None or not DISK_MIN <= value <= DISK_MAX:
        raise _size_error(f"is out of range: use {docker_size(DISK_MIN)}..{docker_size(DISK_MAX)}.")
    return value


def _file_size(validate: Any, pattern: str) -> PlainValidator:
    """Bytes from a size as the file writes it (2G); the schema shows the string."""
    return PlainValidator(validate, json_schema_input_type=Annotated[str, Field(pattern=_whole(pattern))])


def _tuple(value: Any) -> Any:
    # A YAML list, kept as a tuple: hashable, and unchanged under the spawners sharing it.
    return tuple(value) if isinstance(value, list) else value


def _unique(items: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(set(items)) != len(items):
        raise PydanticCustomError("unique", "{items} has non-unique elements", {"items": list(items)})
    return items


_T = TypeVar("_T")
_Set = Annotated[
    tuple[_T, ...],
    BeforeValidator(_tuple),
    AfterValidator(_unique),
    Field(json_schema_extra={"uniqueItems": True}),
]

ProfileName = Annotated[str, Field(pattern=_whole(PROFILE_NAME_PATTERN))]
GroupName = Annotated[str, Field(pattern=_whole(IDP_NAME_PATTERN))]
GpuId = Annotated[str, Field(pattern=_whole(GPU_ID_PATTERN))]
Placement = Annotated[str, Field(pattern=_whole(PLACEMENT_PATTERN))]
Memory = Annotated[int, _file_size(_memory, SIZE_PATTERN)]
DiskQuota = Annotated[int | None, _file_size(_disk_quota, DISK_QUOTA_PATTERN)]


class _FileModel(BaseModel):
    # Keys exactly as documented, each of its JSON type ("2" is no number), read-only.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- the file ----------------------------------------------------------------------


class Profile(_FileModel):
    """A choice on the spawn form: an image and its limits, for everyone or some groups."""

    # Only these must be written: _fill_in gives the others.
    model_config = ConfigDict(json_schema_extra={"required": ["name", "image"]})

    name: ProfileName = Field(description="Short id: the form value and the dshub.profile label.")
    # Left out: the name (pydantic before 2.11 asks even when the name was refused).
    display_name: str = Field(
        default_factory=lambda data: data.get("name", ""),
        min_length=1,
        max_length=80,
        description="Title on the form (default: name).",
    )
    description: str = Field("", max_length=300, description="One line under the title.")
    image: str = Field(
        pattern=_whole(IMAGE_PATTERN),
        description="User image; only images named in a profile can be spawned.",
    )
    cpu: float = Field(ge=CPU_MIN, le=CPU_MAX, description="CPU limit in CPUs (default DSHUB_CPU_LIMIT).")
    mem_limit: Memory = Field(
        alias="memory", description="Memory limit, docker notation: 512M, 2G (default DSHUB_MEM_LIMIT)."
    )
    pids: int = Field(
        ge=PIDS_MIN, le=PIDS_MAX, description="Most processes and threads (default DSHUB_PIDS_LIMIT)."
    )
    gpus: int = Field(0, ge=0, le=64, description="GPUs given to the server.")
    gpu_shared: bool = Field(
        False, description="true: other shared-GPU servers may get these GPUs (default: exclusive)."
    )
    placement: _Set[Placement] = Field(
        (),
        max_length=16,
        description="Swarm mode: constraints on the node the server runs on, as docker service "
        "create --constraint takes them, on node.labels.*, node.role or node.id (node.labels.gpu "
        "== true, node.role != manager); all must hold. Ignored in single-host mode.",
    )
    groups: _Set[GroupName] = Field((), description="Hub groups whose members may use it; omitted: everyone.")
    default: bool = Field(False, description="Preselected on the form (at most one profile).")

    @model_validator(mode="before")
    @classmethod
    def _fill_in(cls, data: Any, info: ValidationInfo) -> Any:
        """Limits the entry leaves out: the settings', checked as if the file wrote them (bytes)."""
        if not isinstance(data, dict):
            return data
        defaults: Defaults = info.context
        return {"cpu": defaults.cpu, "memory": str(defaults.mem_limit), "pids": defaults.pids} | data

    def open_to(self, groups: Iterable[str]) -> bool:
        return not self.groups or not set(self.groups).isdisjoint(groups)

    def summary(self) -> str:
        parts = [f"{self.cpu:g} CPU", f"{docker_size(self.mem_limit)} memory"]
        if self.gpus:
            parts.append(
                f"{self.gpus} {'shared ' if self.gpu_shared else ''}GPU{'s' if self.gpus > 1 else ''}"
            )
        return ", ".join(parts)


class Limits(_FileModel):
    """Totals per user, over all their running servers."""

    # Nothing must be written: _fill_in gives disk_per_user.
    model_config = ConfigDict(json_schema_extra={"required": []})

    servers_per_user: int = Field(
        2, ge=1, le=100, description="Servers a user may run at once, the default one included."
    )
    # Left out: None, no limit. A factory, so that the schema shows no null default and
    # pydantic checks an int: null in the file is refused, as every other null is.
    gpus_per_user: int = Field(
        default_factory=lambda: None,
        ge=0,
        le=64,
        description="GPUs a user may hold at once (default: no limit but the profiles').",
    )
    disk_per_user: DiskQuota = Field(
        description="Disk quota of a user's folder: 10G, or none (default DSHUB_DISK_QUOTA)."
    )
    disk_per_group: dict[GroupName, DiskQuota] = Field(
        {},
        # Other keys are refused here too, not only by patternProperties' silence.
        json_schema_extra={"additionalProperties": False},
        description="Disk quota of the members of a hub group, instead of disk_per_user; "
        "a member of several listed groups gets the most generous.",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_in(cls, data: Any, info: ValidationInfo) -> Any:
        """disk_per_user left out: the setting's quota, checked as if the file wrote it (bytes)."""
        if not isinstance(data, dict):
            return data
        quota = info.context.disk_quota
        return {"disk_per_user": "none" if quota is None else str(quota)} | data


class Gpus(_FileModel):
    """The host's GPUs that servers may be given, one device id each."""

    devices: _Set[GpuId] = Field(
        description="GPU ids as the driver knows them (nvidia-smi -L: 0, 1, GPU-<uuid>)."
    )
    driver: str = Field(
        "nvidia", pattern="^[a-z0-9_-]{1,32}$", description="Engine device driver for GPU requests."
    )


class Profiles(_FileModel):
    """What users may choose from, and the limits around their choices."""

    model_config = ConfigDict(title="dshub profiles.yaml")

    # A list: pydantic counts only the good items of a tuple against min_length, so a
    # tuple of broken profiles would be called empty too.
    profiles: list[Profile] = Field(
        min_length=1, description="What users choose from at spawn, in the order shown."
    )
    # Validated, so that a file without limits still gets the settings' disk quota.
    limits: Limits = Field({}, validate_default=True)
    gpus: Gpus = Gpus(devices=())

    @model_validator(mode="after")
    def _consistent(self) -> Profiles:
        """What types cannot say: unique names, one default, GPUs there are; all at once."""
        names = [p.name for p in self.profiles]
        problems = [
            f"profile name {n!r} is used twice." for n in sorted({n for n in names if names.count(n) > 1})
        ]
        if sum(p.default for p in self.profiles) > 1:
            problems.append("more than one profile says default: true.")
        devices = len(self.gpus.devices)
        for p in self.profiles:
            if p.gpus > devices:
                problems.append(
                    f"profile {p.name!r} asks for {p.gpus} GPU(s) but gpus.devices lists {devices}."
                )
            if p.gpu_shared and not p.gpus:
                problems.append(f"profile {p.name!r} says gpu_shared without gpus.")
        if problems:
            raise _invalid("\n".join(problems))
        return self

    @property
    def servers_per_user(self) -> int:
        return self.limits.servers_per_user

    @property
    def gpus_per_user(self) -> int | None:
        return self.limits.gpus_per_user

    @property
    def gpu_devices(self) -> tuple[str, ...]:
        return self.gpus.devices

    @property
    def gpu_driver(self) -> str:
        return self.gpus.driver

    @property
    def images(self) -> frozenset[str]:
        return frozenset(p.image for p in self.profiles)

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
        listed = [quota for group, quota in self.limits.disk_per_group.items() if group in groups]
        if not listed:
            return self.limits.disk_per_user
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
    """The settings a profile falls back on, and the one profile used without a file."""

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
        entry = {"name": "default", "display_name": "Default", "image": self.image, "default": True}
        return _validated({"profiles": [entry]}, self)


class _FileSchema(GenerateJsonSchema):
    """The JSON schema as editors check the file with it: definitions named like the
    file's keys (profile, limits, gpus), no titles made up from field names."""

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        return {"$schema": self.schema_dialect, **super().generate(schema, mode)}

    def normalize_name(self, name: str) -> str:
        return super().normalize_name(name).lower()

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


SCHEMA: dict[str, Any] = Profiles.model_json_schema(schema_generator=_FileSchema)


# -- reading the file ----------------------------------------------------------------


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

# pydantic's error types, as the JSON types of the file.
_JSON_TYPES = {
    "string_type": "string",
    "int_type": "integer",
    "float_type": "number",
    "bool_type": "boolean",
    "list_type": "array",
    "tuple_type": "array",
    "dict_type": "object",
    "model_type": "object",
}


def _problem(error: ErrorDetails) -> str | None:
    """One problem at its place (profiles[1].memory), in the words of the JSON schema.

    None for what only follows from another problem: the title of a broken name.
    """
    loc, kind, value, ctx = error["loc"], error["type"], error["input"], error.get("ctx", {})
    if kind == "default_factory_not_called":
        return None
    if kind == "missing":
        return f"{_where(loc[:-1])}: {loc[-1]!r} is a required property"
    if kind == "extra_forbidden":
        return f"{_where(loc[:-1])}: Additional properties are not allowed ({loc[-1]!r} was unexpected)"
    if loc[-1:] == ("[key]",):
        loc = loc[:-2]  # a key of a map is wrong in the map, not at itself
    where = _where(loc)
    if isinstance(value, tuple):
        value = list(value)  # as the file wrote it (_tuple)
    if kind == "size":
        return f"{where}={value!r} {error['msg']}"
    if kind == "profiles" and not loc:
        return error["msg"]  # the checks of the whole file name their profiles themselves
    if kind in _JSON_TYPES:
        return f"{where}: {value!r} is not of type {_JSON_TYPES[kind]!r}"
    bound = ctx.get("ge", ctx.get("le"))
    if isinstance(bound, float) and bound.is_integer():
        bound = int(bound)  # as the file would write it: 1024, not the float field's 1024.0
    said = {
        "string_pattern_mismatch": f"does not match {ctx.get('pattern')!r}",
        "greater_than_equal": f"is less than the minimum of {bound}",
        "less_than_equal": f"is greater than the maximum of {bound}",
        "too_short": "should be non-empty",  # every lower bound of a length is 1
        "string_too_short": "should be non-empty",
        "too_long": "is too long",
        "string_too_long": "is too long",
    }.get(kind)
    return f"{where}: {value!r} {said}" if said else f"{where}: {error['msg']}"


def _where(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "the file"


def parse(text: str, defaults: Defaults) -> Profiles:
    """Validate the text of a profiles file; every problem is named in one ProfileError."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ProfileError(f"not valid YAML: {e}") from None
    return _validated(data, defaults)


def _validated(data: Any, defaults: Defaults) -> Profiles:
    try:
        return Profiles.model_validate(data, context=defaults)
    except ValidationError as e:
        problems = (_problem(error) for error in e.errors())
        raise ProfileError("\n".join(p for p in problems if p)) from None


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
