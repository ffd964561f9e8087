"""Every message of the console has its Chinese translation, and translations keep their placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from skylift.console import i18n

CONSOLE = Path(i18n.__file__).resolve().parent
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
KEYWORDS = {"gettext": None, "ngettext": (1, 2), "_": None, "N_": None}
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}}


def console_messages() -> dict[str, str]:
    """Every message the console's templates and modules ask to translate, with where it is."""
    found: dict[str, str] = {}
    for filename, line, message, _comments, _context in extract_from_dir(
        str(CONSOLE), METHODS, keywords=KEYWORDS, options_map=OPTIONS
    ):
        text = message[0] if isinstance(message, tuple) else message
        if text:
            found.setdefault(text, f"{filename}:{line}")
    return found


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"%\(\w+\)s|\{\w+\}", text))


def test_the_pages_ask_for_many_messages() -> None:
    assert len(console_messages()) > 50


def test_every_message_has_a_chinese_translation() -> None:
    chinese = i18n.catalog("zh")
    missing = [
        f"{where}: {text!r}"
        for text, where in sorted(console_messages().items(), key=lambda item: item[1])
        if text not in chinese.messages and text not in chinese.plurals
    ]
    assert not missing, "no Chinese for:\n" + "\n".join(missing)


def test_translations_keep_their_placeholders() -> None:
    chinese = i18n.catalog("zh")
    wrong = [m for m, t in chinese.messages.items() if placeholders(m) != placeholders(t)]
    assert not wrong, wrong


class TestServerMessages:
    @pytest.mark.parametrize(
        ("message", "expected"),
        [
            ("a user named ann exists already", "已有名为 ann 的用户"),
            ("too many failed sign-ins: try again in 8 seconds", "登录失败次数过多：请 8 秒后再试"),
        ],
    )
    def test_messages_with_values_are_translated_with_their_values(self, message: str, expected: str) -> None:
        assert i18n.catalog("zh").translate(message) == expected

    def test_an_unknown_message_stays_as_it_is(self) -> None:
        assert i18n.catalog("zh").translate("something new") == "something new"


class TestChoosingALanguage:
    @pytest.mark.parametrize(
        ("cookie", "accept", "chosen"),
        [
            (None, None, "en"),
            (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
            (None, "zh-TW", "zh"),
            (None, "fr-FR,fr;q=0.9,zh;q=0.5", "zh"),
            (None, "en-GB,zh;q=0.5", "en"),
            (None, "de", "en"),
            ("en", "zh-CN", "en"),
            ("zh", "en", "zh"),
            ("xx", "zh", "zh"),
            (None, "zh;q=nonsense, en", "en"),
        ],
    )
    def test_the_pick_then_the_browser_then_english(self, cookie: str | None, accept: str | None, chosen: str) -> None:
        assert i18n.choose(cookie, accept) == chosen
