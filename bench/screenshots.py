"""Screenshot every step of a sequence in headless Chromium, at phone and desktop widths.

    python bench/screenshots.py [SEQUENCE_FOLDER] [--out artifacts/screenshots]

Uses the system Chromium (CHROMIUM env var, default /usr/bin/chromium); it never downloads a
browser. The HTML is loaded with network access blocked, as a privacy-minded mail client would.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from playwright.sync_api import Route, sync_playwright

from nurture.content.render import EmailContext, render_email
from nurture.sequences.spec import load_folder

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = (375, 1200)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _block(route: Route) -> None:
    route.abort()


def screenshot_sequence(folder: Path, out: Path, first_name: str = "Anna") -> list[Path]:
    spec = load_folder(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS
        )
        for width in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": 800})
            page.route("**/*", _block)
            for number, step in enumerate(spec.steps, start=1):
                email = render_email(
                    EmailContext(
                        subject=step.subject,
                        body_markdown=step.body_text,
                        first_name=first_name,
                        consult_url=spec.consult.url,
                        consult_text=spec.consult.text,
                        consult_note=spec.consult.note,
                        unsubscribe_url="https://example.org/unsubscribe/sample-token",
                        postal_address=spec.postal_address,
                        practice_name=spec.from_.name,
                        reason=f"You get this email because you signed up for "
                        f"\u201c{spec.name}\u201d at example.org.",
                        base_url="https://example.org",
                    )
                )
                page.set_content(email.html, wait_until="load")
                path = out / f"{number:02d}-{step.key}-{width}.png"
                page.screenshot(path=str(path), full_page=True)
                written.append(path)
            page.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=ROOT / "templates" / "sequences" / "partner-refuses-therapy",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "screenshots")
    args = parser.parse_args()
    for path in screenshot_sequence(args.folder, args.out):
        print(path)


if __name__ == "__main__":
    main()
