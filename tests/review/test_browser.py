"""The review page in a real browser: Debian's Chromium driven by Playwright, against the
real app served by uvicorn on a free localhost port.

A teacher opens a sign-in link, finds the held post with its highlighted words, releases
it, and finds the release in the audit trail (the history page and the CSV export). A
screenshot of the queue, on a phone-sized screen, is left in ``test-artifacts/``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from moderation.api.main import create_app
from moderation.config import get_settings
from moderation.domain import Category
from moderation.policy_document import parse_document
from moderation.schemas import PostCreate, RosterIn
from moderation.storage.audit import SCHOOL_TZ
from moderation.storage.db import session_scope
from moderation.storage.policies import set_policy
from moderation.storage.posts import create_post
from moderation.storage.roster import apply_roster
from tests.conftest import Configure
from tests.helpers import attachment, post_body
from tests.moderation.photos import LIMITS, class_photo, encode, enrol
from tests.review.conftest import add_school, seed_post, token_for
from workers import pipeline

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.slow  # needs Debian's chromium: scripts/browser installs it


class LiveServer:
    """The app under uvicorn in a thread, on a port the OS chose."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(), log_level="warning", lifespan="off", ws="none", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture
def live(configure: Configure, sqlite_url: str) -> Iterator[tuple[LiveServer, str]]:
    # the production cookie (Secure): Chromium accepts it from http://127.0.0.1 too
    configure(database_url=sqlite_url)
    key = add_school(sqlite_url, "school-a")
    server = LiveServer().start()
    try:
        yield server, key
    finally:
        server.stop()


def launch(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


def test_a_teacher_releases_a_held_post_in_the_browser(live, sqlite_url: str):
    from playwright.sync_api import expect, sync_playwright

    server, key = live
    seed_post(sqlite_url, "school-a", "p1", "Wat ben jij een kankerjuf zeg", photos=1)
    seed_post(
        sqlite_url,
        "school-a",
        "p2",
        "Als dit zo doorgaat maak ik je af",
        word="maak ik je af",
        category=Category.THREAT,
        score=0.62,
    )
    link = f"{server.url}/review/login?token={token_for(sqlite_url, 'school-a', 'mw-1')}"
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            context = browser.new_context(viewport=PHONE, locale="nl-NL")
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(link)
            expect(page).to_have_url(f"{server.url}/review")  # the token left the address bar
            [cookie] = context.cookies()
            assert (cookie["name"], cookie["path"], cookie["sameSite"]) == (
                "review_session",
                "/review",
                "Lax",
            )
            assert cookie["httpOnly"] and cookie["secure"]
            assert page.evaluate("document.cookie") == ""  # out of reach of scripts

            item = page.locator('article[data-post-id="p1"]')
            expect(item.locator("mark")).to_have_text("kankerjuf")
            expect(item).to_contain_text("Eva de Vries")
            photo = item.locator("img")
            expect(photo).to_be_visible()
            assert photo.evaluate("img => img.complete && img.naturalWidth") > 0
            expect(page.locator('article[data-post-id="p2"] .badge.escalated')).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)

            item.get_by_role("button", name="Plaatsen", exact=True).click()
            expect(page.locator(".flash.ok")).to_contain_text("1 bericht(en) afgehandeld")
            expect(page.locator('article[data-post-id="p1"]')).to_have_count(0)
            expect(page.locator('article[data-post-id="p2"]')).to_have_count(1)

            page.get_by_role("link", name="Geschiedenis").click()
            entry = page.locator('li[data-action="review.release"][data-post-id="p1"]')
            expect(entry).to_contain_text("teacher:mw-1")
            assert errors == []  # no CSP violation, no script error
        finally:
            browser.close()

    today = datetime.now(SCHOOL_TZ).date().isoformat()  # a date means a Dutch day
    csv_text = httpx.get(
        f"{server.url}/v1/audit.csv",
        params={"from": today, "to": today},
        headers={"Authorization": f"Bearer {key}"},
    ).text
    assert any("teacher:mw-1,review.release,p1," in line for line in csv_text.splitlines()), (
        csv_text
    )
    assert (ARTIFACTS / "review-queue.png").stat().st_size > 10_000


def held_class_photo(url: str, school_id: str) -> int:
    """The class photo through the real pipeline, in a school whose policy holds photos
    of children without consent: Sanne (ll-1, no consent) is enrolled from Obama's
    portrait, Daan (ll-3, consent) from Biden's."""
    consent = {"student_id": "ll-3", "parent_id": "parent-3", "scope": "app", "granted": True}
    with session_scope(url) as session:
        apply_roster(
            session=session, school_id=school_id, roster=RosterIn(consent=[consent]), source="t"
        )
        set_policy(
            session=session,
            school_id=school_id,
            document=parse_document("on_consent_match: hold\n"),
            actor="admin",
        )
    enrol(url, school_id, "ll-1", "barack_obama/obama.jpg")
    enrol(url, school_id, "ll-3", "joe_biden/biden.jpg")
    body = post_body(
        "p-photo", "Foto van de klas", attachments=[attachment("a1", encode(class_photo()))]
    )
    with session_scope(url) as session:
        pk = create_post(
            session=session, school_id=school_id, post_in=PostCreate(**body), limits=LIMITS
        ).post.pk
    pipeline.run_text_check(get_settings(), pk)
    pipeline.run_media_check(get_settings(), pk)
    return pk


def test_a_teacher_sees_the_faces_in_a_held_photo_and_releases_it_blurred(
    configure: Configure, sqlite_url: str
):
    from playwright.sync_api import expect, sync_playwright

    configure(database_url=sqlite_url, text_scorer="fake")
    add_school(sqlite_url, "school-a")
    held_class_photo(sqlite_url, "school-a")
    server = LiveServer().start()
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        link = f"{server.url}/review/login?token={token_for(sqlite_url, 'school-a', 'mw-1')}"
        with sync_playwright() as pw:
            browser = launch(pw)
            try:
                page = browser.new_context(viewport=PHONE, locale="nl-NL").new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(link)
                item = page.locator('article[data-post-id="p-photo"]')
                photo = item.locator(".photo img")
                expect(photo).to_be_visible()
                assert photo.evaluate("img => img.complete && img.naturalWidth") > 0
                expect(item.locator("rect.face")).to_have_count(2)
                expect(item.locator("rect.face-no_consent.face-matters")).to_have_count(1)
                expect(item.locator("rect.face-consented")).to_have_count(1)
                item.scroll_into_view_if_needed()
                item.screenshot(path=str(ARTIFACTS / "review-photo.png"))
                item.get_by_role("button", name="Plaatsen met vervaging").click()
                expect(page.locator(".flash.ok")).to_contain_text("1 bericht(en) afgehandeld")
                assert errors == []  # the boxes need no inline style or script: CSP holds
            finally:
                browser.close()
    finally:
        server.stop()
    assert (ARTIFACTS / "review-photo.png").stat().st_size > 10_000
