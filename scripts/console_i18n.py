#!/usr/bin/env python3
"""Extract the console's messages and update its catalogs (Babel).

Scans ``service/console/*.py`` (``_``, ``N_``, ``gettext``, ``ngettext``) and every template,
writes ``service/console/locale/console.pot`` and merges it into each language's ``.po``
(new messages arrive untranslated; obsolete ones are dropped). Translate the ``.po`` files by
hand; the console compiles them in memory when it starts, so there is no .mo to build.
``--check`` fails when a catalog is not up to date with the sources (the i18n test uses it).
"""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = ROOT / "service" / "console"
LOCALE = CONSOLE / "locale"
LANGUAGES = ("zh_Hans",)
FIXED_DATE = datetime(2026, 1, 1, tzinfo=UTC)  # so re-running changes nothing but messages
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
METHODS = [
    ("templates/**.html", "jinja2.ext:babel_extract"),
    ("*.py", "python"),
]
OPTIONS = {
    "templates/**.html": {
        "extensions": "jinja2.ext.i18n",
        "trim_blocks": "True",
        "lstrip_blocks": "True",
        "newstyle_gettext": "True",
    }
}


def template() -> Catalog:
    """Every message the console's sources mark, with where each is used."""
    catalog = Catalog(project="vigil console", fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
        CONSOLE, METHODS, OPTIONS, KEYWORDS, strip_comment_tags=True
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def po_text(catalog: Catalog) -> bytes:
    """The catalog as .po bytes, stable between runs (no dates, sorted, no line numbers)."""
    catalog.creation_date = catalog.revision_date = FIXED_DATE
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, sort_output=True, omit_header=False, include_lineno=False)
    return buffer.getvalue()


def updated(language: str, pot: Catalog) -> bytes:
    """``language``'s catalog merged with the current messages."""
    path = LOCALE / language / "LC_MESSAGES" / "console.po"
    if path.exists():
        with path.open("rb") as f:
            catalog = read_po(f, locale=language)
    else:
        catalog = Catalog(locale=language, project="vigil console")
    catalog.update(pot, no_fuzzy_matching=True)
    catalog.obsolete.clear()
    catalog.fuzzy = False  # a fuzzy header would make the whole catalog be ignored
    return po_text(catalog)


def main(check: bool) -> int:
    """Write (or, with ``check``, compare) the template and every catalog; 1 when stale."""
    pot = template()
    outputs = {LOCALE / "console.pot": po_text(pot)}
    for language in LANGUAGES:
        outputs[LOCALE / language / "LC_MESSAGES" / "console.po"] = updated(language, pot)
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_bytes() != text]
    if check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)} (run scripts/console_i18n.py)")
        return 1 if stale else 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text)
    print(f"{len(pot)} messages; updated {', '.join(LANGUAGES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
