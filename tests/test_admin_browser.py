"""The dashboard in real headless Chromium (Debian's, never `playwright install`): an operator
set up from the CLI's link enrols TOTP, logs in, sees every page with real data, does each
action and finds it in the audit log; each refusal looks alike; axe-core finds no serious or
critical violation on any page; every page fits 375 px and works from the keyboard.

NURTURE_SCREENSHOTS=DIR writes a screenshot of each page (desktop and 375 px) there.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from nurture.clock import FrozenClock
from nurture.db import reading, transaction
from nurture.delivery.models import Delivery, DeliveryStatus
from nurture.sequences.services import get_sequence
from nurture.subscribers.enrolling import add_subscriber
from nurture.subscribers.models import Subscriber
from tests.admin_support import PASSWORD, add_operator, current_code
from tests.test_browser import SHOTS, browser, server
from tests.web_support import drain

pytestmark = pytest.mark.browser
# The test client covers both databases (tests/test_admin_web.py); the browser runs once.
DB = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
PAGES = {
    "overview": "/admin/",
    "week": "/admin/week",
    "readers": "/admin/readers",
    "sequences": "/admin/sequences",
    "failed": "/admin/failed",
    "audit": "/admin/audit",
}
__all__ = ["browser", "server"]  # fixtures, used by name


def _people() -> tuple[str, str]:
    """Two confirmed readers who got step one (one of them failed), and a pending one."""
    with transaction() as s:
        seq = get_sequence(s, "quick")
        ann = add_subscriber(s, "ann@example.com", seq, first_name="Ann", confirmed=True)
        add_subscriber(s, "bo@example.com", seq, confirmed=True)
        add_subscriber(s, "pat@example.com", seq)
        ann_id = ann.public_id
    drain()
    with transaction() as s:
        bo = s.scalar(select(Subscriber.id).where(Subscriber.public_id != ann_id).limit(1))
        s.execute(
            update(Delivery)
            .where(Delivery.id == s.scalar(select(Delivery.id).order_by(Delivery.id.desc())))
            .values(status=DeliveryStatus.FAILED, error="550 5.1.1 mailbox unknown")
        )
    return ann_id, str(bo)


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"admin-{name}.png"), full_page=True)


def _axe(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def _refused(page: Any, words: str) -> None:
    """Every refusal: the login page, one line in an alert."""
    page.get_by_role("heading", name="Log in").wait_for()
    alert = page.get_by_role("alert")
    assert words in alert.inner_text(), alert.inner_text()


def _log_in(page: Any, base: str, name: str = "robin", code: str | None = None) -> None:
    page.goto(f"{base}/admin/login")
    page.get_by_label("Operator name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code from your authenticator app").fill(code or current_code(name))
    page.get_by_role("button", name="Log in").click()


def _set_up(page: Any, base: str, path: str) -> None:
    page.goto(f"{base}{path}")
    page.get_by_role("heading", name="Set up your access").wait_for()
    assert page.locator(".qr svg").count() == 1
    _shot(page, "setup")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("6-digit code").fill(current_code())
    page.get_by_role("button", name="Save and finish").click()
    page.get_by_role("heading", name="All set").wait_for()
    assert len(re.findall(r"[0-9a-f]{5}-[0-9a-f]{5}", page.inner_text("main"))) == 8


@DB
def test_operator_sees_every_page_and_acts(
    browser: Any, server: str, clock: FrozenClock, outbox: list
) -> None:
    ann, _ = _people()
    path = add_operator()
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    _set_up(page, server, path)
    clock.advance(timedelta(seconds=30))
    _log_in(page, server)
    page.get_by_role("heading", name="Overview").wait_for()
    for name, url in PAGES.items():
        page.goto(f"{server}{url}")
        assert page.get_by_role("navigation").is_visible()
        assert _axe(page) == [], name
        _shot(page, name)
    # real data on the pages
    page.goto(f"{server}/admin/")
    assert page.locator("svg.chart title").count() >= 3
    assert "Funnel of quick" in page.inner_text("main")
    page.goto(f"{server}/admin/failed")
    assert "550 5.1.1" in page.inner_text("main")
    page.goto(f"{server}/admin/sequences")
    frame = page.frame_locator("iframe.preview").first
    assert frame.locator("body").inner_text(timeout=5000).strip() != ""

    # search, then each action on Ann, every one asked once
    page.goto(f"{server}/admin/readers")
    page.get_by_label("Exact email address").fill("ann@example.com")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("heading", name=re.compile("Reader #")).wait_for()
    assert "ann@example.com" in page.inner_text("main")
    assert _axe(page) == []
    _shot(page, "reader")
    for label in ["Pause", "Resume", "Mark booked", "Unsubscribe"]:
        page.get_by_role("link", name=label, exact=True).click()
        page.get_by_role("heading", name="Please confirm").wait_for()
        assert _axe(page) == []
        page.get_by_role("button", name="Yes, do it").click()
        page.get_by_role("status").wait_for()
    page.goto(f"{server}/admin/failed")
    page.get_by_role("button", name=re.compile("Retry delivery")).first.click()
    page.get_by_role("status").wait_for()
    page.goto(f"{server}/admin/readers/{ann}")
    page.get_by_role("link", name="Forget").click()
    page.get_by_role("button", name="Yes, do it").click()
    page.get_by_role("heading", name="Done").wait_for()
    page.goto(f"{server}/admin/audit")
    log = page.inner_text("main")
    for action in [
        "reader pause",
        "reader resume",
        "reader booked",
        "reader unsubscribe",
        "reader forget",
        "delivery retry",
        "logged in",
        "operator set up",
    ]:
        assert action in log, action
    assert "ann@example.com" not in log
    assert errors == []
    with reading() as s:
        assert s.scalar(select(Subscriber).where(Subscriber.public_id == ann)) is None
    ctx.close()


@DB
def test_every_page_fits_a_phone_and_works_by_keyboard(
    browser: Any, server: str, clock: FrozenClock, outbox: list
) -> None:
    ann, _ = _people()
    path = add_operator()
    ctx = browser.new_context(viewport={"width": 375, "height": 740})
    page = ctx.new_page()
    _set_up(page, server, path)
    clock.advance(timedelta(seconds=30))
    _log_in(page, server)
    for name, url in {**PAGES, "reader": f"/admin/readers/{ann}"}.items():
        page.goto(f"{server}{url}")
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 375, (name, wide)
        _shot(page, f"{name}-375")
    # keyboard alone: skip link first, then pause Ann and confirm, never touching the mouse
    page.goto(f"{server}/admin/readers/{ann}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Pause":
            break
    else:
        pytest.fail("the Pause action cannot be reached by Tab")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Please confirm").wait_for()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Yes, do it":
            break
    page.keyboard.press("Enter")
    page.get_by_role("status").wait_for()
    assert "paused 1 sequence" in page.get_by_role("status").inner_text()
    ctx.close()


@DB
def test_refusals_look_alike(browser: Any, server: str, clock: FrozenClock) -> None:
    path = add_operator()
    ctx = browser.new_context()
    page = ctx.new_page()
    _set_up(page, server, path)
    page.goto(f"{server}{path}")  # a reused setup link
    _refused(page, "not valid")
    _shot(page, "refused")
    clock.advance(timedelta(seconds=30))
    _log_in(page, server, code="000000")  # a wrong code
    _refused(page, "do not match")
    _log_in(page, server, name="nobody", code="123456")  # an unknown operator
    _refused(page, "do not match")
    _log_in(page, server)
    page.get_by_role("heading", name="Overview").wait_for()
    page.goto(f"{server}/admin/sequences/quick/pause")
    # a missing CSRF token: the hidden field taken out before sending
    page.locator("#main input[name=csrf_token]").evaluate("e => e.remove()")
    page.get_by_role("button", name="Yes, do it").click()
    _refused(page, "expired")
    clock.advance(timedelta(minutes=31))  # an expired session
    page.goto(f"{server}/admin/week")
    _refused(page, "session has ended")
    with reading() as s:
        assert get_sequence(s, "quick").status == "active"
    ctx.close()
