"""Every setting appears in the README's settings table, with its environment variable."""

import re
from pathlib import Path

from app.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _documented() -> dict[str, str]:
    rows = {}
    for line in README.read_text().splitlines():
        match = re.match(r"^\|\s*`(CLINANN_[A-Z0-9_]+)`\s*\|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_setting_is_in_the_readme_table():
    documented = _documented()
    expected = {f"CLINANN_{name.upper()}" for name in Settings.model_fields}
    assert expected - set(documented) == set(), "settings missing from README"
    assert set(documented) - expected == set(), "README documents settings that do not exist"


def test_every_setting_has_a_description():
    assert all(field.description for field in Settings.model_fields.values())
