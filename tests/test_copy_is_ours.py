"""The emails summarise the articles in our own words: no 8-word run of any article survives."""

from __future__ import annotations

import re
from pathlib import Path

from nurture.content.render import render_email
from nurture.sequences.spec import SequenceSpec
from tests.conftest import sample_context

RUN = 8


def _words(text: str) -> list[str]:
    # Linking to an article is allowed: its address is not copy.
    text = re.sub(r"https?://\S+", " ", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text)


def _runs(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + RUN]) for i in range(len(words) - RUN + 1)}


def test_no_eight_word_run_of_any_article(
    default_spec: SequenceSpec, article_files: list[Path]
) -> None:
    # The whole file, noise included: comments are other people's words too.
    article_runs = {f.name: _runs(_words(f.read_text(encoding="utf-8"))) for f in article_files}
    copied = []
    for step in default_spec.steps:
        text = render_email(sample_context(default_spec, step)).text
        ours = _runs(_words(text))
        for name, runs in article_runs.items():
            copied += [f"{step.key} <- {name}: {' '.join(run)}" for run in sorted(ours & runs)]
    assert not copied, "\n".join(copied)


def test_the_check_would_catch_a_copied_sentence(article_files: list[Path]) -> None:
    article = _runs(_words(article_files[0].read_text(encoding="utf-8")))
    pasted = "Few things feel more discouraging than realizing your relationship is struggling."
    assert _runs(_words(pasted)) & article


def test_every_step_names_existing_sources(
    default_spec: SequenceSpec, article_files: list[Path]
) -> None:
    names = {f.name for f in article_files}
    used: set[str] = set()
    for step in default_spec.steps:
        assert step.sources, f"step {step.key} draws on no article"
        assert set(step.sources) <= names
        used |= set(step.sources)
    assert used == names
