"""An operator set up from the command line's link, and a logged-in test client."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from nurture.admin import auth
from nurture.clock import now
from nurture.db import reading
from tests.cli_helpers import run

PASSWORD = "a long enough password"


def add_operator(name: str = "robin") -> str:
    """The setup path the CLI printed for a new operator."""
    ran = run("operators", "add", name, "--email", f"{name}@example.org")
    assert ran.code == 0, ran.err
    return "/" + ran.out.strip().split("/", 3)[3]


def form_csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def current_code(name: str = "robin") -> str:
    from nurture.admin.services import get_operator

    with reading() as s:
        return auth.totp_of(get_operator(s, name)).at(now())


def set_up(client: FlaskClient, path: str, name: str = "robin") -> list[str]:
    """Open the setup link, choose the password, enrol TOTP; the recovery codes shown."""
    page = client.get(path)
    assert page.status_code == 200
    done = client.post(
        path,
        data={
            "csrf_token": form_csrf(page.text),
            "password": PASSWORD,
            "code": current_code(name),
        },
    )
    assert done.status_code == 200, done.text
    return re.findall(r"<li>([0-9a-f]{5}-[0-9a-f]{5})</li>", done.text)


def log_in(client: FlaskClient, name: str = "robin", code: str | None = None) -> int:
    page = client.get("/admin/login")
    resp = client.post(
        "/admin/login",
        data={
            "csrf_token": form_csrf(page.text),
            "name": name,
            "password": PASSWORD,
            "code": code if code is not None else current_code(name),
        },
    )
    return resp.status_code


def session_csrf(client: FlaskClient) -> str:
    return form_csrf(client.get("/admin/").text)
