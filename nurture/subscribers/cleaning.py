"""Text from outside (the form, `subscribers add`, CSV files, webhooks), made safe to keep.

Control characters are stripped at every entrance, the same way for everyone: a NUL cannot
be stored by PostgreSQL (it failed only for new addresses, so the answer told who was
known), and escapes or line breaks have no place in a name, an address or a header.
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL (Unicode category Cc); whitespace among them becomes a space.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[\t\n\r]")
NAME_LENGTH = 100


def clean(value: str) -> str:
    """`value` without control characters (tabs and line breaks become spaces)."""
    return _CONTROLS.sub("", _SPACES.sub(" ", value))


def clean_name(value: str | None) -> str | None:
    """A first name as stored: no controls, single spaces, at most 100 characters."""
    if not value:
        return None
    return " ".join(clean(value).split())[:NAME_LENGTH] or None
