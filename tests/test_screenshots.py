from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_SEQUENCE, IN_CI

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_every_step_screenshots_at_both_widths(tmp_path: Path) -> None:
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not shutil.which(chromium):
        if IN_CI:
            pytest.fail(f"no Chromium at {chromium}")
        pytest.skip("Chromium is not installed")
    from bench.screenshots import screenshot_sequence

    shots = screenshot_sequence(DEFAULT_SEQUENCE, tmp_path)
    assert len(shots) == 2 * 7
    for shot in shots:
        assert shot.stat().st_size > 20_000, f"{shot.name} looks blank"
