"""`nurture inbox check`: one pass over the mailbox at NURTURE_INBOX_URL.

Each message not seen before is read (without marking it read: the practice may share this
mailbox and must still see replies as new), classified (classify.py), acted on
(handling.py) in its own transaction, and then flagged with the keyword $NurtureChecked,
so the next pass skips it. A message that cannot be read is flagged $NurtureBroken and
counted, and the pass goes on. A database error stops the pass before the message is
flagged: the next pass tries it again, and the handled-once record makes that harmless.

Nothing here logs an address, a subject or a body: counts and kinds only.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from nurture.context import current
from nurture.db import transaction
from nurture.errors import NurtureError
from nurture.feedback.classify import Kind, classify
from nurture.feedback.handling import apply, digest, first_time

log = logging.getLogger(__name__)

CHECKED = "$NurtureChecked"
BROKEN = "$NurtureBroken"
FETCH_CHUNK = 50
MAX_BYTES = 25 * 1024 * 1024  # bounces and replies are small; a huge message is neither


@dataclass
class CheckResult:
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "unmatched")

    def as_dict(self) -> dict[str, int]:
        kinds = [k.value for k in Kind] + ["broken", "unmatched"]
        return {k: self.counts.get(k, 0) for k in kinds}


class MessageSource(Protocol):
    def new_messages(self) -> Iterator[tuple[Any, bytes]]: ...

    def done(self, ref: Any, *, broken: bool = False) -> None: ...


class IMAPSource:
    """A mailbox over IMAP (imapclient), as a context manager around one pass."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "localhost"
        self.tls = parts.scheme == "imaps"
        self.port = parts.port or (993 if self.tls else 143)
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        self.timeout = timeout
        self.client: Any = None
        self.flag = CHECKED

    def __enter__(self) -> IMAPSource:
        from imapclient import IMAPClient

        try:
            self.client = IMAPClient(
                self.host,
                port=self.port,
                ssl=self.tls,
                ssl_context=ssl.create_default_context() if self.tls else None,
                timeout=self.timeout,
            )
            self.client.login(self.user, self.password)
            selected = self.client.select_folder(self.folder)
        except Exception as exc:
            # The class only: server replies may repeat the user name.
            self._close()
            raise NurtureError(f"cannot open the inbox: {type(exc).__name__}") from None
        permanent = selected.get(b"PERMANENTFLAGS", ())
        if b"\\*" not in permanent:
            # Some servers (Exchange) keep no keywords of our own: fall back to \Seen, which
            # suits a mailbox kept for bounces alone.
            log.warning("the inbox server keeps no custom keywords: marking handled mail read")
            self.flag = "\\Seen"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # the pass is over either way
                self.client.logout()
            self.client = None

    def new_messages(self) -> Iterator[tuple[int, bytes]]:
        if self.flag == CHECKED:
            criteria: list[Any] = ["UNKEYWORD", CHECKED, "UNKEYWORD", BROKEN]
        else:
            criteria = ["UNSEEN"]
        uids = sorted(self.client.search(criteria))
        for i in range(0, len(uids), FETCH_CHUNK):
            chunk = uids[i : i + FETCH_CHUNK]
            sizes = self.client.fetch(chunk, ["RFC822.SIZE"])
            small = [u for u in chunk if sizes.get(u, {}).get(b"RFC822.SIZE", 0) <= MAX_BYTES]
            for uid in set(chunk) - set(small):
                yield uid, b""  # too big to be a bounce or a reply: counted as broken
            if not small:
                continue
            # BODY.PEEK leaves \Seen alone.
            for uid, data in sorted(self.client.fetch(small, ["BODY.PEEK[]"]).items()):
                yield uid, data.get(b"BODY[]") or b""

    def done(self, ref: int, *, broken: bool = False) -> None:
        flag = BROKEN if broken and self.flag == CHECKED else self.flag
        self.client.add_flags([ref], [flag], silent=True)


class FolderSource:
    """.eml files in a folder, moved to done/ once handled: the demo's inbox (it has no
    mail server), read by the same pass."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> FolderSource:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def new_messages(self) -> Iterator[tuple[Path, bytes]]:
        for path in sorted(self.folder.glob("*.eml")):
            yield path, path.read_bytes()

    def done(self, ref: Path, *, broken: bool = False) -> None:
        target = self.folder / ("broken" if broken else "done")
        target.mkdir(exist_ok=True)
        ref.replace(target / ref.name)


def process(source: MessageSource, origin: str = "imap") -> CheckResult:
    """One pass over a source's new messages."""
    result = CheckResult()
    bounce_address = current().settings.bounce_address
    for ref, raw in source.new_messages():
        try:
            notice = classify(raw, bounce_address)
        except Exception as exc:  # a message we cannot read never stops the pass
            log.warning("inbox message skipped, unreadable: %s", type(exc).__name__)
            result.counts["broken"] += 1
            source.done(ref, broken=True)
            continue
        with transaction() as s:
            matched = True
            if first_time(s, origin, digest(raw)):
                matched = apply(s, notice, origin)
        result.counts[notice.kind.value] += 1
        if not matched:
            result.counts["unmatched"] += 1
        source.done(ref)
    log.info("inbox check: %s", ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())))
    return result


def check_inbox(url: str | None = None) -> CheckResult:
    """One pass over NURTURE_INBOX_URL (or `url`)."""
    if url is None:
        secret = current().settings.inbox_url
        if secret is None:
            raise NurtureError("NURTURE_INBOX_URL is not set: there is no inbox to check")
        url = secret.get_secret_value()
    with IMAPSource(url) as source:
        return process(source)
