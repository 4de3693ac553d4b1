"""Every email of the default sequence scores well below SpamAssassin's 2.0 bar (local tests
only, -L: no network). The scores are recorded in docs/content-report.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from email.message import EmailMessage

import pytest

from nurture.delivery.compose import compose
from nurture.mail.message import wire_bytes
from nurture.sequences.models import Sequence, Step
from nurture.sequences.spec import SequenceSpec
from tests.conftest import IN_CI

LIMIT = 2.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spamassassin() -> str:
    path = shutil.which("spamassassin")
    if path is None:
        if IN_CI:
            pytest.fail("spamassassin is not installed; CI must provide it")
        pytest.skip("spamassassin is not installed")
    return path


def full_messages(spec: SequenceSpec) -> list[tuple[str, EmailMessage]]:
    """The default sequence's emails, built by the same compose() the workers use."""
    seq = Sequence(slug=spec.slug, name=spec.name, settings=spec.settings_dict())
    out = []
    for position, st in enumerate(spec.steps):
        step = Step(
            key=st.key,
            position=position,
            delay_seconds=st.delay_seconds,
            subject=st.subject,
            body=st.body_text,
            sources=st.sources,
        )
        msg = compose(seq, step, public_id="a" * 32, email="anna@example.com", first_name="Anna")
        out.append((st.key, msg))
    return out


def score(spamassassin: str, msg: EmailMessage) -> tuple[float, str]:
    result = subprocess.run(
        # No Bayes: a score must not depend on what earlier runs taught this machine.
        [spamassassin, "-L", "-t", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0"],
        input=wire_bytes(msg),  # exactly what goes on the wire
        capture_output=True,
        check=True,
        timeout=120,
    )
    report = result.stdout.decode("utf-8", "replace")
    status = re.search(
        r"^X-Spam-Status: \w+, score=(-?[\d.]+).*?tests=(.*?)(?:\n\S|\Z)", report, re.M | re.S
    )
    assert status, report[:2000]
    return float(status.group(1)), " ".join(status.group(2).split())


def test_every_email_scores_below_two(
    spamassassin: str, default_spec: SequenceSpec, settings_env: dict[str, str]
) -> None:
    results = {key: score(spamassassin, msg) for key, msg in full_messages(default_spec)}
    for key, (points, tests) in results.items():
        print(f"{key}: {points} ({tests})")
    too_high = {k: v for k, v in results.items() if v[0] >= LIMIT}
    assert not too_high, too_high
