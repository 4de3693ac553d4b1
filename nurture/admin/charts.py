"""Charts drawn on the server as SVG: no script, nothing fetched. Each has a title and a
description (read by screen readers) and the page shows the same numbers as a table beside
it, so nothing depends on seeing the bars or their colour. Sizes are attributes, not style,
so the strict CSP needs no 'unsafe-inline'.
"""

from __future__ import annotations

import base64
import hashlib
from itertools import count

from markupsafe import Markup, escape

from nurture.reports import DayActivity, Deliverability, Stage

_ids = count(1)
WIDTH = 640
BAR = 22
GAP = 8
LABEL = 190


def csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def percent(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value * 100:.{digits}f}%"


def _frame(title: str, desc: str, height: int, body: str) -> Markup:
    n = next(_ids)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-labelledby="chart{n}t chart{n}d" preserveAspectRatio="xMinYMin meet">'
        f'<title id="chart{n}t">{escape(title)}</title>'
        f'<desc id="chart{n}d">{escape(desc)}</desc>{body}</svg>'
    )


def funnel(name: str, stages: tuple[Stage, ...]) -> Markup:
    top = max((st.count for st in stages), default=0) or 1
    span = WIDTH - LABEL - 70
    parts = []
    for i, st in enumerate(stages):
        y = i * (BAR + GAP)
        w = max(1, round(span * st.count / top)) if st.count else 0
        parts.append(
            f'<text x="0" y="{y + 16}" class="label">{escape(st.name[:28])}</text>'
            f'<rect x="{LABEL}" y="{y}" width="{w}" height="{BAR}" class="bar"/>'
            f'<text x="{LABEL + w + 6}" y="{y + 16}" class="value">{st.count}'
            f"{' · ' + percent(st.of_start, 0) if i else ''}</text>"
        )
    desc = "; ".join(
        f"{st.name}: {st.count}" + (f" ({percent(st.of_start)} of signups)" if i else "")
        for i, st in enumerate(stages)
    )
    return _frame(f"Funnel of {name}", desc, len(stages) * (BAR + GAP), "".join(parts))


def days(rows: tuple[DayActivity, ...]) -> Markup:
    """Signups (bars) and bookings (darker bars in front) per day."""
    height, base = 160, 140
    top = max((max(r.signed_up, r.booked) for r in rows), default=0) or 1
    step = (WIDTH - 40) / max(len(rows), 1)
    parts = [f'<line x1="40" y1="{base}" x2="{WIDTH}" y2="{base}" class="axis"/>']
    parts.append(f'<text x="0" y="12" class="value">{top}</text>')
    parts.append(f'<text x="0" y="{base}" class="value">0</text>')
    for i, r in enumerate(rows):
        x = 40 + i * step
        for n, cls, shrink in ((r.signed_up, "bar", 0.0), (r.booked, "bar2", 0.25)):
            if n:
                h = max(1, round((base - 16) * n / top))
                bw = max(1.0, step * (0.8 - shrink))
                parts.append(
                    f'<rect x="{x + step * shrink / 2:.1f}" y="{base - h}" width="{bw:.1f}" '
                    f'height="{h}" class="{cls}"/>'
                )
    if rows:
        parts.append(f'<text x="40" y="{height - 4}" class="value">{rows[0].day:%d %b}</text>')
        parts.append(
            f'<text x="{WIDTH}" y="{height - 4}" class="value end">{rows[-1].day:%d %b}</text>'
        )
    signups = sum(r.signed_up for r in rows)
    bookings = sum(r.booked for r in rows)
    busiest = max(rows, key=lambda r: r.signed_up, default=None)
    desc = f"{signups} signups and {bookings} bookings over {len(rows)} days"
    if busiest is not None and busiest.signed_up:
        desc += f"; the most signups, {busiest.signed_up}, on {busiest.day:%Y-%m-%d}"
    return _frame("Signups and bookings per day", desc, height, "".join(parts))


def deliverability(d: Deliverability, line: float) -> Markup:
    """Hard bounce and complaint rates as bars, against Gmail's complaint line."""
    scale_top = max(line * 2, d.bounce_rate or 0, d.complaint_rate or 0)
    span = WIDTH - LABEL - 80
    parts = []
    rows = (("hard bounces", d.bounce_rate), ("spam complaints", d.complaint_rate))
    for i, (label, value) in enumerate(rows):
        y = i * (BAR + GAP)
        w = round(span * (value or 0) / scale_top)
        parts.append(
            f'<text x="0" y="{y + 16}" class="label">{label}</text>'
            f'<rect x="{LABEL}" y="{y}" width="{w}" height="{BAR}" class="bar"/>'
            f'<text x="{LABEL + w + 6}" y="{y + 16}" class="value">'
            f"{percent(value, 2) or 'no sends'}</text>"
        )
    x = LABEL + round(span * line / scale_top)
    h = 2 * (BAR + GAP)
    parts.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{h}" class="limit"/>')
    parts.append(f'<text x="{x + 4}" y="{h + 14}" class="value">Gmail line {percent(line)}</text>')
    desc = (
        f"hard bounces {percent(d.bounce_rate, 2) or 'none'}, spam complaints "
        f"{percent(d.complaint_rate, 2) or 'none'} of {d.sent} emails sent; Gmail asks senders "
        f"to stay below {percent(line)} complaints"
    )
    return _frame("Bounce and complaint rates", desc, h + 20, "".join(parts))
