"""Where the top-level templates/ folder lives.

From a source checkout or an editable install it sits beside the package
(`<repo>/templates`); an installed package run from the repository root finds it in the
working directory; NURTURE_TEMPLATES_DIR overrides both.
"""

from __future__ import annotations

from pathlib import Path

from nurture.context import current

PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def templates_dir() -> Path:
    """The current runtime's templates folder."""
    return find_templates(current().settings.templates_dir)


def find_templates(configured: str | None) -> Path:
    """The templates folder for a NURTURE_TEMPLATES_DIR value (None: look for it)."""
    if configured:
        return Path(configured).resolve()
    for candidate in (PACKAGE_PARENT / "templates", Path.cwd() / "templates"):
        if (candidate / "pages").is_dir() or (candidate / "email").is_dir():
            return candidate
    return PACKAGE_PARENT / "templates"
