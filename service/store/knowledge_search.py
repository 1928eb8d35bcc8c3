"""Full-text search of the knowledge base: a search's words, as each database matches them.

A search finds the entries holding every word of it, in any order, each word as a stemmed
prefix: "crack lens" finds "Cracked lenses", "endosc" finds "endoscope". Words are runs of
letters and digits, and everything else separates them (a part number "SEAL-7" is "seal" and
"7", a rule id "dressing.battery.low" three words), so no search text ever reaches a query
parser as syntax. SQLite keeps an FTS5 table (Porter stemmer over unicode61) beside the
entries; PostgreSQL a generated ``tsvector`` column (the 'english' configuration, punctuation
turned into spaces first, as unicode61 does) under a GIN index.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_WORDS = 16
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script; no underscore
# PostgreSQL's 'english' stop words (tsearch_data/english.stop, the Snowball list): its
# configuration drops them from entries and searches alike, so they are dropped from every
# search here too — "the fan" is "fan" on both databases.
_STOP_TEXT = """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what which
    who whom this that these those am is are was were be been being have has had having do
    does did doing a an the and but if or because as until while of at by for with about
    against between into through during before after above below to from up down in out on
    off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will
    just don should now
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())

SQLITE_TABLE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS service_knowledge_fts"
    " USING fts5(text, tokenize = 'porter unicode61')"
)
SQLITE_FILL = (
    "INSERT INTO service_knowledge_fts (rowid, text) SELECT rowid, text FROM service_knowledge"
)
SQLITE_MATCH = (
    "rowid IN (SELECT rowid FROM service_knowledge_fts WHERE service_knowledge_fts MATCH ?)"
)
POSTGRES_COLUMN = (
    "ALTER TABLE service_knowledge ADD COLUMN search tsvector GENERATED ALWAYS AS"
    " (to_tsvector('english', regexp_replace(text, '[^[:alnum:]]+', ' ', 'g'))) STORED"
)
POSTGRES_INDEX = (
    "CREATE INDEX IF NOT EXISTS service_knowledge_search ON service_knowledge USING gin (search)"
)
POSTGRES_MATCH = "search @@ to_tsquery('english', ?)"


def words(text: str) -> list[str]:
    """The words of a search, lower-cased, stop words left out (at most ``MAX_WORDS``)."""
    found = (w.lower() for w in _WORD.findall(text))
    return [w for w in found if w not in STOP_WORDS][:MAX_WORDS]


def fts5_terms(found: Sequence[str]) -> str:
    """An FTS5 query: every word, quoted, as a prefix (FTS5 ANDs the terms)."""
    return " ".join(f'"{w}"*' for w in found)


def tsquery_terms(found: Sequence[str]) -> str:
    """A ``to_tsquery`` text: every word as a prefix, all of them."""
    return " & ".join(f"{w}:*" for w in found)
