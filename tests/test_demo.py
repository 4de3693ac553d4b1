"""`nurture demo` plays every step of the default sequence, in order, on a fast clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture.cli import cli
from tests.conftest import DEFAULT_SEQUENCE

pytestmark = pytest.mark.slow


def test_demo_shows_every_step_in_order(tmp_path: Path, settings_env: dict[str, str]) -> None:
    import yaml

    keys = [
        s["key"] for s in yaml.safe_load((DEFAULT_SEQUENCE / "sequence.yaml").read_text())["steps"]
    ]
    result = CliRunner().invoke(
        cli, ["demo", "--day-seconds", "0.5", "--keep", str(tmp_path / "demo")]
    )
    assert result.exit_code == 0, result.output
    shown = [k for line in result.output.splitlines() for k in keys if f"  {k}  " in line]
    assert shown == keys
    # After the second email a (simulated, and labelled so) reply pauses the series; the
    # practice resumes it later and the rest arrives.
    output = " ".join(result.output.split())
    assert "(simulated) Sam replies" in output and "pauses the series" in output
    assert "resumes the series" in output
    assert output.index("pauses the series") < output.index(f" {keys[2]} ")
    outbox = tmp_path / "demo" / "outbox"
    # The confirmation plus one .eml (and .html) per step.
    assert len(list(outbox.glob("*.eml"))) == len(keys) + 1
    for key in keys:
        assert len(list(outbox.glob(f"partner-refuses-therapy.{key}.*.html"))) == 1
    # Where to open each email: full paths (the outbox is not where the user is), .eml too,
    # each on a line of its own so the terminal cannot cut it.
    lines = {line.strip() for line in result.output.splitlines()}
    for key in keys:
        for path in outbox.glob(f"partner-refuses-therapy.{key}.*"):
            assert str(path.resolve()) in lines, path
