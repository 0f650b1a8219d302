"""The spawn form: the profiles a user may choose, out to the browser and back.

Its HTML is ``profile-form.html``, with the hub's other templates in
spawner/hub/templates, rendered with autoescape: names and descriptions come from
the operator's file and reach the page escaped. It is rendered here, beside the
spawner that offers the form, rather than in :mod:`spawner.config.profiles` with an
environment handed down from here: the model of the file then knows no HTML and
needs no jinja2, and imports still go one way (spawn reads config's profiles and the
hub package's templates; neither reads spawn). An environment of its own, not
JupyterHub's, so that the form is the same in a unit test as in the hub.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from spawner.config.profiles import PROFILE_NAME_PATTERN, Profile, ProfileError

_TEMPLATES = Environment(loader=PackageLoader("spawner.hub"), autoescape=True, undefined=StrictUndefined)


def options_form(profiles: list[Profile], selected: str | None) -> str:
    """One radio button per profile the user may use (none for one); the last choice checked."""
    if len(profiles) <= 1:
        return ""
    default = next((p.name for p in profiles if p.default), profiles[0].name)
    checked = selected if selected in {p.name for p in profiles} else default
    return _TEMPLATES.get_template("profile-form.html").render(profiles=profiles, checked=checked)


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
