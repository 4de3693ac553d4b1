"""A step's Markdown is parsed once for all its readers (content/render.py _bodies): the
email each reader gets must be exactly the one parsing their own body gives, whatever the
name and wherever the step puts it."""

from __future__ import annotations

from dataclasses import replace
from unittest import mock

import pytest

from nurture.content import render
from nurture.sequences.spec import SequenceSpec
from tests.conftest import sample_context

NAMES = [
    None,
    "",
    "Anna",
    "Anna Maria",
    "Zoë Ødegård",
    "李小龍",
    "O'Brien",
    "Jo-Ann",
    "x" * 200,
    "Ann",  # also a part of words in the bodies below
    "example",  # also a part of the link addresses below
    "a*b*c",
    "a_b_c",
    "a`b`c",
    "a<b>c",
    "a&amp;c",
    "a[b](c)d",
    "a\\b",
    "*Anna*",
    "_Anna_",
    "[Anna](https://evil.example)",
    "# Anna",
    "1. Anna",
    "- Anna",
    "> Anna",
    "`Anna`",
    "<Anna>",
    "&copy;",
    "Anna\n\n# Not a heading",
    "  Anna  ",
    "¡Anna!",
    "Anna—",
    "Ann\u0301",
    "http://example.org",
]

BODIES = [
    "Hi {{ first_name }},\n\nA paragraph about Anna, Annabel and Joanna.\n",
    "{{ first_name }}\n\nThe name stands alone at the start of a line.",
    "*{{ first_name }}*, _{{ first_name }}_ and **{{ first_name }}**: emphasis around it.",
    "x*{{ first_name }}*y and x_{{ first_name }}_y: inside words.",
    "# Hello {{ first_name }}\n\nA heading with the name in it.",
    "## {{ first_name }}\n\nA second-level heading.",
    "### For {{ first_name }}\n\nA third-level one.",
    "[{{ first_name }}](https://example.org/a) is a link's words.",
    "[a link](https://example.org/{{ first_name }}) has the name in its address.",
    "`{{ first_name }}` in a code span, and {{ first_name }} outside it.",
    "- {{ first_name }}\n- second\n\n1. {{ first_name }}\n2. two",
    "> {{ first_name }} in a quote\n> on two lines",
    "{% if first_name %}Dear {{ first_name }}{% else %}Hello{% endif %},\n\nText.",
    "{{ first_name|upper }} and {{ first_name|length }} characters.",
    "Hello {{ first_name }}{{ first_name }}, twice without a space.",
    "Visit https://example.org or <https://example.org/{{ first_name }}>.",
    "![{{ first_name }}](https://example.org/i.png) an image.",
    "    {{ first_name }} in an indented code block",
    "```\n{{ first_name }}\n```",
    "Line one  \n{{ first_name }} after a hard break\nand a soft one.",
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_shared_parse_gives_each_reader_their_own_email(
    default_spec: SequenceSpec, settings_env: dict[str, str], body: str
) -> None:
    for name in NAMES:
        ctx = replace(
            sample_context(default_spec, default_spec.steps[0], first_name=name),
            body_markdown=body,
        )
        shared = render.render_email(ctx)
        # Parsed as it is, for this reader alone.
        with mock.patch.object(render, "_bodies", lambda b, n, u: render._parsed_bodies(b, u)):
            own = render.render_email(ctx)
        assert shared == own, (body, name)


def test_the_parse_is_shared(default_spec: SequenceSpec, settings_env: dict[str, str]) -> None:
    render._shared_parse.cache_clear()
    step = default_spec.steps[0]
    for name in ["Anna", "Bob", "Zoë", None, "Christopher"]:
        render.render_email(sample_context(default_spec, step, first_name=name))
    info = render._shared_parse.cache_info()
    assert (info.misses, info.hits) == (2, 3)  # one for readers with a name, one without
