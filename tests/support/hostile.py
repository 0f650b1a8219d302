"""Hostile usernames: what an admin, a class list or an identity provider could send.

``REFUSED`` must be refused at every door with the rule named; ``SAME_AS`` are
spellings that normalise (Unicode NFKC, lowercase, outer blanks removed) to a
plain name and must be that one user, never a second one.
"""

REFUSED: list[str] = [
    # Traefik rule syntax (jupyterhub-traefik-proxy unquotes routespecs into backticks)
    "x`) || PathPrefix(`/",
    "x`) || Host(`evil.example",
    "a`)||PathPrefix(`/hub",
    "`",
    "x) || (PathPrefix(`/",
    "x\\`",
    'x" || PathPrefix("/',
    "x && Host(`a`)",
    "x%60)%20||%20PathPrefix(%60/",
    # JupyterHub route and URL syntax
    "a/b",
    "../hub",
    "..",
    ".",
    "a%2Fb",
    "%2e%2e",
    "a?next=/hub/admin",
    "a#frag",
    "a;b",
    "hub/api",
    "user/ada",
    "~root",
    "a b",
    " ",
    "",
    # shapes the rule refuses
    "-ada",
    "ada-",
    "ada..b",
    ".ada",
    "ada.",
    "a__b",
    "@ada",
    "ada@",
    # Unicode: confusables that NFKC does not map, and other scripts
    "\u0430da",  # Cyrillic a
    "ad\u0251",  # Latin alpha
    "\u0391da",  # Greek capital alpha
    "ada\u200b",  # zero-width space
    "ad\u00e1",  # a with acute
    "\u00df",  # sharp s
    "\u0131da",  # dotless i
    "ada\u202e",  # right-to-left override
    # control characters, terminal escapes, forged log lines
    "ada\nINFO forged log line",
    "ada\x00",
    "\x1b[2Jada",
    "ada\x07",
    # markup and shells
    "<script>alert(1)</script>",
    "a'b",
    'a"b',
    "$(id)",
    "a|b",
    # very long, and names that escape to one folder
    "a" * 65,
    "a" * 200,
    "-61da",
]

# spelling -> the one user it is
SAME_AS: dict[str, str] = {
    "ADA": "ada",
    "\uff21\uff24\uff21": "ada",  # full-width
    "\u212aate": "kate",  # Kelvin sign
    "\ufb01nn": "finn",  # fi ligature
    "ADA.LOVELACE@UNI.EXAMPLE": "ada.lovelace@uni.example",
    "ada\t": "ada",  # outer blanks go, as JupyterHub's login form strips them
    "ada\r": "ada",
    # a plain name that looks like another's escaped folder ("ada." escapes to ada-2e):
    # its own user with its own folder
    "ada-2e": "ada-2e",
}
