"""Turning a saved blog article (plain text copied from a web page) into clean sections.

The files are real web text: image alt text and captions, "Next" navigation, reader comment
threads, "Leave a Reply" forms, author bios and copyright footers sit between the paragraphs.
Each heuristic below exists because one of the source articles needs it; see
tests/test_articles_parse.py for the noise each one removes.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Literal

LinkKind = Literal["consult", "article", "other"]

_URL_LINE = re.compile(r"^https?://\S+$")
_BULLET = re.compile(r"^(?:[•\-*\u2013]|\d+[.)])\s+")
# Everything after one of these lines is page chrome or other people's words, never the article.
_CUT_FROM = re.compile(
    r"^(?:next|previous|reader interactions|leave a reply|leave a comment|\d+ comments?"
    r"|comments|related posts?|share this(?: post)?:?|you may also like)$",
    re.IGNORECASE,
)
_NOISE_LINE = re.compile(
    r"(?:website\s+(?:designed|built|powered)\s+by|all rights reserved|copyright\b|©"
    r"|^@\s?\d{4}\b|^posted (?:on|in|by)\b|^tags?:|^categor(?:y|ies):|^share (?:on|this)\b)",
    re.IGNORECASE,
)
# "Kat Mindenhall, LCSW, is the Director of ..." -- an author bio, not article text.
_AUTHOR_BIO = re.compile(
    r"^[A-Z][\w.'\u2019-]+(?: [A-Z][\w.'\u2019-]+)+, "
    r"(?:LCSW|LMFT|LPC|LCPC|LMHC|LICSW|PsyD|PhD|MA|MSW)\b"
)
# An importer may prepend "Source: https://..." so the article keeps its address.
_SOURCE_LINE = re.compile(r"^(?:source|url|originally published at):\s*(https?://\S+)$", re.I)
_BOOKING_HOSTS = ("calendly.com", "cal.com", "acuityscheduling.com", "simplepractice.com")
_SMALL_WORDS = {"a", "an", "and", "as", "at", "but", "by", "for", "in", "is", "of", "on", "or"}
_SMALL_WORDS |= {"the", "to", "vs", "via", "with", "if", "do", "go", "be"}
_TITLE_MAX_WORDS = 14


@dataclass(frozen=True)
class Section:
    heading: str | None
    paragraphs: list[str]


@dataclass(frozen=True)
class Link:
    text: str
    url: str
    kind: LinkKind


@dataclass(frozen=True)
class ParsedArticle:
    slug: str
    title: str
    url: str | None
    sections: list[Section]
    links: list[Link]
    body_text: str
    content_hash: str = field(default="")

    def sections_json(self) -> list[dict[str, object]]:
        return [asdict(s) for s in self.sections]

    def links_json(self) -> list[dict[str, str]]:
        return [asdict(link) for link in self.links]


def slugify(text: str, max_length: int = 80) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower().replace("'", "")).strip("-")
    if len(slug) > max_length:
        slug = slug[: max_length + 1].rsplit("-", 1)[0]
    return slug or "article"


def _clean(line: str) -> str:
    return " ".join(line.replace("\u00a0", " ").split())


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z][\w'\u2019-]*", text)


def _is_title_case(line: str) -> bool:
    words = [w for w in _words(line) if w.lower() not in _SMALL_WORDS]
    if not words:
        return False
    capitalised = sum(1 for w in words if w[0].isupper())
    return capitalised / len(words) >= 0.75


def _is_headline(line: str) -> bool:
    """Short, Title Case, no sentence punctuation: a heading (a '?' ends some headings)."""
    if len(_words(line)) > _TITLE_MAX_WORDS or line.endswith((".", ",", ";", ":", "!", "”", '"')):
        return False
    return _is_title_case(line)


def _is_caption(line: str) -> bool:
    # Image alt text: a phrase in sentence case with no closing punctuation.
    return not line.endswith((".", "?", "!", ":", "”", '"', "…")) and not _is_title_case(line)


def _norm_apostrophes(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'").lower()


def _link_kind(text: str, url: str) -> LinkKind:
    lowered = f"{text} {url}".lower()
    if any(host in url.lower() for host in _BOOKING_HOSTS) or re.search(
        r"\bbook\b|consult|appointment|schedule a", lowered
    ):
        return "consult"
    if re.search(r"/blog|/articles?/|/posts?/|\bread\b|\bguide\b", lowered):
        return "article"
    return "other"


def _link_text(paragraph: str) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", paragraph.strip())
    return sentences[-1].rstrip("→ ").strip() or paragraph


def _derive_title(paragraphs: list[str]) -> str:
    """A title for a page that lost its headline: the opening clause of its first sentence."""
    first = paragraphs[0] if paragraphs else ""
    clause = re.split(r"[—\u2013]|(?<=[.!?])\s", first, maxsplit=1)[0].strip(" ,;:")
    words = clause.split()
    if len(words) > _TITLE_MAX_WORDS:
        clause = " ".join(words[:_TITLE_MAX_WORDS]) + "…"
    return clause[:1].upper() + clause[1:] if clause else "Untitled article"


def parse_article(text: str, source_file: str) -> ParsedArticle:
    lines = [_clean(raw) for raw in text.splitlines()]
    nonblank = [line for line in lines if line]
    title: str | None = None
    if nonblank and _is_headline(nonblank[0]):
        title = nonblank[0]
        lines = lines[lines.index(title) + 1 :]

    sections: list[Section] = []
    heading: str | None = None
    paragraphs: list[str] = []
    links: list[Link] = []
    url: str | None = None

    def close_section() -> None:
        if paragraphs or heading:
            sections.append(Section(heading=heading, paragraphs=list(paragraphs)))

    lines = [line for line in lines if line]
    for i, line in enumerate(lines):
        next_is_url = i + 1 < len(lines) and bool(_URL_LINE.match(lines[i + 1]))
        if _CUT_FROM.match(line):
            break
        if _NOISE_LINE.search(line) or _AUTHOR_BIO.match(line):
            continue
        if _URL_LINE.match(line):
            label = _link_text(paragraphs[-1]) if paragraphs else line
            links.append(Link(text=label, url=line, kind=_link_kind(label, line)))
            # A bare "Book a free consult →" line is a button label, not article text.
            if paragraphs and len(paragraphs[-1].split()) <= 6 and _is_caption(paragraphs[-1]):
                paragraphs.pop()
            continue
        if source := _SOURCE_LINE.match(line):
            url = source.group(1)
            continue
        if title and _norm_apostrophes(line).startswith(_norm_apostrophes(title)):
            # The page's image alt text repeats the title glued to the first paragraph.
            line = line[len(title) :].strip()
            if not line:
                continue
        if _BULLET.match(line):
            # List items often lack a full stop; they are text, never captions or headings.
            paragraphs.append(_BULLET.sub("", line))
            continue
        if _is_headline(line) and not next_is_url:
            close_section()
            heading, paragraphs = line, []
            continue
        if _is_caption(line) and len(_words(line)) >= 4 and not next_is_url:
            continue
        paragraphs.append(line)
    close_section()

    all_paragraphs = [p for s in sections for p in s.paragraphs]
    if title is None:
        title = _derive_title(all_paragraphs)
    body_parts: list[str] = []
    for section in sections:
        if section.heading:
            body_parts.append(section.heading)
        body_parts.extend(section.paragraphs)
    body_text = "\n\n".join(body_parts)
    parsed = ParsedArticle(
        slug=slugify(title),
        title=title,
        url=url,
        sections=sections,
        links=links,
        body_text=body_text,
    )
    digest = hashlib.sha256(
        json.dumps(
            [title, url, parsed.sections_json(), parsed.links_json(), body_text],
            ensure_ascii=False,
        ).encode()
    ).hexdigest()
    return ParsedArticle(**{**parsed.__dict__, "content_hash": digest})
