"""The layout rendered once per step and filled in per reader gives each reader exactly the
HTML that rendering it for them alone gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from nurture.content.render import _layout, _skeleton, render_layout

# Values as hostile as a name, a URL or a setting can be: markup, quotes, entities, other
# scripts, empty (the layout tests break_url), and now and then a NUL (then no slot).
text = st.text(
    alphabet=st.sampled_from(list("aZ09 <>&\"'=/.:?#%;é€\u200c\n\x00")) | st.characters(),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    own=st.fixed_dictionaries(
        {
            "subject": text,
            "preheader": text,
            "body_html": text.map(Markup) | text,
            "consult_url": text,
            "unsubscribe_url": text,
            "break_url": text,
        }
    ),
    shared=st.fixed_dictionaries(
        {
            "practice_name": text,
            "consult_note": text,
            "consult_text": text,
            "reason": text,
            "break_text": text,
            "postal_address": text,
        }
    ),
)
def test_filled_layout_is_the_rendered_layout(own: dict, shared: dict) -> None:
    assert render_layout(own, shared) == _layout().render(**own, **shared)


def test_a_step_renders_its_layout_once_for_all_readers() -> None:
    shared = {k: "x" for k in ("practice_name", "consult_note", "consult_text", "reason",
                                "break_text", "postal_address")}  # fmt: skip
    _skeleton.cache_clear()
    for name in ("Ana", "Bo", "Chloé"):
        own = {"subject": "s", "preheader": name, "body_html": Markup(f"<p>{name}</p>"),
               "consult_url": "u", "unsubscribe_url": f"/u/{name}", "break_url": "/b"}  # fmt: skip
        assert render_layout(own, shared) == _layout().render(**own, **shared)
    assert _skeleton.cache_info().misses == 1


@settings(max_examples=200, deadline=None)
@given(source=st.text(alphabet=st.characters(blacklist_characters="{"), max_size=80))
def test_a_subject_or_body_without_jinja_is_rendered_once_as_itself(source: str) -> None:
    from nurture.content.render import (
        EmailContext,
        _render_step_text,
        _step_template,
        _template_vars,
    )

    ctx = EmailContext(
        subject=source, body_markdown=source, first_name="Ana", consult_url="u",
        consult_text="t", unsubscribe_url="x", postal_address="a", practice_name="p",
        reason="r", base_url="https://example.org",
    )  # fmt: skip
    for for_markdown in (False, True):
        rendered = _step_template(source).render(_template_vars(ctx, for_markdown=for_markdown))
        assert _render_step_text(source, ctx, for_markdown=for_markdown) == rendered
