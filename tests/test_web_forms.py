"""web/forms.py alone: reading a posted signup form and checking where it came from."""

from __future__ import annotations

from nurture.web import forms


def test_a_posted_form_is_cut_to_size_and_cleaned() -> None:
    posted = forms.read_signup(
        {
            "email": " a\x00@example.com",
            "first_name": "  Ann\n ",
            "timezone": " Europe/Paris ",
            "article": "",
            "website": "",
            "csrf_token": "t",
        },
        "203.0.113.7",
    )
    assert posted.token == "t"
    assert posted.form.email == " a@example.com"  # normalised later, by the service
    assert posted.form.first_name == "Ann"
    assert posted.form.timezone == "Europe/Paris"
    assert posted.form.article is None and posted.form.honeypot == ""
    assert posted.form.client_address == "203.0.113.7"
    assert posted.values == {"email": " a@example.com", "first_name": "  Ann  ", "article": ""}


def test_only_our_own_origin_may_post() -> None:
    ours = ("https://mail.example.org", "http://localhost:8000/")
    assert forms.same_origin(None, *ours) and forms.same_origin("null", *ours)
    assert forms.same_origin("HTTPS://Mail.Example.org", *ours)
    assert forms.same_origin("http://localhost:8000", *ours)
    assert not forms.same_origin("https://evil.example", *ours)
