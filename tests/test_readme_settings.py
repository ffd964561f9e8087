"""README's configuration table and the Settings model name the same SKYLIFT_* variables."""

from __future__ import annotations

import re
from pathlib import Path

from skylift.config import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table_and_nothing_else() -> None:
    text = README.read_text()
    section = text[text.index("## Configuration") : text.index("## Management API")]
    documented = set(re.findall(r"`(SKYLIFT_[A-Z_]+)`", section))
    assert documented == {name for name, _, _ in settings_table()}
