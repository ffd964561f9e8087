"""The console's languages: English (the messages as written) and Chinese, from gettext catalogs.

The catalogs are `.po` files shipped in the package and read once at start with Babel, so nothing is
compiled at build time. The language is the one the user picked (a cookie), else the browser's
`Accept-Language`, else English. Messages with `{name}` placeholders also translate the server's own
error messages, whose variable parts (a name, a number) are carried over into the translation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files

from babel.core import Locale, UnknownLocaleError, negotiate_locale
from babel.messages.pofile import read_po

LANGUAGES = {"en": "English", "zh": "中文"}
DEFAULT = "en"
LANGUAGE_COOKIE = "skylift_lang"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass
class Catalog:
    """One language's messages: exact ones, plural ones, and patterns for messages with values in them."""

    language: str
    messages: dict[str, str] = field(default_factory=dict)
    plurals: dict[str, tuple[str, ...]] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)

    def gettext(self, message: str) -> str:
        return self.messages.get(message) or message

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        forms = self.plurals.get(singular)
        if forms:
            # Chinese has one form; English's two are the source text itself.
            return forms[0] if len(forms) == 1 else forms[0 if count == 1 else 1]
        return singular if count == 1 else plural

    def translate(self, message: str) -> str:
        """A message from the server (an error, a reason) in this language, values and all."""
        exact = self.messages.get(message)
        if exact:
            return exact
        for pattern, translation in self.patterns:
            found = pattern.fullmatch(message)
            if found:
                return _fill(translation, found.groupdict())
        return message


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _pattern(message: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(message)
    # split() alternates literal text and placeholder names.
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts))
    return re.compile(regex, re.DOTALL)


@cache
def catalog(language: str) -> Catalog:
    """The catalog of a language (English: the source messages themselves)."""
    result = Catalog(language)
    if language == DEFAULT:
        return result
    source = files("skylift.console").joinpath("locale", language, "LC_MESSAGES", "messages.po")
    with source.open("rb") as po:
        entries = read_po(po, locale=language)
    for message in entries:
        if not message.id or message.fuzzy or not message.string:
            continue
        if isinstance(message.id, (tuple, list)):
            strings = [str(s) for s in message.string] if isinstance(message.string, (tuple, list)) else []
            if strings and all(strings):
                result.plurals[str(message.id[0])] = tuple(strings)
            continue
        text = str(message.string)
        result.messages[message.id] = text
        if _PLACEHOLDER.search(message.id):
            result.patterns.append((_pattern(message.id), text))
    # The most specific pattern first: "no package {id}" must not swallow "no package file {id}".
    result.patterns.sort(key=lambda item: -len(_PLACEHOLDER.sub("", item[0].pattern)))
    return result


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The user's pick, else the first of the browser's languages we have, else English."""
    if cookie in LANGUAGES:
        return cookie
    wanted: list[tuple[float, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            # Stable for equal weights: earlier first.
            wanted.append((-quality + position * 1e-6, tag.strip().replace("-", "_")))
    preferred = [tag for _, tag in sorted(wanted)]
    found = negotiate_locale(preferred, list(LANGUAGES), sep="_")
    if found is None:
        for tag in preferred:
            try:
                language = Locale.parse(tag).language
            except (UnknownLocaleError, ValueError):
                continue
            if language in LANGUAGES:
                return language
        return DEFAULT
    return found
