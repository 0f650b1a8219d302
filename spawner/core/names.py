"""The one username rule of dshub, applied at every door.

A username becomes a URL path (``/user/<name>/``), a Traefik rule, a container
name, a pool folder, a docker label, log lines and HTML. A name once made of
Traefik rule syntax routed every request of the hub to one user's container, so
whatever the door (admin page and REST API, ``make roster``, the built-in
sign-in, each OAuth/OIDC provider's username claim, ``DSHUB_ADMIN_USERS``) the
name goes through :func:`normalize_username` and :func:`username_problem`.

The rule (``USERNAME_RULE``): Unicode NFKC, then lowercase; then 1 to 64
characters of ``a-z 0-9``, single ``.``, ``_``, ``-`` or ``@`` between them, and
a letter or digit at both ends. So ``Ada`` and ``ADA`` written in full-width
letters (U+FF21...) are one user, ``ada``; a Kelvin sign (U+212A) becomes ``k``;
a Cyrillic ``a`` (U+0430) is refused: two spellings are one user or a refusal,
never two users. E-mail addresses and student numbers fit; quotes, slashes, spaces, backticks, ``%``, control
characters and anything outside ASCII after NFKC do not.

This module imports nothing of dshub: settings, the authenticators, the proxy
and the tools all take the rule from here.
"""

from __future__ import annotations

import logging
import re
import unicodedata

USERNAME_MAX = 64
USERNAME_PATTERN = r"[a-z0-9](?:[a-z0-9]|[._@-](?=[a-z0-9])){0,63}"
USERNAME_RULE = (
    "a username is 1 to 64 characters: lowercase letters a-z, digits, and single "
    "'.', '_', '-' or '@' between them (it starts and ends with a letter or digit)"
)
_USERNAME = re.compile(USERNAME_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


class InvalidUsername(ValueError):
    """A name that breaks the username rule; the message says which part and the rule."""


def normalize_username(raw: str) -> str:
    """The form a name is stored under: Unicode NFKC, then lowercase, outer blanks removed."""
    return unicodedata.normalize("NFKC", raw).strip().lower()


def username_problem(name: str) -> str | None:
    """What is wrong with an already normalised name, or None when it follows the rule."""
    if not name:
        return "the username is empty"
    if len(name) > USERNAME_MAX:
        return f"the username is {len(name)} characters long (at most {USERNAME_MAX})"
    if name != normalize_username(name):
        return f"the username is not in its normal form (it would be {shown(normalize_username(name))})"
    if not _USERNAME.fullmatch(name):
        return "the username has characters or a shape the rule does not allow"
    return None


def checked_username(raw: str) -> str:
    """The normalised name, or :class:`InvalidUsername` naming the problem and the rule."""
    name = normalize_username(raw)
    problem = username_problem(name)
    if problem:
        raise InvalidUsername(f"{shown(raw)} is refused: {problem}; {USERNAME_RULE}.")
    return name


def is_valid_username(name: str) -> bool:
    return username_problem(name) is None


def shown(text: str, limit: int = 80) -> str:
    """A name as it may be shown to an operator or in a log: quoted, no control characters.

    Newlines and terminal escapes become ``\\n``/``\\x1b`` (repr style), so a name
    can neither forge a log line nor drive the operator's terminal.
    """
    cut = text if len(text) <= limit else f"{text[:limit]}…"
    return repr(cut)


def without_control(text: str) -> str:
    """Text with control characters written as escapes, everything else unchanged."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class ControlFreeLogRecord(logging.LogRecord):
    """A log record whose message cannot hold control characters or newlines.

    Installed for the whole hub process (``logging.setLogRecordFactory``): JupyterHub
    logs names and paths as they were typed (e.g. the username of a failed sign-in),
    and one with a newline would forge a log line. Tracebacks are formatted apart
    and keep their lines.
    """

    def getMessage(self) -> str:
        return without_control(super().getMessage())
