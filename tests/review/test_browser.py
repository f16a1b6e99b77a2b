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
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn

from moderation.api.main import create_app
from moderation.domain import Category
from tests.conftest import Configure
from tests.review.conftest import add_school, seed_post, token_for

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
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
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

    today = datetime.now(UTC).date().isoformat()
    csv_text = httpx.get(
        f"{server.url}/v1/audit.csv",
        params={"from": today, "to": today},
        headers={"Authorization": f"Bearer {key}"},
    ).text
    assert any("teacher:mw-1,review.release,p1," in line for line in csv_text.splitlines()), (
        csv_text
    )
    assert (ARTIFACTS / "review-queue.png").stat().st_size > 10_000
