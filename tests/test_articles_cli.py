from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from nurture.articles.services import find_article, missing_sources
from nurture.cli import cli
from nurture.context import current
from nurture.db import transaction
from nurture.errors import NurtureError


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=current())


def test_import_is_idempotent_and_updates_in_place(
    db: str, article_files: list[Path], tmp_path: Path
) -> None:
    files = [str(f) for f in article_files]
    first = run("articles", "import", *files)
    assert first.exit_code == 0, first.output
    assert "5 created, 0 updated, 0 unchanged" in first.output

    again = run("articles", "import", "--json", *files)
    assert [row["status"] for row in json.loads(again.output)] == ["unchanged"] * 5

    edited = tmp_path / article_files[0].name
    shutil.copy(article_files[0], edited)
    edited.write_text(edited.read_text().replace("You may feel stuck.", "You may feel lost."))
    third = run("articles", "import", str(edited))
    assert "0 created, 1 updated, 0 unchanged" in third.output

    listed = json.loads(run("articles", "list", "--json").output)
    assert len(listed) == 5
    by_file = {row["source_file"]: row for row in listed}
    welcome = by_file["000_6507419a478a785f.txt"]
    assert welcome["consult_url"] == "https://calendly.com/reuven-connectwelltherapy/15-min"
    # 000 and 002 share a title; the slugs stay distinct and stable.
    assert len({row["slug"] for row in listed}) == 5
    with transaction() as s:
        article = find_article(s, welcome["slug"])
        assert article is not None and "You may feel lost." in article.body_text
        assert find_article(s, "002_6d3cd4ef5e74a27d.txt") is not None
        assert missing_sources(s, ["000_6507419a478a785f.txt", "nope.txt"]) == ["nope.txt"]


def test_missing_file_is_a_user_error(db: str, tmp_path: Path) -> None:
    result = run("articles", "import", str(tmp_path / "nope.txt"))
    assert isinstance(result.exception, NurtureError)
    assert "no such file" in str(result.exception)
    assert json.loads(run("articles", "list", "--json").output) == []
