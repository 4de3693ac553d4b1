"""Personal data at rest: sealed fields, and the keyed blind index that finds an address.

A reader's address and name, and the body of an event webhook (which names them), are stored
sealed: AES-256-GCM under NURTURE_DATA_KEY, a random nonce per value. Each sealed value
records which key wrote it (`e1:<key id>:<nonce+ciphertext>`), so older keys listed in
NURTURE_DATA_KEY_PREVIOUS keep opening it while `nurture keys rotate` re-seals row by row
(the way Rails' Active Record Encryption and GitLab's key rotation work). Each value is
bound to its place (AES-GCM associated data such as `subscribers.email:<public id>`): a
value copied onto another row, or into another column, does not open at all, so a mistake
or an attacker with write access cannot make one person's name appear in another's email.

Finding a person by address cannot decrypt every row: the address is also kept as a blind
index, an HMAC of the normalised address, which is unique like the address was. Its key is
32 random bytes made once per database and kept in `data_keyring`, sealed under the data
key like everything else. A rotation re-seals that key and never changes it. That is on
purpose: `forget` keeps only the blind index of an erased address (the suppression list),
and with the address gone it could never be recomputed under a new index key. So the index
key outlives data-key rotations; the data key guards it, as it guards the rest.

Not sealed, because they say nothing on their own: ids, statuses, times, time zones, the
sequence a person is in, consent wording. The mail server must see the address in clear
(that is how mail is delivered), and the file outbox (`file://`) writes whole emails to
disk: it is for development.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nurture.config import DEV_DATA_KEY, key_bytes, warn_once
from nurture.errors import NurtureError

NONCE_BYTES = 12
VERSION = "e1"
WARNED_ENV = "NURTURE_DEV_DATA_KEY_WARNED"


class SealError(NurtureError):
    """A sealed value that no configured key opens, or that was moved to another place."""


@dataclass(frozen=True)
class DataKey:
    kid: str  # 8 hex digits naming the key in every value it seals
    aead: AESGCM

    @classmethod
    def from_text(cls, text: str) -> DataKey:
        raw = key_bytes(text)
        kid = hashlib.sha256(b"nurture.data-key-id:" + raw).hexdigest()[:8]
        # The cipher key is derived, not the raw key itself: the raw key names itself above.
        derived = hmac.new(raw, b"nurture.data-key.aes-gcm", hashlib.sha256).digest()
        return cls(kid, AESGCM(derived))

    def seal(self, plaintext: bytes, place: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        body = nonce + self.aead.encrypt(nonce, plaintext, place.encode())
        return f"{VERSION}:{self.kid}:{base64.urlsafe_b64encode(body).decode()}"


def key_id(sealed: str) -> str | None:
    """Which key sealed this value (None when it is not a sealed value)."""
    version, _, rest = sealed.partition(":")
    kid, sep, _ = rest.partition(":")
    return kid if version == VERSION and sep else None


def open_sealed(keys: list[DataKey], sealed: str, place: str) -> bytes:
    """The plaintext of `sealed`, opened by whichever of `keys` sealed it."""
    key = next((k for k in keys if k.kid == key_id(sealed)), None)
    if key is None:
        raise SealError(
            "personal data sealed under a key that is neither NURTURE_DATA_KEY nor in "
            "NURTURE_DATA_KEY_PREVIOUS"
        )
    try:
        body = base64.urlsafe_b64decode(sealed.rsplit(":", 1)[1])
        return key.aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], place.encode())
    except (InvalidTag, binascii.Error, ValueError):
        raise SealError("a sealed value does not belong where it was found") from None


class DataKeys:
    """A runtime's keys: the current one seals; it and the previous ones open."""

    def __init__(self, keys: list[DataKey], index_key: bytes) -> None:
        self.keys = keys
        self.current = keys[0]
        self._index_key = index_key

    @property
    def kids(self) -> list[str]:
        return list(dict.fromkeys(k.kid for k in self.keys))

    def seal(self, plaintext: str, place: str) -> str:
        return self.current.seal(plaintext.encode(), place)

    def unseal(self, sealed: str, place: str) -> str:
        return open_sealed(self.keys, sealed, place).decode()

    def index(self, value: str, purpose: str = "email") -> str:
        """The blind index of `value` (64 hex digits): equal values, equal index."""
        return hmac.new(self._index_key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def is_current(self, sealed: str | None) -> bool:
        return sealed is None or key_id(sealed) == self.current.kid


def configured_keys(data_key: str | None, previous: list[str], production: bool) -> list[DataKey]:
    """The keys the settings name, current first. Without NURTURE_DATA_KEY (development
    only: production refuses to start) the published development key seals, with a warning;
    in development that key also stays readable, so `nurture init` then `keys rotate` moves
    a first install's data under a key of its own."""
    texts = [data_key] if data_key else [DEV_DATA_KEY]
    texts += previous
    if not production and DEV_DATA_KEY not in texts:
        texts.append(DEV_DATA_KEY)
    return [DataKey.from_text(t) for t in texts]


def warn_dev_key() -> None:
    """Said once per process tree, once the development key has opened a database."""
    warn_once(
        WARNED_ENV,
        "NURTURE_DATA_KEY is not set: personal data is sealed with the published development "
        "key. Run `nurture init` for a key of your own, then `nurture keys rotate`.",
    )
