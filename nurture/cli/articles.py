"""`nurture articles ...`: the source articles a sequence's emails draw on."""

from __future__ import annotations

from pathlib import Path

import click

from nurture.articles.services import import_files, list_articles
from nurture.cli.output import emit, json_option
from nurture.db import reading, transaction


def register(cli: click.Group) -> None:
    cli.add_command(articles)


@click.group()
def articles() -> None:
    """Import and list source articles.

    Example: nurture articles import articles/*.txt && nurture articles list
    """


@articles.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
def import_(files: tuple[Path, ...], as_json: bool) -> None:
    """Import saved article files; importing a file again updates it in place.

    Example: nurture articles import articles/*.txt
    """
    with transaction() as s:
        results = import_files(s, list(files))
    rows = [
        {"status": r.status, "slug": r.slug, "source_file": r.source_file, "title": r.title}
        for r in results
    ]
    emit(rows, ["status", "source_file", "slug"], as_json, "articles")
    if not as_json:
        counts = {
            k: sum(r.status == k for r in results) for k in ("created", "updated", "unchanged")
        }
        click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))


@articles.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List imported articles; a step's `sources` may name one by file or by slug.

    Example: nurture articles list --json
    """
    with reading() as s:
        rows = [
            {
                "slug": a.slug,
                "title": a.title,
                "source_file": a.source_file,
                "url": a.url,
                "sections": len(a.sections),
                "links": len(a.links),
                "consult_url": next(
                    (link["url"] for link in a.links if link.get("kind") == "consult"), None
                ),
                "imported_at": a.imported_at.isoformat(),
            }
            for a in list_articles(s)
        ]
    emit(rows, ["source_file", "slug", "sections", "links", "title"], as_json, "articles")
