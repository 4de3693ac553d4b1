from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The five source articles live outside the repository in the shared folder; a copy may be
# placed in tests/articles for a self-contained checkout.
ARTICLES_DIR = Path(
    os.environ.get(
        "NURTURE_TEST_ARTICLES",
        ROOT / "tests" / "articles"
        if (ROOT / "tests" / "articles").is_dir()
        else "/work/shared/articles",
    )
)
DEFAULT_SEQUENCE = ROOT / "templates" / "sequences" / "partner-refuses-therapy"


@pytest.fixture(scope="session")
def article_files() -> list[Path]:
    files = sorted(ARTICLES_DIR.glob("0*.txt"))
    assert len(files) == 5, f"expected the five source articles in {ARTICLES_DIR}"
    return files
