from __future__ import annotations

from pathlib import Path

import pytest

from nurture.articles.parse import (
    Link,
    ParsedArticle,
    Section,
    _body_text,
    _Page,
    _split_title,
    _strip_repeated_title,
    parse_article,
)


@pytest.fixture(scope="module")
def parsed(article_files: list[Path]) -> dict[str, ParsedArticle]:
    return {f.name[:3]: parse_article(f.read_text(encoding="utf-8"), f.name) for f in article_files}


def test_five_articles_with_sensible_titles(parsed: dict[str, ParsedArticle]) -> None:
    assert parsed["000"].title == "What If Your Partner Refuses to Go to Couples Therapy?"
    assert parsed["002"].title == "What if Your Partner Refuses to Go to Couples Therapy?"
    assert parsed["003"].title == "What to do When your Partner Won\u2019t go to Couples Therapy"
    assert parsed["004"].title == "How to Deal With a Partner Who Won\u2019t Go to Therapy"
    # 001 lost its headline: the title comes from its opening clause.
    derived = parsed["001"].title
    assert derived.startswith("If you\u2019ve been feeling disconnected from your partner")
    assert "—" not in derived and len(derived) <= 100
    for article in parsed.values():
        assert article.slug and article.slug == article.slug.lower()
        assert article.url is None
        assert len(article.content_hash) == 64


def test_sections_keep_headings_and_paragraphs(parsed: dict[str, ParsedArticle]) -> None:
    headings = {key: [s.heading for s in a.sections] for key, a in parsed.items()}
    assert headings["000"][1:] == [
        "Why Some People Resist Couples Therapy",
        "What Many People Get Wrong About Couples Therapy",
        "Why Couples Therapy Works Best When Both Partners Participate",
        "What You Can Still Do If Your Partner Says No",
        "Individual Therapy Can Still Be Helpful",
        "A Reassuring Perspective",
    ]
    assert "One Tactic to Address all of These Concerns" in headings["003"]
    assert "Deciding Whether This Resistance Is a Deal Breaker" in headings["004"]
    assert headings["004"][-1] == "Conclusion"
    resist = parsed["000"].sections[1]
    assert resist.paragraphs[0].startswith("When one partner refuses therapy")
    # List items become paragraphs of their own, without the bullet.
    boundaries = next(s for s in parsed["004"].sections if s.heading and "Boundaries" in s.heading)
    assert any(p.startswith("Stop engaging in circular arguments") for p in boundaries.paragraphs)
    assert all(p.strip() for a in parsed.values() for s in a.sections for p in s.paragraphs)


def test_links_and_the_consult_link(parsed: dict[str, ParsedArticle]) -> None:
    links = parsed["000"].links
    consult = [link for link in links if link.kind == "consult"]
    assert [link.url for link in consult] == [
        "https://calendly.com/reuven-connectwelltherapy/15-min"
    ]
    assert consult[0].text == "Book a free consult"
    guide = next(link for link in links if "guide" in link.url)
    assert guide.kind == "article"
    for key in ("001", "002", "003", "004"):
        assert parsed[key].links == []
    # URLs and the bare button label are links, not article text.
    assert "https://" not in parsed["000"].body_text
    assert "Book a free consult" not in parsed["000"].body_text


NOISE = {
    # image alt text and captions
    "000": [
        "Couple feeling disconnected while discussing relationship problems",
        "Couple participating together in couples therapy session",
        "Therapist helping a couple build emotional connection and understanding",
        "Next",
        "When Is the Right Time to Start Couples Therapy?",
    ],
    "001": ["Website Designed by", "Hannah J.", "@2025", "Copyright"],
    "003": [
        "what to do when your partner won't go to couples therapyIt",
        "couples therapyIt",
        "Reader Interactions",
        "Hi Kat!",
        "Love this post",
        "Brenda",
        "Thanks for commenting",
        "new house",
        "Leave a Reply",
        "Kat Mindenhall, LCSW, is the Director",
    ],
}


@pytest.mark.parametrize("key", sorted(NOISE))
def test_page_noise_is_dropped(parsed: dict[str, ParsedArticle], key: str) -> None:
    article = parsed[key]
    texts = [article.body_text] + [p for s in article.sections for p in s.paragraphs]
    for noise in NOISE[key]:
        for text in texts:
            if noise == "Next":
                assert "Next" not in text.split("\n\n"), "navigation link kept"
            else:
                assert noise not in text, f"{noise!r} kept in {article.slug}"


def test_no_noise_anywhere(parsed: dict[str, ParsedArticle]) -> None:
    for article in parsed.values():
        body = article.body_text
        for noise in ("Leave a Reply", "Reader Interactions", "Copyright", "Designed by", "•"):
            assert noise not in body
        assert "couples therapyIt" not in body
    for key in ("000", "002", "003", "004"):
        assert not parsed[key].body_text.startswith(parsed[key].title)


def test_parse_is_stable_and_hash_tracks_content(article_files: list[Path]) -> None:
    text = article_files[0].read_text(encoding="utf-8")
    first = parse_article(text, article_files[0].name)
    assert parse_article(text, article_files[0].name) == first
    changed = parse_article(text.replace("You may feel stuck.", "You may feel lost."), "x.txt")
    assert changed.content_hash != first.content_hash


def test_source_line_gives_the_url() -> None:
    article = parse_article(
        "A Short Title\n\nSource: https://example.org/a\n\nOne paragraph here.\n", "a.txt"
    )
    assert article.url == "https://example.org/a"
    assert article.title == "A Short Title"
    assert article.body_text == "One paragraph here."


def test_split_title_takes_a_headline_and_drops_blank_lines() -> None:
    assert _split_title(["", "A Short Title", "", "One paragraph here."]) == (
        "A Short Title",
        ["One paragraph here."],
    )
    assert _split_title(["It starts with a sentence.", "", "More."]) == (
        None,
        ["It starts with a sentence.", "More."],
    )
    assert _split_title(["", ""]) == (None, [])


def test_page_line_kinds() -> None:
    page = _Page("A Short Title")
    page.take("A Short Title It begins right after the alt text.", next_is_url=False)
    page.take("a photo of a couple sitting apart", next_is_url=False)
    page.take("Why It Matters", next_is_url=False)
    page.take("• a list item without a full stop", next_is_url=False)
    page.take("Book a free consult", next_is_url=True)
    page.take("https://calendly.com/example", next_is_url=False)
    page.take("Copyright 2024 Example Practice", next_is_url=False)
    page.close_section()
    assert page.sections == [
        Section(heading=None, paragraphs=["It begins right after the alt text."]),
        Section(heading="Why It Matters", paragraphs=["a list item without a full stop"]),
    ]
    assert page.links == [
        Link(text="Book a free consult", url="https://calendly.com/example", kind="consult")
    ]


def test_strip_repeated_title_ignores_apostrophe_style_and_case() -> None:
    title = "Why Partners Won't Go"
    assert _strip_repeated_title("why partners won\u2019t go Some text.", title) == "Some text."
    assert _strip_repeated_title("Some other text.", title) == "Some other text."


def test_body_text_joins_headings_and_paragraphs() -> None:
    sections = [Section(None, ["One.", "Two."]), Section("Heading", ["Three."])]
    assert _body_text(sections) == "One.\n\nTwo.\n\nHeading\n\nThree."
