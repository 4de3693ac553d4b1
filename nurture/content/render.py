"""Rendering one step into subject, plain text and HTML.

A step body is Markdown with Jinja. It becomes the middle of the email; the layout around it
(nurture/templates/email/base.mjml) adds what every email must carry, so no step can leave it out:
the consult invitation, a visible unsubscribe link, why the reader gets the email and the
practice's postal address.
"""

from __future__ import annotations

import functools
import itertools
import re
import secrets
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from jinja2 import (
    Environment,
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
)
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markupsafe import Markup, escape
from mjml import mjml2html

# Inside the package, so an installed nurture (the Docker image) finds its layout.
LAYOUT_PATH = Path(__file__).resolve().parents[1] / "templates" / "email" / "base.mjml"
PREHEADER_CHARS = 110
# What a step's subject and body may use (see _template_vars); named in error messages.
TEMPLATE_VARIABLES = (
    "subscriber.first_name, first_name, consult.url, consult.text, base_url, practice_name"
)


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
    # A sentence or two leading into the consult button (sequence.yaml consult.note).
    consult_note: str = ""
    # Inbox preview text; derived from the body when empty.
    preheader: str = ""
    # A shared or watched inbox: the preview must not reveal what the email is about.
    discreet: bool = False
    # "Take a break for two weeks" (subscribers/breaks.py), beside unsubscribe; empty in an
    # email that belongs to no sequence yet (the confirmation).
    break_url: str = ""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


# Step bodies are operator-written, but rendered with a reader's name inside: a sandbox
# keeps a template from reaching Python internals, and StrictUndefined catches typos early.
_jinja = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _default(value: Any, default_value: Any = "", boolean: bool = True) -> Any:
    """`{{ subscriber.first_name | default("there") }}`: a reader without a name has an
    empty one, not an undefined one, so here `default` covers empty values too (Jinja's
    own only covers undefined ones). A misspelt variable is still refused, not defaulted."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return default_value if boolean and not value else value


_jinja.filters["default"] = _jinja.filters["d"] = _default
# A letter is written as a letter: a single newline is a line break ("Warmly," above the
# signature), as a reader expects, not a space as in CommonMark. Raw HTML in a body is off:
# a reader's name ends up inside the Markdown.
_markdown = MarkdownIt("commonmark", {"html": False, "breaks": True})
# Markdown punctuation in a reader's name must stay text, never become a link or emphasis.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")

# Inline styles: many mail clients drop <style>, so the body HTML carries its own.
_STYLES = {
    "p": "margin:0 0 18px;",
    "h1": "font-size:24px;line-height:1.3;margin:4px 0 14px;color:#1f2326;font-weight:600;",
    "h2": "font-size:21px;line-height:1.35;margin:8px 0 12px;color:#1f2326;font-weight:600;",
    "h3": "font-size:18px;line-height:1.4;margin:8px 0 10px;color:#1f2326;font-weight:600;",
    "ul": "margin:0 0 18px;padding-left:24px;",
    "ol": "margin:0 0 18px;padding-left:24px;",
    "li": "margin:0 0 8px;",
    "blockquote": "margin:0 0 18px;padding:2px 0 2px 16px;border-left:3px solid #d9d1c4;"
    "color:#4a4f54;",
    "a": "color:#2c6a63;text-decoration:underline;",
}


@functools.lru_cache(maxsize=512)
def _step_template(source: str) -> Template:
    # Compiling is most of the cost of a render; a worker sends the same few steps all day.
    return _jinja.from_string(source)


def _render_step_text(source: str, ctx: EmailContext, *, for_markdown: bool) -> str:
    if "{" not in source:
        # No Jinja in it (every tag, variable and comment begins with a brace): the same
        # text for every reader, rendered once.
        return _static_text(source)
    return _step_template(source).render(_template_vars(ctx, for_markdown=for_markdown))


@functools.lru_cache(maxsize=512)
def _static_text(source: str) -> str:
    return _step_template(source).render()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _markdown_escape(text: str) -> str:
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", _one_line(text))


def _template_vars(ctx: EmailContext, *, for_markdown: bool) -> dict[str, Any]:
    name = ctx.first_name or ""
    name = _markdown_escape(name) if for_markdown else _one_line(name)
    return {
        "subscriber": {"first_name": name},
        "first_name": name,
        "consult": {"url": ctx.consult_url, "text": ctx.consult_text},
        "base_url": ctx.base_url,
        "practice_name": ctx.practice_name,
        **ctx.extra,
    }


@functools.cache
def _layout() -> Template:
    """The MJML layout, compiled once per process; the body goes in through Jinja."""
    html = mjml2html(LAYOUT_PATH.read_text(encoding="utf-8"))
    return Environment(autoescape=True, undefined=StrictUndefined).from_string(html)


def _absolute(base_url: str, href: object) -> str:
    return urljoin(base_url.rstrip("/") + "/", str(href or ""))


def _html_body(tokens: list[Token], base_url: str) -> Markup:
    for token in tokens:
        for child in [token, *(token.children or [])]:
            if child.nesting != 1:
                continue
            if style := _STYLES.get(child.tag):
                child.attrSet("style", style)
            if child.type == "link_open":
                # Mail has no "current page": a relative link would go nowhere.
                child.attrSet(
                    "href", urljoin(base_url.rstrip("/") + "/", str(child.attrGet("href")))
                )
    return Markup(_markdown.renderer.render(tokens, _markdown.options, {}))


def _inline_text(token: Token, base_url: str) -> str:
    out: list[str] = []
    starts: list[tuple[int, str]] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif child.type == "image":
            out.append(child.content)
        elif child.type == "link_open":
            href = _absolute(base_url, child.attrGet("href"))
            starts.append((len(out), href))
        elif child.type == "link_close" and starts:
            start, href = starts.pop()
            label = "".join(out[start:]).strip()
            if label != href and label != href.removeprefix("mailto:"):
                out.append(f" ({href})")
    return "".join(out)


def _text_body(tokens: list[Token], base_url: str) -> str:
    """A plain-text part that reads like a letter: links as "text (url)", lists as lists."""
    lines: list[str] = []
    lists: list[list[int]] = []  # per open list: [next number], 0 for bullets
    marker: str | None = None
    quote = 0
    for i, token in enumerate(tokens):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            lists.append([int(token.attrGet("start") or 1) if kind == "ordered_list_open" else 0])
            if lines and len(lists) == 1:
                lines.append("")
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            number = lists[-1][0]
            marker = f"{number}. " if number else "- "
            if number:
                lists[-1][0] += 1
        elif kind == "blockquote_open":
            quote += 1
        elif kind == "blockquote_close":
            quote -= 1
        elif kind in ("inline", "fence", "code_block", "hr"):
            indent = "   " * max(len(lists) - 1, 0)
            if kind == "inline":
                text = _inline_text(token, base_url)
                opener = tokens[i - 1]
                if opener.type == "heading_open" and opener.tag in ("h1", "h2"):
                    text = f"{text}\n{('=' if opener.tag == 'h1' else '-') * len(text)}"
            elif kind == "hr":
                text = "* * *"
            else:
                text = "\n".join("    " + line for line in token.content.rstrip("\n").split("\n"))
            if marker is not None:
                lead, marker = indent + marker, None
                text = lead + text.replace("\n", "\n" + " " * len(lead))
            elif lists:
                text = indent + "   " + text.replace("\n", "\n" + indent + "   ")
            if quote:
                text = "\n".join("> " * quote + line for line in text.split("\n"))
            tight = bool(lists) and tokens[i - 1].hidden
            if lines and not tight:
                lines.append("")
            lines.append(text)
    return "\n".join(lines).strip()


def _parsed_bodies(body: str, base_url: str) -> tuple[str, Markup]:
    """The step's Markdown (names filled in) as the plain-text and the HTML body."""
    tokens = _markdown.parse(body)
    return _text_body(tokens, base_url), _html_body(tokens, base_url)


# Stands for the reader's name while a step's body is parsed once for all its readers:
# letters and digits only, so Markdown reads it as a word, which is how it reads a name that
# begins and ends with a letter or digit (everything between is escaped: text, never syntax).
_NAME_MARK = f"Nm{secrets.token_hex(8)}x"


def _bodies(body: str, name: str, base_url: str) -> tuple[str, Markup]:
    """_parsed_bodies, with the parse shared by every reader of a step (it was a third of
    rendering an email): the name goes into the parsed result instead of into the Markdown.
    The result is the same as parsing each reader's own body wherever the shared parse
    applies; where it does not (see _shared_parse), the body is parsed as it is."""
    if not name:
        return _shared_parse(body, base_url) or _parsed_bodies(body, base_url)
    escaped = _markdown_escape(name)
    if name[0].isalnum() and name[-1].isalnum() and _NAME_MARK not in body:
        shared = _shared_parse(body.replace(escaped, _NAME_MARK), base_url)
        if shared is not None:
            text, html = shared
            # str: Markup's own replace would escape the escaped name a second time.
            html = Markup(str(html).replace(_NAME_MARK, escapeHtml(name)))
            return text.replace(_NAME_MARK, name), html
    return _parsed_bodies(body, base_url)


@functools.lru_cache(maxsize=256)
def _shared_parse(marked: str, base_url: str) -> tuple[str, Markup] | None:
    """The bodies of a step's Markdown with the name marked, or None when the mark falls
    anywhere but plain text outside headings and links: in a link's address or a code span
    the name is not unescaped, a heading's plain-text underline is as long as the name, and
    the plain text spells out a link's address unless its words are that address."""
    tokens = _markdown.parse(marked)
    in_text = 0
    for i, token in enumerate(tokens):
        if _NAME_MARK in token.content and (
            token.type != "inline" or tokens[i - 1].type == "heading_open"
        ):
            return None
        in_link = 0
        for child in token.children or []:
            in_link += {"link_open": 1, "link_close": -1}.get(child.type, 0)
            if any(_NAME_MARK in str(v) for v in child.attrs.values()):
                return None
            if _NAME_MARK in child.content:
                if child.type != "text" or in_link:
                    return None
                in_text += child.content.count(_NAME_MARK)
    if in_text != marked.count(_NAME_MARK):
        return None
    return _text_body(tokens, base_url), _html_body(tokens, base_url)


def _preheader(ctx: EmailContext, text_body: str) -> str:
    if ctx.discreet:
        # Zero-width fillers keep the client from previewing the first lines of the body.
        return "\u200c\u00a0" * 60
    if ctx.preheader:
        return _one_line(ctx.preheader)
    paragraphs = [p for p in text_body.split("\n\n") if len(p.split()) >= 6]
    first = _one_line(paragraphs[0]) if paragraphs else ""
    if len(first) > PREHEADER_CHARS:
        first = first[:PREHEADER_CHARS].rsplit(" ", 1)[0] + "\u2026"
    return first


def render_email(ctx: EmailContext) -> RenderedEmail:
    subject = _one_line(_render_step_text(ctx.subject, ctx, for_markdown=False))
    body = _render_step_text(ctx.body_markdown, ctx, for_markdown=True)
    text_body, html_body = _bodies(body.strip(), _one_line(ctx.first_name or ""), ctx.base_url)

    # The consult URL appears once per part: as the button's link in the HTML (no bare copy
    # under it: a doubled link scores as spam, rspamd URI_COUNT_ODD) and spelled out here,
    # the plain fallback for clients that show no HTML.
    invitation = f"{ctx.consult_note.strip()}\n\n" if ctx.consult_note.strip() else ""
    pause = f"{break_words(ctx.discreet).capitalize()}: {ctx.break_url}\n" if ctx.break_url else ""
    text = (
        f"{text_body}\n\n{invitation}{ctx.consult_text}:\n{ctx.consult_url}\n\n"
        f"-- \n{ctx.reason}\nUnsubscribe: {ctx.unsubscribe_url}\n{pause}"
        f"{ctx.practice_name}, {ctx.postal_address}\n"
    )
    html = render_layout(
        {
            "subject": subject,
            "preheader": _preheader(ctx, text_body),
            "body_html": html_body,
            "consult_url": ctx.consult_url,
            "unsubscribe_url": ctx.unsubscribe_url,
            "break_url": ctx.break_url,
        },
        {
            "practice_name": ctx.practice_name,
            "consult_note": ctx.consult_note.strip(),
            "consult_text": ctx.consult_text,
            "reason": ctx.reason,
            "break_text": break_words(ctx.discreet),
            "postal_address": ctx.postal_address,
        },
    )
    return RenderedEmail(subject=subject, text=text, html=html)


# Stands for a reader's own value in a layout rendered once for all readers of a step: NUL
# is in no value we render (checked) and escaping leaves it alone.
_SLOT = re.compile("\x00([0-9]+)\x00")


def render_layout(own: dict[str, str], shared: dict[str, str]) -> str:
    """The layout with `own` (one reader's values) and `shared` (the same for every reader
    of a step). The layout is rendered once per shared values, with a slot where each of
    the reader's values goes, which each reader's escaped values then fill: the same HTML
    as rendering it for each reader, at a fifth of the cost."""
    values = [*own.values(), *shared.values()]
    if all(isinstance(v, str) and "\x00" not in v for v in values):
        skeleton = _skeleton(
            tuple(own), tuple(bool(v) for v in own.values()), tuple(shared.items())
        )
        if skeleton is not None:
            return _fill(skeleton, list(own.values()))
    return _layout().render(**own, **shared)


def _fill(skeleton: tuple[str, ...], values: list[str]) -> str:
    # Escaped as Jinja's autoescape does it (markup, such as the body, stays as it is).
    return "".join(
        part if i % 2 == 0 else str(escape(values[int(part)])) for i, part in enumerate(skeleton)
    )


@functools.lru_cache(maxsize=256)
def _skeleton(
    own: tuple[str, ...], truthy: tuple[bool, ...], shared: tuple[tuple[str, str], ...]
) -> tuple[str, ...] | None:
    """The layout split at the reader's slots (text, slot number, text, ...), or None if
    the layout does anything with a reader's value but print it or test it (a filter, a
    comparison): then a probe rendered both ways differs. A false value goes in as itself,
    an empty string, so a test of it comes out as it would."""
    named = list(zip(own, truthy, strict=True))
    slots = {name: f"\x00{i}\x00" if t else "" for i, (name, t) in enumerate(named)}
    parts = tuple(_SLOT.split(_layout().render(**slots, **dict(shared))))
    probe = {name: f"<&'\"{name} é>" if t else "" for name, t in named}
    same = _fill(parts, list(probe.values())) == _layout().render(**probe, **dict(shared))
    return parts if same else None


def break_words(discreet: bool) -> str:
    """The footer's break link, in words that suit the inbox: discreet mode says nothing a
    person reading over a shoulder would wonder about."""
    return "pause these emails for two weeks" if discreet else "take a break for two weeks"


def sample_context(
    *, consult_url: str, consult_text: str, postal_address: str, practice_name: str
) -> EmailContext:
    """The email of a made-up reader ("Sam"), for checking templates before anyone gets one;
    the subject and body are filled in per template."""
    return EmailContext(
        subject="",
        body_markdown="",
        first_name="Sam",
        consult_url=consult_url,
        consult_text=consult_text,
        unsubscribe_url="https://example.invalid/unsubscribe/check",
        break_url="https://example.invalid/break/check",
        postal_address=postal_address,
        practice_name=practice_name,
        reason="check",
        base_url="https://example.invalid",
    )


def _template_line(exc: BaseException) -> int | None:
    """The line of the step template where rendering failed: Jinja rewrites the traceback
    so that the template's own frames carry its line numbers."""
    frames = traceback.extract_tb(exc.__traceback__)
    lines = [f.lineno for f in frames if f.filename == "<template>"]
    return lines[-1] if lines else None


def _render_problem(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    missing = re.search(r"has no attribute '(\w+)'|'(\w+)' is undefined", message)
    if isinstance(exc, UndefinedError) and missing:
        name = missing.group(1) or missing.group(2)
        return f"unknown variable {name!r} (there are: {TEMPLATE_VARIABLES})"
    return message


@dataclass(frozen=True)
class TemplateProblem:
    """A mistake in one part of a step ("subject", "discreet subject" or "body"), at a line
    of that part's own text (for a body, the line of its file)."""

    part: str
    line: int | None
    message: str


def check_step_templates(
    sample: EmailContext, subject: str, body: str, discreet_subject: str | None = None
) -> list[TemplateProblem]:
    """Every part of a step that is not a valid template, or fails to render for a sample
    reader with a name or without one (a misspelt variable). Empty when the step is good."""
    parts = [("subject", subject)]
    if discreet_subject is not None:
        parts.append(("discreet subject", discreet_subject))
    parts.append(("body", body))
    problems: list[TemplateProblem] = []
    for part, source in parts:
        try:
            _jinja.parse(source)
        except TemplateSyntaxError as exc:
            problems.append(TemplateProblem(part, exc.lineno, f"template error: {exc.message}"))
            continue
        # A misspelt variable only shows when rendering: try with sample readers.
        for first_name in (sample.first_name, None):
            ctx = replace(sample, first_name=first_name)
            try:
                _step_template(source).render(_template_vars(ctx, for_markdown=part == "body"))
            except Exception as exc:
                message = f"template error: {_render_problem(exc)}"
                problems.append(TemplateProblem(part, _template_line(exc), message))
                break
    if not problems:
        render_email(replace(sample, subject=subject, body_markdown=body))
    return problems


# The names under which a template reads the reader's first name.
_NAME_VARIABLES = {("subscriber", "first_name"), ("first_name",)}
# What guards a name from rendering empty: `| default(...)`, `name or ...`, `a if name else b`.
_GUARDS = (nodes.Or, nodes.CondExpr)


def _names_the_reader(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Name):
        return (node.name,) in _NAME_VARIABLES
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        return (node.node.name, node.attr) in _NAME_VARIABLES
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and isinstance(node.arg, nodes.Const)
    ):
        return (node.node.name, node.arg.value) in _NAME_VARIABLES
    return False


def _mentions_the_reader(node: nodes.Node) -> bool:
    return _names_the_reader(node) or any(
        _mentions_the_reader(child) for child in node.iter_child_nodes()
    )


def _bare_names(node: nodes.Node, guarded: bool = False, printed: bool = False) -> list[int]:
    """Lines where the reader's name is printed with nothing to stand in when it is empty."""
    if isinstance(node, nodes.If):
        inside = guarded or _mentions_the_reader(node.test)
        lines = [line for child in node.body for line in _bare_names(child, inside, printed)]
        for child in [*node.elif_, *node.else_]:
            lines += _bare_names(child, guarded, printed)
        return lines
    if isinstance(node, _GUARDS) or (
        isinstance(node, nodes.Filter) and node.name in ("default", "d")
    ):
        guarded = True
    printed = printed or isinstance(node, nodes.Output)
    if _names_the_reader(node):
        return [node.lineno] if printed and not guarded else []
    return [
        line for child in node.iter_child_nodes() for line in _bare_names(child, guarded, printed)
    ]


def empty_name_lines(source: str) -> list[int]:
    """The lines of a template where a reader who gave no name would read a gap ("Hi ,").
    A template that does not parse has none here: check_step_templates reports it."""
    try:
        tree = _jinja.parse(source)
    except TemplateSyntaxError:
        return []
    return sorted(set(_bare_names(tree)))


# A line that ends this way may well end where the writer meant it to ("Warmly,").
_LINE_END = re.compile(r"[.,;:!?)\"'\u201d\u2019*_]\s*$")
# Shorter lines are more likely a list written as lines, or an address, than a wrapped text.
WRAPPED_LINE_CHARS = 40


def wrapped_paragraph_lines(source: str) -> list[int]:
    """Lines of a body where a paragraph seems wrapped at a fixed width (a long line cut
    mid-sentence, the next going on in lower case): each such line break now shows in the
    letter, so the writer should join the lines. The first line of each such paragraph."""
    found = []
    for token in _markdown.parse(source):
        if token.type != "inline" or not token.map:
            continue
        lines = token.content.split("\n")
        for i, (line, following) in enumerate(itertools.pairwise(lines)):
            cut = len(line) >= WRAPPED_LINE_CHARS and not _LINE_END.search(line)
            if cut and following[:1].islower():
                found.append(token.map[0] + i + 1)
                break
    return found
