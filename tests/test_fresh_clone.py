"""A clone with nothing beside it has everything its tests and README use: no tracked file
reaches outside the repository (the project's own CI happens to have a shared folder next to
it; a user's clone does not)."""

from __future__ import annotations

import subprocess

from tests.conftest import ARTICLES_DIR, ROOT


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [name for name in out.splitlines() if (ROOT / name).is_file()]


def test_no_tracked_file_reads_outside_the_repository() -> None:
    outside = []
    for name in _tracked():
        if name.endswith((".txt", ".eml")) or name == "tests/test_fresh_clone.py":
            continue  # article text and mail fixtures: data, not paths
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        if "../shared" in text or 'parent / "shared"' in text:
            outside.append(name)
    assert outside == []


def test_the_source_articles_are_in_the_repository() -> None:
    assert ARTICLES_DIR.resolve().is_relative_to(ROOT)
    names = sorted(p.name for p in ARTICLES_DIR.glob("0*.txt"))
    assert len(names) == 5
    readme = (ARTICLES_DIR / "README.md").read_text(encoding="utf-8")
    assert all(name in readme for name in names)  # where each came from
