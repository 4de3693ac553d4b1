"""Rendering one step into subject, plain text and HTML.

STAND-IN: the engine issue needs only a plain rendering; the content issue replaces the
body of render_email() with the MJML layout, keeping these signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

if TYPE_CHECKING:
    from nurture.sequences.spec import SequenceSpec


@dataclass(frozen=True)
class EmailContext:
    subject: str  # the step's subject (Jinja allowed)
    body_markdown: str  # the step's body (Markdown with Jinja)
    first_name: str | None
    consult_url: str  # already tracked/rewritten if tracking is on
    consult_text: str
    unsubscribe_url: str
    postal_address: str
    practice_name: str
    reason: str  # why the reader gets this email (the form and article they signed up from)
    base_url: str
    sequence_name: str = ""
    step_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


# Step bodies are operator-written, but rendered with a reader's name inside: a sandbox
# keeps a template from reaching Python internals, and StrictUndefined catches typos early.
_jinja = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _template_vars(ctx: EmailContext) -> dict[str, Any]:
    return {
        "subscriber": {"first_name": ctx.first_name or ""},
        "first_name": ctx.first_name or "",
        "consult": {"url": ctx.consult_url, "text": ctx.consult_text},
        "base_url": ctx.base_url,
        **ctx.extra,
    }


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_email(ctx: EmailContext) -> RenderedEmail:
    values = _template_vars(ctx)
    subject = _one_line(_jinja.from_string(ctx.subject).render(values))
    body = _jinja.from_string(ctx.body_markdown).render(values).strip()
    footer = (
        f"{ctx.consult_text}: {ctx.consult_url}\n\n--\n{ctx.reason}\n"
        f"Unsubscribe: {ctx.unsubscribe_url}\n{ctx.practice_name}, {ctx.postal_address}\n"
    )
    text = f"{body}\n\n{footer}"
    html = (
        "<!doctype html><html><body>"
        + "".join(f"<p>{escape(p)}</p>" for p in body.split("\n\n"))
        + f'<p><a href="{escape(ctx.consult_url)}">{escape(ctx.consult_text)}</a></p>'
        + f"<p>{escape(ctx.reason)} "
        + f'<a href="{escape(ctx.unsubscribe_url)}">Unsubscribe</a></p>'
        + f"<p>{escape(ctx.practice_name)}, {escape(ctx.postal_address)}</p></body></html>"
    )
    return RenderedEmail(subject=subject, text=text, html=html)


def check_templates(spec: SequenceSpec) -> None:
    """Raise ValueError naming the step if a subject or body is not a valid template."""
    for step in spec.steps:
        for what, source in (("subject", step.subject), ("body", step.body_text)):
            try:
                _jinja.parse(source)
            except TemplateSyntaxError as exc:
                raise ValueError(
                    f"step {step.key!r} {what}: template error at line {exc.lineno}: {exc.message}"
                ) from None
