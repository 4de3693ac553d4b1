from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from nurture.content.render import EmailContext, _layout, empty_name_lines, render_email
from nurture.sequences.spec import SequenceSpec, SpecError, load_folder
from tests.conftest import DEFAULT_SEQUENCE, sample_context

MAX_BYTES = 100 * 1024


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        self.hrefs += [v or "" for k, v in attrs if k in ("href", "src")]


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def test_default_sequence_shape(default_spec: SequenceSpec) -> None:
    assert default_spec.slug == "partner-refuses-therapy"
    assert 6 <= len(default_spec.steps) <= 7
    assert default_spec.steps[0].delay == "0"
    days = sum(step.delay_seconds for step in default_spec.steps) / 86400
    assert 18 <= days <= 24, "about three weeks"
    assert default_spec.timezone == "America/New_York"
    assert default_spec.discreet is not None
    assert set(default_spec.discreet.subjects) == {s.key for s in default_spec.steps}
    for step in default_spec.steps:
        assert len(step.subject) <= 45 and "!" not in step.subject and not step.subject.isupper()
        assert "subscriber.first_name" in step.body_text


def test_every_step_renders_text_and_html(default_spec: SequenceSpec) -> None:
    for step in default_spec.steps:
        email = render_email(sample_context(default_spec, step))
        assert email.subject == step.subject
        assert email.text.startswith("Hi Anna,")
        assert "Hi Anna," in email.html
        assert "{{" not in email.text + email.html and "{%" not in email.text + email.html
        assert len((email.text + email.html + email.subject).encode()) < MAX_BYTES


def test_greeting_falls_back_without_a_name(default_spec: SequenceSpec) -> None:
    for name in (None, ""):
        email = render_email(sample_context(default_spec, default_spec.steps[0], first_name=name))
        assert email.text.startswith("Hi there,")
        assert "Hi ," not in email.text + email.html


def test_consult_invitation_is_the_last_content(default_spec: SequenceSpec) -> None:
    for step in default_spec.steps:
        ctx = sample_context(default_spec, step)
        email = render_email(ctx)
        content, footer = email.text.split("\n-- \n")
        assert content.rstrip().endswith(f"{ctx.consult_text}:\n{ctx.consult_url}")
        assert ctx.reason in footer
        assert f"Unsubscribe: {ctx.unsubscribe_url}" in footer
        assert ctx.postal_address in footer
        html = email.html
        button = html.index(f'href="{ctx.consult_url}"')
        assert html.index("Warmly,") < button < html.index(ctx.unsubscribe_url)
        assert ctx.postal_address in html and str(escape(ctx.reason)) in html


def test_a_body_cannot_drop_the_invitation(default_spec: SequenceSpec) -> None:
    ctx = sample_context(default_spec, default_spec.steps[0], body_markdown="Just this.")
    email = render_email(ctx)
    assert ctx.consult_url in email.text and f'href="{ctx.consult_url}"' in email.html
    assert ctx.unsubscribe_url in email.html and ctx.postal_address in email.html


def test_the_consult_url_appears_once_per_part(default_spec: SequenceSpec) -> None:
    # The button is the HTML's one link to the consult; a bare copy of the URL under it
    # doubled the link (rspamd URI_COUNT_ODD). The text part keeps it, once, as the fallback.
    ctx = sample_context(default_spec, default_spec.steps[0], body_markdown="Just this.")
    email = render_email(ctx)
    assert email.html.count(ctx.consult_url) == 1
    assert f'href="{ctx.consult_url}"' in email.html
    assert email.text.count(ctx.consult_url) == 1


def test_links_are_absolute(default_spec: SequenceSpec) -> None:
    for step in default_spec.steps:
        email = render_email(sample_context(default_spec, step))
        hrefs = _parse(email.html).hrefs
        assert hrefs
        assert all(h.startswith(("https://", "mailto:")) for h in hrefs), hrefs
    relative = sample_context(default_spec, default_spec.steps[0], body_markdown="[a](/blog/x)")
    email = render_email(relative)
    assert 'href="https://example.org/blog/x"' in email.html
    assert "a (https://example.org/blog/x)" in email.text


@pytest.mark.parametrize(
    "name", ["<script>alert(1)</script>", "[click](https://evil.example)", "**Bo** & <b>"]
)
def test_hostile_first_name_stays_text(default_spec: SequenceSpec, name: str) -> None:
    step = default_spec.steps[1]
    email = render_email(sample_context(default_spec, step, first_name=name))
    parsed = _parse(email.html)
    assert parsed.scripts == 0 and "<script>" not in email.html and "<b>" not in email.html
    assert not any("evil" in h for h in parsed.hrefs)
    assert f"Hi {name}," in email.text


def test_line_break_in_name_keeps_subject_one_line(default_spec: SequenceSpec) -> None:
    ctx = sample_context(
        default_spec,
        default_spec.steps[0],
        first_name="Ann\r\nBcc: x@example.com",
        subject="{{ subscriber.first_name }}, a note",
    )
    email = render_email(ctx)
    assert email.subject == "Ann Bcc: x@example.com, a note"
    assert "\n" not in email.subject and "\r" not in email.subject
    assert "\n\nBcc" not in email.text


def test_text_part_reads_well() -> None:
    ctx = EmailContext(
        subject="s",
        body_markdown="## A heading\n\nSee [the guide](https://example.org/g).\n\n"
        "- one\n- two\n\n1. first\n2. second\n\n> quoted",
        first_name=None,
        consult_url="https://example.org/book",
        consult_text="Book",
        unsubscribe_url="https://example.org/u/t",
        postal_address="1 Example Street",
        practice_name="P",
        reason="Because.",
        base_url="https://example.org",
    )
    text = render_email(ctx).text
    assert text.startswith(
        "A heading\n---------\n\nSee the guide (https://example.org/g).\n\n"
        "- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n"
    )


def test_preheader_and_discreet_mode(default_spec: SequenceSpec) -> None:
    step = default_spec.steps[0]
    plain = render_email(sample_context(default_spec, step)).html
    preview = re.search(r'<div style="display:none;[^"]*"[^>]*>(.*?)</div>', plain, re.S)
    assert preview and preview.group(1).startswith("Thank you for signing up.")
    hidden = render_email(sample_context(default_spec, step, discreet=True)).html
    preview = re.search(r'<div style="display:none;[^"]*"[^>]*>(.*?)</div>', hidden, re.S)
    assert preview and not preview.group(1).strip("\u200c\u00a0 ")
    assert default_spec.discreet is not None and not default_spec.discreet.enabled


def test_layout_is_compiled_once(default_spec: SequenceSpec) -> None:
    render_email(sample_context(default_spec, default_spec.steps[0]))
    before = _layout.cache_info().misses
    for step in default_spec.steps:
        render_email(sample_context(default_spec, step))
    assert _layout.cache_info().misses == before


def test_misspelt_variable_is_refused(tmp_path: Path) -> None:
    for name in ("sequence.yaml", "01-welcome.md"):
        (tmp_path / name).write_text((DEFAULT_SEQUENCE / name).read_text())
    yaml_text = (tmp_path / "sequence.yaml").read_text()
    head = yaml_text.split("steps:")[0].split("discreet:")[0]
    first_step = "steps:" + yaml_text.split("steps:")[1].split("  - key: why")[0]
    (tmp_path / "sequence.yaml").write_text(head + first_step)
    assert load_folder(tmp_path).steps[0].key == "welcome"
    (tmp_path / "01-welcome.md").write_text("Hi {{ subscriber.frist_name }}")
    with pytest.raises(SpecError, match=r"welcome.*frist_name"):
        load_folder(tmp_path)


def test_discreet_subjects_must_name_steps(tmp_path: Path) -> None:
    (tmp_path / "01-welcome.md").write_text("Hello")
    (tmp_path / "sequence.yaml").write_text(
        "slug: s\nname: S\nfrom: {name: P, email: a@example.org}\n"
        "consult: {url: 'https://example.org/book'}\npostal_address: 1 Example Street\n"
        "discreet: {from_name: Notes, subjects: {nope: Note}}\n"
        "steps: [{key: welcome, delay: '0', subject: Hi, body: 01-welcome.md}]\n"
    )
    with pytest.raises(SpecError, match="nope"):
        load_folder(tmp_path)


def _letter(body: str, first_name: str | None = None) -> EmailContext:
    return EmailContext(
        subject="s",
        body_markdown=body,
        first_name=first_name,
        consult_url="https://example.org/book",
        consult_text="Book",
        unsubscribe_url="https://example.org/u/t",
        postal_address="1 Example Street",
        practice_name="P",
        reason="Because.",
        base_url="https://example.org",
    )


def test_a_single_newline_is_a_line_break_in_both_parts() -> None:
    # Written as a letter is written: the signature under "Warmly," stays on its own line.
    email = render_email(_letter("Thank you.\n\nWarmly,\nThe team at P"))
    assert email.text.startswith("Thank you.\n\nWarmly,\nThe team at P\n")
    assert re.search(r"Warmly,<br\s*/?>\s*The team at P", email.html)


def test_a_line_break_inside_a_list_item_keeps_its_indent() -> None:
    text = render_email(_letter("- one\n  more of one\n- two\n\n1. first\n   still first")).text
    assert text.startswith("- one\n  more of one\n- two\n\n1. first\n   still first\n")


@pytest.mark.parametrize(
    ("name", "greeting"), [(None, "Hi there,"), ("", "Hi there,"), ("Sam", "Hi Sam,")]
)
def test_default_stands_in_for_a_missing_name(name: str | None, greeting: str) -> None:
    body = 'Hi {{ subscriber.first_name | default("there") }},\n\nA line.'
    assert render_email(_letter(body, first_name=name)).text.startswith(greeting + "\n\nA line.")


def test_default_does_not_hide_a_misspelt_variable() -> None:
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        render_email(_letter('Hi {{ subscriber.frist_name | default("there") }},'))


@pytest.mark.parametrize(
    ("body", "lines"),
    [
        ("Hi {{ subscriber.first_name }},", [1]),
        ("Hello.\n\n{{ first_name }}, a word.", [3]),
        ('Hi {{ subscriber.first_name | default("there") }},', []),
        ("{% if subscriber.first_name %}Hi {{ subscriber.first_name }},{% endif %}", []),
        ("{% if first_name %}Hi {{ first_name }}{% else %}Hi {{ first_name }}{% endif %}", [1]),
        ('{{ first_name or "friend" }}, {{ "x" if first_name else "y" }}', []),
        ("No name at all.", []),
    ],
)
def test_a_name_that_can_render_empty_is_found(body: str, lines: list[int]) -> None:
    assert empty_name_lines(body) == lines


def test_the_default_sequence_greets_everyone(default_spec: SequenceSpec) -> None:
    for step in default_spec.steps:
        assert empty_name_lines(step.body_text) == [], step.key


def test_a_template_problem_carries_its_part_and_line(default_spec: SequenceSpec) -> None:
    from nurture.content.render import TemplateProblem, check_step_templates
    from nurture.content.render import sample_context as checking

    sample = checking(
        consult_url="https://example.org/b", consult_text="Book", postal_address="1 Example St",
        practice_name="P",
    )  # fmt: skip
    problems = check_step_templates(sample, "Hi {{ x", "One\n\nTwo {{ nope }}\n", "{% if %}")
    assert [(p.part, p.line) for p in problems] == [
        ("subject", 1), ("discreet subject", 1), ("body", 3),
    ]  # fmt: skip
    assert all(isinstance(p, TemplateProblem) and p.message for p in problems)
    assert check_step_templates(sample, "Hello", "Hi {{ first_name | default('you') }}") == []


def test_a_paragraph_wrapped_at_a_fixed_width_is_found() -> None:
    from nurture.content.render import wrapped_paragraph_lines

    wrapped = (
        "Hi there,\n\nThank you for signing up. If you are reading this, there is a good\n"
        "chance you asked your partner to try couples therapy.\n\n- a list item that runs "
        "on past the width of\n  the editor and goes on\n"
    )
    assert wrapped_paragraph_lines(wrapped) == [3, 6]
    # Lines meant as lines: a signature, an address, short lines.
    meant = "Warmly,\nThe team at P\n\n1 Example Street\nColumbia, MD\n\nRoses are red\nviolets too"
    assert wrapped_paragraph_lines(meant) == []
