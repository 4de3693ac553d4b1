from __future__ import annotations

from nurture.content.render import render_email
from nurture.mail.message import Envelope, build_message
from nurture.sequences.spec import SequenceSpec
from tests.conftest import sample_context


def test_quoted_printable_lines_keep_to_76(
    default_spec: SequenceSpec, settings_env: dict[str, str]
) -> None:
    rendered = render_email(sample_context(default_spec, default_spec.steps[0]))
    env = Envelope(
        from_name="ConnectWell Therapy",
        from_email="hello@example.org",
        to_email="anna@example.com",
        to_name="Anna",
        reply_to=None,
        list_id="partner-refuses-therapy.example.org",
        unsubscribe_url="https://example.org/unsubscribe/" + "t" * 150,
        unsubscribe_mailto=None,
        message_id="<a.b.c@example.org>",
    )
    msg = build_message(env, rendered)
    head = msg.as_string().partition("\n\n")[0]
    for part in msg.iter_parts():
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        encoded = str(part.get_payload(decode=False))
        assert max(len(line) for line in encoded.splitlines()) <= 76
    # Headers keep the long unsubscribe URL on one line (not RFC 2047 encoded).
    assert "List-Unsubscribe: <https://example.org/unsubscribe/" + "t" * 150 + ">" in head
    assert msg.get_body(("plain",)).get_content().startswith("Hi Anna,")  # type: ignore[union-attr]
