"""Articles: import saved article files (idempotent, keyed by file name) and look them up."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from nurture.articles.models import Article
from nurture.articles.parse import ParsedArticle, parse_article
from nurture.clock import now
from nurture.errors import NurtureError

ImportStatus = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class ImportResult:
    source_file: str
    slug: str
    title: str
    status: ImportStatus


def read_article_file(path: Path) -> ParsedArticle:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NurtureError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise NurtureError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise NurtureError(f"{path}: cannot read ({exc.strerror})") from None
    parsed = parse_article(text, path.name)
    if not parsed.body_text:
        raise NurtureError(f"{path}: no article text found")
    return parsed


def _free_slug(s: Session, slug: str, source_file: str) -> str:
    """Two articles may share a title; the file name tells them apart, stably."""
    owner = s.scalar(select(Article.source_file).where(Article.slug == slug))
    if owner is None or owner == source_file:
        return slug
    return f"{slug}-{hashlib.sha1(source_file.encode()).hexdigest()[:6]}"


def import_article(s: Session, parsed: ParsedArticle, source_file: str) -> ImportResult:
    article = s.scalar(select(Article).where(Article.source_file == source_file))
    status: ImportStatus
    if article is None:
        article = Article(source_file=source_file, slug=_free_slug(s, parsed.slug, source_file))
        s.add(article)
        status = "created"
    elif article.content_hash == parsed.content_hash:
        return ImportResult(source_file, article.slug, article.title, "unchanged")
    else:
        # The slug is what steps and people refer to: it stays, even if the title changed.
        status = "updated"
    article.title = parsed.title
    article.url = parsed.url
    article.sections = parsed.sections_json()
    article.links = parsed.links_json()
    article.body_text = parsed.body_text
    article.content_hash = parsed.content_hash
    article.imported_at = now()
    s.flush()
    return ImportResult(source_file, article.slug, article.title, status)


def import_files(s: Session, paths: list[Path]) -> list[ImportResult]:
    # Parse everything first: one unreadable file and nothing is imported.
    parsed = [(read_article_file(path), path.name) for path in paths]
    return [import_article(s, article, name) for article, name in parsed]


def list_articles(s: Session) -> list[Article]:
    return list(s.scalars(select(Article).order_by(Article.source_file)))


def find_article(s: Session, name: str) -> Article | None:
    """A step's `sources` entry: the file an article came from, or its slug."""
    return s.scalar(select(Article).where((Article.source_file == name) | (Article.slug == name)))


def missing_sources(s: Session, names: list[str]) -> list[str]:
    return [name for name in names if find_article(s, name) is None]
