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


def test_our_wire_bytes_are_the_generators_byte_for_byte(
    default_spec: SequenceSpec, settings_env: dict[str, str]
) -> None:
    # wire_bytes writes our own messages directly (mail/message.py): whatever the names,
    # subject, lengths and line ends, what goes on the wire, is signed and stored must be
    # exactly what the email library's generator writes.
    from dataclasses import replace

    from nurture.mail.message import WIRE_POLICY, wire_bytes

    names = ["Anna", None, "Zoë Ødegård", 'O\'Brien, "Jo"', "李小龍", "x" * 200, "Ann\r\nBcc: x"]
    for i, name in enumerate(names):
        ctx = replace(sample_context(default_spec, default_spec.steps[i % 3]), first_name=name)
        rendered = render_email(ctx)
        if i == 3:
            rendered = replace(rendered, text=rendered.text.replace("\n", "\r\n") + "\r")
        if i == 4:
            rendered = replace(rendered, subject="Ünïcode " * 40)
        env = Envelope(
            from_name="ConnectWell Therapy",
            from_email="hello@example.org",
            to_email=f"reader{i}@example.com",
            to_name=name,
            reply_to="care@example.org" if i % 2 else None,
            list_id="partner-refuses-therapy.example.org",
            unsubscribe_url="https://example.org/unsubscribe/" + "t" * (20 + 40 * i),
            unsubscribe_mailto=None,
            message_id=f"<a.b.{i}@example.org>",
        )
        msg = build_message(env, rendered, test=i == 5)
        assert wire_bytes(msg) == msg.as_bytes(policy=WIRE_POLICY)
        msg.preamble = ""  # a shape of another kind goes through the generator itself
        assert wire_bytes(msg) == msg.as_bytes(policy=WIRE_POLICY)


def test_quoted_printable_line_by_line_is_binasciis() -> None:
    # mail/message.py encodes line by line, remembering lines; it must be b2a_qp exactly,
    # whatever the line lengths, trailing blanks, dots, "=" and non-ASCII bytes.
    import binascii
    import random

    from nurture.mail.message import quoted_printable

    pieces = [b"a", b" ", b"\t", b".", b"=", b"\n", b"\r\n", b"\xc3\xa9", b"From ", b"x" * 70]
    rnd = random.Random(76)
    longer = 0
    for _ in range(20000):
        data = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 30)))
        ours, theirs = quoted_printable(data), binascii.b2a_qp(data)
        if max(map(len, theirs.split(b"\n"))) <= 76:
            assert ours == theirs, data
        else:
            # binascii went past 76 (a blank escaped at a line's edge): one more soft break.
            longer += 1
            # The same text as binascii's once decoded (with a carriage return in the data,
            # binascii makes every line end CRLF, so that is not always the data itself).
            assert binascii.a2b_qp(ours) == binascii.a2b_qp(theirs), data
            assert max(len(line.removesuffix(b"\r")) for line in ours.split(b"\n")) <= 76, data
    assert longer  # the case came up


def test_long_layout_lines_are_encoded_piece_by_piece_and_decode_the_same() -> None:
    # The layout's long lines are cut before each Outlook-only block and the pieces joined
    # by soft line breaks: not b2a_qp's bytes, but the same text once decoded.
    import binascii
    import random

    from nurture.mail.message import _QP_CUT, quoted_printable

    pieces = [b"a", b" ", b"\t", b".", b"=", b"\xc3\xa9", b"<td>", b"x" * 70, b"y" * 75,
              b" " * 80, _QP_CUT, _QP_CUT, b"\n"]  # fmt: skip
    rnd = random.Random(2045)
    for _ in range(3000):
        data = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 120)))
        encoded = quoted_printable(data)
        assert binascii.a2b_qp(encoded) == data, data
        lines = encoded.split(b"\n")
        assert all(len(line) <= 76 for line in lines), data
        # Nothing blank is left at the end of a line, where mail systems strip it.
        assert not any(line.endswith((b" ", b"\t")) for line in lines), data


def test_a_readers_own_piece_is_the_only_one_encoded_again() -> None:
    from nurture.mail.message import _QP_CUT, _qp_short, quoted_printable

    static = [b"<div>" + bytes([65 + i]) * 300 + b"</div>" for i in range(8)]

    def line(name: bytes) -> bytes:
        return _QP_CUT.join([*static[:4], b"<p>Hello " + name + b"</p>", *static[4:]]) + b"\n"

    quoted_printable(line(b"Ana"))
    before = _qp_short.cache_info().misses
    quoted_printable(line(b"Bo"))
    assert _qp_short.cache_info().misses == before + 1
