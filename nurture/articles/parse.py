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
from dataclasses import asdict, dataclass, field, replace
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
    title, lines = _split_title([_clean(raw) for raw in text.splitlines()])
    page = _Page(title)
    for i, line in enumerate(lines):
        if _CUT_FROM.match(line):
            break
        # A line just above a bare URL is that link's label, never a heading or a caption.
        page.take(line, next_is_url=i + 1 < len(lines) and bool(_URL_LINE.match(lines[i + 1])))
    page.close_section()
    if title is None:
        title = _derive_title([p for s in page.sections for p in s.paragraphs])
    parsed = ParsedArticle(
        slug=slugify(title),
        title=title,
        url=page.url,
        sections=page.sections,
        links=page.links,
        body_text=_body_text(page.sections),
    )
    return replace(parsed, content_hash=_content_hash(parsed))


def _split_title(lines: list[str]) -> tuple[str | None, list[str]]:
    """The headline (the first line, when it reads as one) and the non-blank lines after it.
    Blank lines carry no meaning in copied web text: paragraphs are one line each."""
    nonblank = [line for line in lines if line]
    if nonblank and _is_headline(nonblank[0]):
        return nonblank[0], nonblank[1:]
    return None, nonblank


@dataclass
class _Page:
    """The article as read so far: finished sections, the one being filled, links, address."""

    title: str | None
    sections: list[Section] = field(default_factory=list)
    heading: str | None = None
    paragraphs: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    url: str | None = None

    def take(self, line: str, *, next_is_url: bool) -> None:
        """Add one line to the page: as a link, the address, a list item, a heading or a
        paragraph, or drop it as noise."""
        if _NOISE_LINE.search(line) or _AUTHOR_BIO.match(line):
            return
        if _URL_LINE.match(line):
            self.add_link(line)
            return
        if source := _SOURCE_LINE.match(line):
            self.url = source.group(1)
            return
        if self.title:
            line = _strip_repeated_title(line, self.title)
            if not line:
                return
        if _BULLET.match(line):
            # List items often lack a full stop; they are text, never captions or headings.
            self.paragraphs.append(_BULLET.sub("", line))
        elif _is_headline(line) and not next_is_url:
            self.close_section()
            self.heading, self.paragraphs = line, []
        elif _is_caption(line) and len(_words(line)) >= 4 and not next_is_url:
            return  # image alt text between the paragraphs
        else:
            self.paragraphs.append(line)

    def add_link(self, url: str) -> None:
        # A bare URL line links the paragraph above it, labelled by that paragraph's last
        # sentence.
        label = _link_text(self.paragraphs[-1]) if self.paragraphs else url
        self.links.append(Link(text=label, url=url, kind=_link_kind(label, url)))
        # A bare "Book a free consult →" line is a button label, not article text.
        if (
            self.paragraphs
            and len(self.paragraphs[-1].split()) <= 6
            and _is_caption(self.paragraphs[-1])
        ):
            self.paragraphs.pop()

    def close_section(self) -> None:
        if self.paragraphs or self.heading:
            self.sections.append(Section(heading=self.heading, paragraphs=list(self.paragraphs)))


def _strip_repeated_title(line: str, title: str) -> str:
    # The page's image alt text repeats the title glued to the first paragraph.
    if _norm_apostrophes(line).startswith(_norm_apostrophes(title)):
        return line[len(title) :].strip()
    return line


def _body_text(sections: list[Section]) -> str:
    parts: list[str] = []
    for section in sections:
        if section.heading:
            parts.append(section.heading)
        parts.extend(section.paragraphs)
    return "\n\n".join(parts)


def _content_hash(parsed: ParsedArticle) -> str:
    # Over everything an import stores, so a re-import can tell an unchanged article.
    return hashlib.sha256(
        json.dumps(
            [
                parsed.title,
                parsed.url,
                parsed.sections_json(),
                parsed.links_json(),
                parsed.body_text,
            ],
            ensure_ascii=False,
        ).encode()
    ).hexdigest()
