"""End to end in real headless Chromium: sign up, confirm by clicking, receive step one,
leave by one-click unsubscribe, receive nothing more. Also the embed form inside a
cross-site iframe (no cookies to lean on).

Chromium is Debian's /usr/bin/chromium (never `playwright install`). Without it the test is
skipped locally and fails in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from bench.screenshots import CHROMIUM_ARGS
from nurture.clock import FrozenClock
from nurture.context import current
from tests.conftest import IN_CI, reload_runtime
from tests.web_support import drain, link_in, subscriber, unsubscribe_path

pytestmark = pytest.mark.browser

# One list of Chromium flags for this machine (no network): bench/screenshots.py keeps it.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = CHROMIUM_ARGS
SHOTS = os.environ.get("NURTURE_SCREENSHOTS")


def _need(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not available")


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _need(f"chromium ({CHROMIUM})")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def server(
    quick_sequence: str,
    clock: FrozenClock,
    eager_celery: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The real app on a loopback port, with NURTURE_BASE_URL pointing at it."""
    holder: dict[str, Any] = {}

    def wsgi(environ: Any, start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    srv = make_server("127.0.0.1", 0, wsgi, threaded=True)
    base = f"http://127.0.0.1:{srv.server_port}"
    monkeypatch.setenv("NURTURE_BASE_URL", base)
    reload_runtime()
    from nurture.web.app import create_app

    holder["app"] = create_app(current())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield base
    srv.shutdown()
    thread.join(timeout=5)


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_signup_confirm_receive_unsubscribe(
    browser: Any, server: str, outbox: list, clock: FrozenClock
) -> None:
    context = browser.new_context(
        timezone_id="Europe/Paris", viewport={"width": 390, "height": 844}
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server}/subscribe/quick?article=/articles/partner-refuses")
    _shot(page, "01-signup")
    page.get_by_label("Your email address").fill("reader@example.com")
    page.get_by_label("Your first name").fill("Ann")
    # The hidden field was filled by the inline script (allowed by the CSP hash).
    assert page.locator("input[name=timezone]").input_value() == "Europe/Paris"
    page.get_by_role("button", name="Send me the emails").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    _shot(page, "02-check-inbox")
    assert errors == []  # no CSP violations
    assert context.cookies() == []

    sub = subscriber("reader@example.com")
    assert sub is not None and sub.status == "pending" and sub.timezone == "Europe/Paris"
    assert len(outbox) == 1
    confirm = link_in(outbox[0], "confirm")
    page.goto(f"{server}{confirm}")
    _shot(page, "03-confirm")
    assert subscriber("reader@example.com").status == "pending"  # type: ignore[union-attr]
    page.get_by_role("button", name="Yes, start the emails").click()
    page.get_by_role("heading", name="You are confirmed").wait_for()
    _shot(page, "04-confirmed")

    assert len(drain()) == 1
    step_one = outbox[-1]
    assert step_one["Subject"] == "Step one"

    # The mail provider's one-click POST: no cookies, no token, 200 and no redirect.
    unsubscribe = f"{server}{unsubscribe_path(step_one)}"
    r = context.request.post(unsubscribe, form={"List-Unsubscribe": "One-Click"}, max_redirects=0)
    assert r.status == 200
    assert subscriber("reader@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    page.goto(unsubscribe)
    _shot(page, "05-unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    _shot(page, "06-unsubscribed")

    before = len(outbox)
    for _ in range(6):
        clock.advance(timedelta(minutes=2))
        drain()
    assert len(outbox) == before
    context.close()


@pytest.fixture
def article_site() -> Iterator[str]:
    """Another site (localhost is not the same site as 127.0.0.1) serving an article page
    that frames whatever `?frame=` names."""
    from werkzeug.wrappers import Request, Response

    def wsgi(environ: Any, start_response: Any) -> Any:
        src = Request(environ).args.get("frame", "")
        body = (
            "<!doctype html><title>Article</title><h1>An article</h1><p>Text.</p>"
            f'<iframe title="Sign up" src="{src}" width="480" height="640"></iframe>'
        )
        return Response(body, content_type="text/html")(environ, start_response)

    srv = make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{srv.server_port}"
    srv.shutdown()
    thread.join(timeout=5)


def test_embed_form_in_a_cross_site_iframe(
    browser: Any, server: str, article_site: str, outbox: list
) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{article_site}/articles/partner-refuses?frame={server}/embed/quick")
    frame = page.frame_locator("iframe")
    frame.get_by_label("Your email address").fill("embedded@example.com")
    frame.get_by_role("button", name="Send me the emails").click()
    frame.get_by_role("heading", name="Check your inbox").wait_for()
    _shot(page, "07-embed")
    assert subscriber("embedded@example.com") is not None
    assert len(outbox) == 1
    # Only /embed may be framed: the full signup page refuses (CSP frame-ancestors 'none').
    page.goto(f"{article_site}/articles/other?frame={server}/subscribe/quick")
    page.wait_for_timeout(500)
    assert page.frame_locator("iframe").get_by_label("Your email address").count() == 0
    context.close()


def _readme_snippet(server: str) -> str:
    """The README's embed snippet, pointed at the test server."""
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```html\n", 1)[1].split("```", 1)[0]
    return block.replace("https://mail.example.org", server).replace(
        "/embed/partner-refuses-therapy", "/embed/quick"
    )


@pytest.fixture
def snippet_site(server: str) -> Iterator[str]:
    """Another site serving an article with the README's embed snippet in it."""
    from werkzeug.wrappers import Response

    def wsgi(environ: Any, start_response: Any) -> Any:
        body = (
            "<!doctype html><meta name=viewport content='width=device-width'>"
            "<title>Article</title><h1>An article</h1><p>Text.</p>" + _readme_snippet(server)
        )
        return Response(body, content_type="text/html")(environ, start_response)

    srv = make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{srv.server_port}"
    srv.shutdown()
    thread.join(timeout=5)


def test_the_readme_embed_sizes_itself_on_a_phone(
    browser: Any, server: str, snippet_site: str
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 667})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(snippet_site)
    frame_el = page.locator("iframe")
    button = page.frame_locator("iframe").get_by_role("button", name="Send me the emails")
    button.wait_for()

    def fits() -> bool:
        outer, inner = frame_el.bounding_box(), button.bounding_box()
        return bool(
            outer and inner and inner["y"] + inner["height"] <= outer["y"] + outer["height"]
        )

    page.wait_for_function("() => document.querySelector('iframe').style.height !== ''")
    assert fits(), (frame_el.bounding_box(), button.bounding_box())
    # The frame is as tall as the form, not a fixed guess: no inner scrollbar, no big gap.
    frame = page.frames[1]
    content = frame.evaluate("() => document.documentElement.scrollHeight")
    height = frame_el.bounding_box()["height"]
    assert abs(height - content) <= 2, (height, content)
    assert errors == []  # the resize script is allowed by the CSP hash
    _shot(page, "08-embed-375")
    context.close()


def test_pages_name_the_practice_in_a_header_landmark(
    browser: Any, server: str, outbox: list
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(f"{server}/subscribe/quick")
    assert page.locator("meta[name=description]").get_attribute("content")
    assert page.get_by_role("banner").inner_text() == "Test Practice"
    page.get_by_label("Your email address").fill("reader@example.com")
    page.get_by_role("button", name="Send me the emails").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    assert "from “Test Practice”" in page.locator("main").inner_text()
    assert page.get_by_role("banner").inner_text() == "Test Practice"
    page.goto(f"{server}{link_in(outbox[-1], 'confirm')}")
    assert "from Test Practice" in page.locator("main").inner_text()
    assert page.get_by_role("banner").inner_text() == "Test Practice"
    page.get_by_role("button", name="Yes, start the emails").click()
    page.get_by_role("heading", name="You are confirmed").wait_for()
    assert "Test Practice" in page.locator("main").inner_text()
    assert len(drain()) == 1
    page.goto(f"{server}{unsubscribe_path(outbox[-1])}")
    assert "Test Practice will not send you" in page.locator("main").inner_text()
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert "Test Practice will not send you" in page.locator("main").inner_text()
    assert page.get_by_role("banner").inner_text() == "Test Practice"
    assert page.locator("meta[name=description]").get_attribute("content")
    robots = context.request.get(f"{server}/robots.txt")
    assert robots.status == 200 and "Disallow: /" in robots.text()
    context.close()


def test_an_archived_sequence_answers_410_with_a_kind_page(browser: Any, server: str) -> None:
    from tests.cli_helpers import run

    assert run("sequences", "archive", "quick").code == 0
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    response = page.goto(f"{server}/subscribe/quick")
    assert response is not None and response.status == 410
    page.get_by_role("heading", name="This email series has ended").wait_for()
    assert "Test Practice" in page.get_by_role("banner").inner_text()
    context.close()
