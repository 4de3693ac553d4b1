from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from nurture.content.render import EmailContext
from nurture.sequences.spec import SequenceSpec, StepSpec, load_folder

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


def sample_context(
    spec: SequenceSpec, step: StepSpec, first_name: str | None = "Anna", **overrides: Any
) -> EmailContext:
    values: dict[str, Any] = {
        "subject": step.subject,
        "body_markdown": step.body_text,
        "first_name": first_name,
        "consult_url": spec.consult.url,
        "consult_text": spec.consult.text,
        "consult_note": spec.consult.note,
        "unsubscribe_url": "https://example.org/unsubscribe/tok3n",
        "postal_address": spec.postal_address,
        "practice_name": spec.from_.name,
        "reason": (
            f"You get this email because you signed up for \u201c{spec.name}\u201d at example.org."
        ),
        "base_url": "https://example.org",
        "sequence_name": spec.name,
        "step_key": step.key,
    }
    values.update(overrides)
    return EmailContext(**values)


@pytest.fixture(scope="session")
def default_spec() -> SequenceSpec:
    return load_folder(DEFAULT_SEQUENCE)
