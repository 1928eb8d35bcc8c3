"""Languages: English and Simplified Chinese, from Accept-Language or the language switch.

Catalogs are the .po files under ``locale/`` (``scripts/console_i18n.py`` extracts and updates
them); they are compiled in memory when first used, so no build step makes .mo files. Dates
are written in the site's time zone (its business calendar's) in the reader's language.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime, tzinfo
from functools import cache, lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "console"
LANGUAGES: dict[str, str] = {"en": "English", "zh_Hans": "简体中文"}
DEFAULT = "en"
COOKIE = "vigil_lang"
MAX_HEADER = 512  # of Accept-Language worth parsing

_current: ContextVar[str] = ContextVar("console_language", default=DEFAULT)


def N_(message: str) -> str:
    """Mark ``message`` for extraction; it is translated where it is shown."""
    return message


@cache
def translations(language: str) -> NullTranslations:
    """The compiled catalog of ``language`` (none for English, the source language)."""
    po = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == DEFAULT or not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def negotiate(accept_language: str | None) -> str:
    """The language to answer in, from an Accept-Language header (English if none fits)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "")[:MAX_HEADER].split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        language = _language_of(tag.strip().lower())
        if language is not None and q > 0:
            ranked.append((-q, i, language))
    return min(ranked)[2] if ranked else DEFAULT


def _language_of(tag: str) -> str | None:
    if tag.startswith("zh"):
        return "zh_Hans"
    if tag.startswith("en"):
        return "en"
    return None


def chosen(cookie: str | None, accept_language: str | None) -> str:
    """The switch's choice when it names a language we have, else the header's."""
    return cookie if cookie in LANGUAGES else negotiate(accept_language)


def use(language: str) -> None:
    """Make ``language`` the one ``gettext`` answers in (for the current render)."""
    _current.set(language if language in LANGUAGES else DEFAULT)


def current() -> str:
    """The language of the current render."""
    return _current.get()


def gettext(message: str, **variables: object) -> str:
    """``message`` in the current language, with ``%(name)s`` variables filled in."""
    text = translations(current()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    """The singular or plural of a message for ``n``, in the current language."""
    text = translations(current()).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


def when(at: datetime | None, zone: tzinfo, style: str = "medium") -> str:
    """``at`` in ``zone``, written the current language's way ("" for none)."""
    if at is None:
        return ""
    if style == "short":  # minutes only: a board's rows share them, so cache by the minute
        return _short(at.replace(second=0, microsecond=0), zone, current())
    return format_datetime(at, style, tzinfo=zone, locale=_locale(current()))


@lru_cache(maxsize=4096)
def _short(at: datetime, zone: tzinfo, language: str) -> str:
    return format_datetime(at, "short", tzinfo=zone, locale=_locale(language))


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(language)


def tag() -> str:
    """The BCP 47 tag of the current language, for <html lang>."""
    return "zh-Hans" if current() == "zh_Hans" else "en"


Translate = Callable[..., str]
