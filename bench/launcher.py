"""Time to the launcher: from pressing "Sign in" in Chromium until JupyterLab's launcher shows.

Real parts only: a dshub stack and the reference deployment (bench/reference/), both
with the lab image, and headless Chromium through Playwright (tests/support/browser.py),
each person in a browser context of their own.

* **First sign-in**, each sample a new user. dshub: a user the admin added (API), who
  signs in with their one-time initial password; the hub answers with the same form
  asking for a password of their own, which they type with the initial one again and
  press "Sign in" a second time. The reference (FirstUseAuthenticator): the first
  sign-in sets the password, one form. The clock runs from the (first) press until
  the launcher shows, except while the bench types into dshub's second form (a few
  tens of ms, kept in the CSV as ``typing_s``): what is timed is the systems' time,
  not a person's typing.
* **Returning user**: the same user, their server stopped through the API, signed out
  (the hub's logout) in the same browser context, so with the browser's cache of the
  first visit, signs in with their own password: from the press until the launcher
  shows. **Returning user, empty cache**: the same again in a new browser context.
* **VS Code from the home page** (dshub only, datascience stack: the lab image has no
  code-server): one user, with a file the bench put in their home (through the server's
  contents API), who opened VS Code once before the samples (code-server's first start
  in a home sets up its data there, once in a user's life). Each sample: their server
  stopped, a new context signed in to /hub/home, then (a) from clicking the home page's
  "VS Code" button until the workbench is usable, the server starting on the way;
  (b) the server now running: the same from /hub/home again; (c) the baseline, the
  running server's VS Code URL opened directly (as typed into the address bar) from
  /hub/home. (b) and (c) alternate their order sample by sample and both find the
  browser's cache as (a) left it. The server is stopped through the API after each sample.

When the launcher "shows": the launcher's Notebook tile (what a person clicks first)
is laid out and visible and JupyterLab's splash screen, which covers the page while
Lab loads, has been removed (it fades for 200 ms first; the same for both systems).
When VS Code is "usable": code-server's workbench is rendered and its file explorer
shows the bench's file: the explorer lists the home folder only once the workbench
has its connection to the code-server backend in the user's server and reads files
through it. Both are checked in the page at every animation frame: the clock's
resolution is about one frame (17 ms). A press is one mouse click at the button's
centre, after the button is on the page (Playwright's checks before a click are not
timed).

The systems alternate sample by sample (dshub, reference, dshub, ...), and each sample
starts with no user server of either system running. Where the time goes, per sample,
on its clock: dshub's new-password form shown, the hub's spawn-pending page shown, the
browser's first request for a page of the user's server (the hub said it is ready),
that server's first page shown (after the redirects of its sign-in with the hub, and
code-server's start when VS Code was not running); the rest is Lab or the workbench
loading. Every figure is on all samples; a sample that fails raises (the section then
says "Not measured"), a start the hub reports as failed at once, with its reason.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Frame, Locator, Page, Request, sync_playwright

from bench.common import (
    admin_session,
    make_users,
    p50,
    p95,
    stack,
    stop_server,
    table,
    user_image,
    verdict,
    wait_until,
)
from bench.reference import Reference
from tests.support.browser import launch, new_page, wait_for_settled_interfaces
from tests.support.hub import HubSession
from tests.support.stack import REPO

# The report's section (`make bench` replaces it, also with a failed run's "not measured").
TITLE = "## Time to the launcher"

# Per case and system: the whole measure (two stacks, the reference, 8 samples of each of
# the six cases) takes about 10 min on 2 cores.
SAMPLES = 8
TARGET_REFERENCE = 0.7  # p50 dshub / p50 reference, first sign-in and returning user (both caches)
PASSWORD = "launcher-password-1"  # noqa: S105 -- the bench users' own
# Longest a sample may take before it counts as failed (a start on a busy machine included).
SAMPLE_TIMEOUT_MS = 180_000
# Where a failed sample's screenshot goes.
FAILURES = REPO / "build" / "bench"
VSCODE_USER = "coder"
VSCODE_FILE = "launcher-bench.txt"
FIRST, RETURNING, RETURNING_EMPTY = "first sign-in", "returning user", "returning user, empty cache"
# A sample's marks on its clock (its CSV columns) and their titles in the report.
MARKS = {
    "new_password_form_s": "new-password form shown",
    "to_pending_s": "spawn-pending page shown",
    "to_server_s": "sent to the server",
    "to_server_page_s": "server's first page",
}
STOPPED, RUNNING, DIRECT = "stopped, button", "running, button", "running, URL typed"

# Seen first in both predicates below: the hub's spawn-pending page once the start failed
# (JupyterHub turns its bar red and shows why), so that a failed start ends the sample at once.
START_FAILED = """
  const bar = document.getElementById("progress-bar");
  if (location.pathname.startsWith("/hub/spawn-pending/") && bar && bar.classList.contains("bg-danger")) {
    const message = document.getElementById("progress-message");
    return {failed: message ? message.textContent.trim() : "(no message)"};
  }
"""
# True once the launcher shows (see the module's docstring).
LAUNCHER_SHOWN = f"""
(prefix) => {{{START_FAILED}
  if (!location.pathname.startsWith(prefix)) return false;
  if (document.getElementById("jupyterlab-splash")) return false;
  const tile = document.querySelector('.jp-Launcher .jp-LauncherCard[data-category="Notebook"]');
  if (!tile || !tile.checkVisibility()) return false;
  const box = tile.getBoundingClientRect();
  return box.width > 0 && box.height > 0;
}}
"""
# True once VS Code's explorer lists the file (see the module's docstring).
WORKBENCH_USABLE = f"""
([prefix, file]) => {{{START_FAILED}
  if (!location.pathname.startsWith(prefix)) return false;
  if (!document.querySelector(".monaco-workbench")) return false;
  const item = [...document.querySelectorAll('[role="treeitem"]')]
    .find((e) => e.getAttribute("aria-label") === file);
  if (!item || !item.checkVisibility()) return false;
  const box = item.getBoundingClientRect();
  return box.width > 0 && box.height > 0;
}}
"""
# dshub's login form, after a correct initial password: it asks for the user's own.
SECOND_FORM_SHOWN = """
() => {
  const field = document.getElementById("new_password_input");
  return !!field && field.checkVisibility();
}
"""


@dataclass
class Hub:
    """One system under test: where the browser reaches it, and an admin's API session."""

    system: str
    url: str
    admin: HubSession
    # dshub: each new user's one-time initial password; the reference has none.
    initial: dict[str, str] = field(default_factory=dict)


class Clock:
    """One sample's clock in one page: from the first press until stop(), less the bench's typing.

    It also notes, on the same clock, when the main frame first showed the hub's
    spawn-pending page, first asked for a page of the user's server and first showed one.
    """

    def __init__(self, page: Page, user: str) -> None:
        self.page = page
        self.server_prefix = f"/user/{user}/"
        self.started: float | None = None
        self.stopped: float | None = None
        self.typing = 0.0
        self._typing_since: float | None = None
        self.marks: dict[str, float] = {}
        page.on("framenavigated", self._navigated)
        page.on("request", self._requested)

    def elapsed(self) -> float:
        assert self.started is not None, "the clock has not started"
        return (self.stopped or time.monotonic()) - self.started - self.typing

    def stop(self) -> None:
        self.stopped = time.monotonic()

    def press(self, button: Locator) -> None:
        """Start (or resume) the clock and click the button once, at its centre."""
        button.wait_for(state="visible")
        box = button.bounding_box()
        assert box is not None, "the button is not on the page"
        now = time.monotonic()
        if self.started is None:
            self.started = now
        elif self._typing_since is not None:
            self.typing += now - self._typing_since
            self._typing_since = None
        self.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    def open(self, url: str) -> None:
        """Start the clock and open url, as typed into the address bar."""
        self.started = time.monotonic()
        self.page.goto(url, wait_until="commit")

    def pause(self, mark: str) -> None:
        """The page waits for the bench to type: the clock stops until the next press."""
        self.marks[mark] = self.elapsed()
        self._typing_since = time.monotonic()

    def _running(self) -> bool:
        return self.started is not None and self._typing_since is None

    def _navigated(self, frame: Frame) -> None:
        if not self._running() or frame != self.page.main_frame:
            return
        path = urlsplit(frame.url).path
        if path.startswith("/hub/spawn-pending/"):
            self.marks.setdefault("pending", self.elapsed())
        elif path.startswith(self.server_prefix):
            self.marks.setdefault("server page", self.elapsed())

    def _requested(self, request: Request) -> None:
        # The browser's first request of a page of the user's server: the hub has said the
        # server is ready (or sent a running one on), or the URL was typed.
        if (
            not self._running()
            or not request.is_navigation_request()
            or request.frame != self.page.main_frame
        ):
            return
        if urlsplit(request.url).path.startswith(self.server_prefix):
            self.marks.setdefault("sent", self.elapsed())

    def row(self, **fields: Any) -> dict[str, object]:
        """The sample, its clock stopped."""
        assert self.stopped is not None, "the clock still runs"
        seconds = self.elapsed()
        self.page.remove_listener("framenavigated", self._navigated)
        self.page.remove_listener("request", self._requested)
        sent, page = self.marks.get("sent"), self.marks.get("server page")
        assert sent is not None and page is not None, "the user's server never served a page to the browser"

        def mark(name: str) -> object:
            return round(self.marks[name], 3) if name in self.marks else ""

        return {
            **fields,
            "seconds": round(seconds, 3),
            # On the same clock: dshub's new-password form shown, the spawn-pending page
            # shown (where there is one), the browser sent to the user's server, the
            # server's first page; then that page loading until the end.
            "new_password_form_s": mark("form"),
            "to_pending_s": mark("pending"),
            "to_server_s": mark("sent"),
            "to_server_page_s": mark("server page"),
            "page_load_s": round(seconds - page, 3),
            "typing_s": round(self.typing, 3),
        }


def progress(row: dict[str, object]) -> dict[str, object]:
    """A sample, also shown as it is taken (a run takes minutes)."""
    print(
        f"bench: launcher: {row['system']} {row['case']} {row['user']}: {row['seconds']} s", file=sys.stderr
    )
    return row


@contextmanager
def person(browser: Browser, what: str) -> Iterator[Page]:
    """A page in a browser context of its own (a person, signed out), closed afterwards.

    When what the page is for fails, the error says where the page was and how it got
    there, and a screenshot of it is kept under build/bench/.
    """
    page = new_page(browser)
    opened = time.monotonic()
    trail: list[str] = []

    def navigated(frame: Frame) -> None:
        if frame == page.main_frame:
            trail.append(f"{time.monotonic() - opened:7.2f} s {frame.url}")

    page.on("framenavigated", navigated)
    try:
        yield page
    except Exception as error:
        shot = FAILURES / f"launcher-failed-{'-'.join(what.split())}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(shot))
        except Exception as no_shot:  # the page may be gone: the error says so, the trail stays
            shot = Path(f"(none: {no_shot})")
        pages = "\n".join(trail[-15:])
        raise RuntimeError(f"{what}: failed at {page.url}; screenshot {shot}; pages:\n{pages}") from error
    finally:
        page.context.close()


def login_form(page: Page, url: str, name: str, next_path: str = "") -> None:
    """The hub's login page with the name filled in (not timed)."""
    page.goto(f"{url}/hub/login" + (f"?next={next_path}" if next_path else ""))
    page.get_by_label("Username").fill(name)
    # A container started or stopped just before changes this host's interfaces; the
    # browser must not take that for a network change in the middle of the sample.
    wait_for_settled_interfaces()


def until(page: Page, predicate: str, arg: object, clock: Clock | None) -> None:
    """Until the predicate holds in the page (checked at every frame), then the clock stops.

    A start that failed on the way (the spawn-pending page says so) raises at once.
    """
    outcome = page.wait_for_function(predicate, arg=arg, polling="raf", timeout=SAMPLE_TIMEOUT_MS)
    if clock is not None:
        clock.stop()
    seen = outcome.json_value()
    if isinstance(seen, dict):
        raise RuntimeError(f"the server did not start: {seen['failed']}")


def launcher_shown(page: Page, clock: Clock, name: str) -> None:
    until(page, LAUNCHER_SHOWN, f"/user/{name}/lab", clock)


def first_sign_in(page: Page, hub: Hub, name: str, sample: int) -> dict[str, object]:
    login_form(page, hub.url, name)
    clock = Clock(page, name)
    sign_in = page.get_by_role("button", name="Sign in")
    initial = hub.initial.get(name)
    page.locator("#password_input").fill(PASSWORD if initial is None else initial)
    clock.press(sign_in)
    if initial is not None:
        page.wait_for_function(SECOND_FORM_SHOWN, polling="raf", timeout=SAMPLE_TIMEOUT_MS)
        clock.pause("form")
        page.locator("#new_password_input").fill(PASSWORD)
        page.locator("#password_input").fill(initial)
        clock.press(sign_in)
    launcher_shown(page, clock, name)
    return clock.row(case=FIRST, system=hub.system, sample=sample, user=name)


def signed_in_again(page: Page, hub: Hub, name: str, sample: int, case: str) -> dict[str, object]:
    """A user who has chosen their password signs in (after the hub's logout, when the page was theirs)."""
    page.goto(f"{hub.url}/hub/logout")
    login_form(page, hub.url, name)
    clock = Clock(page, name)
    page.locator("#password_input").fill(PASSWORD)
    clock.press(page.get_by_role("button", name="Sign in"))
    launcher_shown(page, clock, name)
    return clock.row(case=case, system=hub.system, sample=sample, user=name)


def lab_rows(browser: Browser, samples: int) -> list[dict[str, object]]:
    """First sign-ins and returns, dshub and the reference alternating, same lab image."""
    names = [f"person{i}" for i in range(samples)]
    rows: list[dict[str, object]] = []
    with stack({"DSHUB_USER_IMAGE": user_image("lab")}) as s:
        reference = Reference(user_image=user_image("lab"))
        try:
            reference.up()
            admin = admin_session(s)
            make_users(admin, names)
            dshub = Hub("dshub", s.url, admin, s.initial_passwords(names))
            # The reference's users come into being at their first sign-in.
            hubs = (dshub, Hub("reference", reference.url, reference.admin()))
            for i, name in enumerate(names):
                with ExitStack() as people:
                    pages = {
                        hub.system: people.enter_context(person(browser, f"{hub.system} {name}"))
                        for hub in hubs
                    }
                    for sample in (first_sign_in, partial(signed_in_again, case=RETURNING)):
                        for hub in hubs:
                            page = pages[hub.system]
                            rows.append(progress(sample(page, hub, name, i)))
                            # Lab left open would poll its stopped server during the other's sample.
                            page.goto("about:blank")
                            stop_server(hub.admin, name)
                for hub in hubs:
                    with person(browser, f"{hub.system} {name}, empty cache") as page:
                        rows.append(progress(signed_in_again(page, hub, name, i, RETURNING_EMPTY)))
                    stop_server(hub.admin, name)
        finally:
            reference.destroy()
    return rows


def home_has_vscode(person_session: HubSession) -> bool:
    """Whether the home page offers VS Code (the hub looks inside the image at its start)."""
    home = person_session.http.get(f"{person_session.base_url}/hub/home", timeout=30)
    return home.status_code == 200 and 'id="open-vscode"' in home.text


def signed_in(page: Page, url: str, name: str, next_path: str) -> None:
    """Signs in with the login form and goes on to next_path (not timed)."""
    login_form(page, url, name, next_path=next_path)
    page.locator("#password_input").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def workbench_usable(page: Page, name: str, clock: Clock | None = None) -> None:
    until(page, WORKBENCH_USABLE, [f"/user/{name}/vscode/", VSCODE_FILE], clock)


def vscode_rows(browser: Browser, samples: int) -> list[dict[str, object]]:
    """The home page's VS Code button, stopped and running server, and the URL typed."""
    name = VSCODE_USER
    rows: list[dict[str, object]] = []
    with stack({"DSHUB_USER_IMAGE": user_image("datascience")}) as s:
        admin = admin_session(s)
        make_users(admin, [name])
        user = s.first_sign_in(name, PASSWORD)
        user.start_server(timeout=300)
        put = user.bare.put(
            f"{s.url}/user/{name}/api/contents/{VSCODE_FILE}",
            headers={"Authorization": f"token {user.token}"},
            json={"type": "file", "format": "text", "content": "written by the bench\n"},
            timeout=30,
        )
        assert put.status_code == 201, put.text
        # Once in VS Code before the samples (not timed): code-server's first start in a
        # home sets up its data there, once in a user's life; every sample is of a user
        # who has used VS Code before.
        with person(browser, "VS Code first use") as page:
            signed_in(page, s.url, name, f"/user/{name}/vscode/")
            workbench_usable(page, name)
        stop_server(admin, name)
        wait_until(lambda: home_has_vscode(user), 120, 1, "the home page's VS Code button")
        for i in range(samples):
            with person(browser, f"VS Code sample {i}") as page:
                signed_in(page, s.url, name, "/hub/home")
                page.wait_for_url(f"{s.url}/hub/home")
                running = (RUNNING, DIRECT) if i % 2 == 0 else (DIRECT, RUNNING)
                for case in (STOPPED, *running):
                    if case != STOPPED:
                        page.goto(f"{s.url}/hub/home")
                        wait_for_settled_interfaces()
                    clock = Clock(page, name)
                    if case == DIRECT:
                        clock.open(f"{s.url}/user/{name}/vscode/")
                    else:
                        clock.press(page.locator("#open-vscode"))
                    workbench_usable(page, name, clock)
                    rows.append(progress(clock.row(case=case, system="dshub", sample=i, user=name)))
            stop_server(admin, name)
    return rows


def measure(samples: int) -> list[dict[str, object]]:
    with sync_playwright() as playwright:
        browser = launch(playwright.chromium)
        try:
            return lab_rows(browser, samples) + vscode_rows(browser, samples)
        finally:
            browser.close()


def seconds_of(rows: list[dict[str, object]], case: str, system: str, key: str = "seconds") -> list[float]:
    return [float(r[key]) for r in rows if r["case"] == case and r["system"] == system and r[key] != ""]


def report(rows: list[dict[str, object]], samples: int) -> str:
    lines = [
        TITLE,
        "",
        'Headless Chromium: from pressing "Sign in" until JupyterLab\'s launcher shows (its Notebook',
        "tile laid out, the splash screen gone), same lab image, dshub and the reference alternating",
        "sample by sample, no user server running when a sample starts. First sign-in: a new user in a",
        "new browser context (dshub: the admin added them, they sign in with the initial password and",
        "choose their own on the form the hub then shows, the bench's typing not timed; reference: the",
        "first sign-in sets the password). Returning user: the same user, their server stopped through",
        "the API, signed out (the hub's logout) in the same browser, its cache as the first visit left",
        f"it; with an empty cache: the same in a new browser context. {samples} samples per case and",
        "system; seconds, all samples (p95: nearest rank, so of fewer than 20 samples their largest).",
        "",
    ]
    body = []
    verdicts = []
    for case in (FIRST, RETURNING, RETURNING_EMPTY):
        mine, theirs = seconds_of(rows, case, "dshub"), seconds_of(rows, case, "reference")
        ratio = p50(mine) / p50(theirs)
        for system, values in (("dshub", mine), ("reference", theirs)):
            check = f"≤ {TARGET_REFERENCE}: {verdict(ratio, TARGET_REFERENCE)}" if system == "dshub" else ""
            body.append(
                [
                    case,
                    system,
                    len(values),
                    f"{p50(values):.2f}",
                    f"{p95(values):.2f}",
                    f"{ratio:.2f}" if system == "dshub" else "",
                    check,
                ]
            )
        verdicts.append(
            f"- {case}: p50 {p50(mine):.2f} s vs the reference's {p50(theirs):.2f} s = **{ratio:.2f}x** "
            f"(target ≤ {TARGET_REFERENCE}x: {verdict(ratio, TARGET_REFERENCE)}); p95 {p95(mine):.2f} vs "
            f"{p95(theirs):.2f} s"
        )
    lines += table(["case", "system", "samples", "p50 s", "p95 s", "p50 / reference", "target"], body)
    lines += [
        "",
        *verdicts,
        "",
        "Where the time goes: p50 of each mark on the sample's clock (from the press), then of the",
        "server's page loading until the end; seconds. *Sent to the server*: the browser's first",
        "request for a page of the user's server (the hub said it is ready, or sent a running one",
        "on); *server's first page*: the first such page shown, after the redirects of the server's",
        "sign-in with the hub (and, for VS Code, code-server starting if it was not running).",
        "",
    ]
    parts = []
    for case in (FIRST, RETURNING, RETURNING_EMPTY, STOPPED, RUNNING, DIRECT):
        for system in ("dshub", "reference"):
            total = seconds_of(rows, case, system)
            if not total:
                continue
            row: list[object] = [case, system]
            for key in (*MARKS, "page_load_s"):
                values = seconds_of(rows, case, system, key)
                row.append(f"{p50(values):.2f}" if values else "-")
            parts.append([*row, f"{p50(total):.2f}"])
    lines += table(["case", "system", *MARKS.values(), "then the page loading", "total"], parts)
    stopped, button, direct = (seconds_of(rows, case, "dshub") for case in (STOPPED, RUNNING, DIRECT))
    lines += [
        "",
        "VS Code from the hub's home page (dshub, datascience image): from clicking the home page's",
        '"VS Code" button until the workbench is usable (code-server\'s explorer lists a file the bench',
        "put in the user's home); baseline: the running server's VS Code URL opened directly. One user,",
        "a new browser context per sample, the server stopped after each: the stopped case finds the",
        "browser's cache empty, the two running cases (alternating in order) as it left it.",
        "",
    ]
    lines += table(
        ["VS Code", "samples", "p50 s", "p95 s"],
        [
            [case, len(v), f"{p50(v):.2f}", f"{p95(v):.2f}"]
            for case, v in ((STOPPED, stopped), (RUNNING, button), (DIRECT, direct))
        ],
    )
    lines += [
        "",
        f"The button's way on a running server (the hub's spawn page, which sends a running server on): "
        f"p50 {p50(button) - p50(direct):+.2f} s, p95 {p95(button) - p95(direct):+.2f} s over the URL typed.",
    ]
    return "\n".join(lines) + "\n"


def run(samples: int = SAMPLES) -> tuple[str, list[dict[str, object]]]:
    rows = measure(samples)
    return report(rows, samples), rows
