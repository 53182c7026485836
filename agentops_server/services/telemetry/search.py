"""Full-text search over runs: what each run and span said, kept searchable at ingest.

Each stored run and span has a :class:`~agentops_server.db.models.RunSearchDocument`: its name,
input, output and error as one text (at most :data:`BODY_LIMIT` characters), written in the
ingest transaction for every row the ingest changed, so a search sees what was acknowledged.
The index over it is the database's own (docs/decisions/0032-run-search.md):

- PostgreSQL: a GIN index on ``to_tsvector('simple', body)``, queried with
  ``plainto_tsquery('simple', …)``;
- SQLite: the FTS5 table ``run_search_fts`` over ``run_search`` (external content, kept in step
  by triggers), queried with ``MATCH``.

Documents and queries are reduced to words (runs of letters and digits) before either database
tokenizes them; a run matches when one of its documents holds
every word. The ``simple`` configuration and FTS5's default tokenizer both match whole words,
case-insensitively, with no stemming, so both databases find the same runs. A word written with
a trailing ``*`` (``timeo*``, at least :data:`MIN_PREFIX` characters) matches every word it
begins: ``to_tsquery``'s ``:*`` on PostgreSQL, FTS5's prefix query on SQLite, both through the
same index.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Integer, Table, column, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import RunSearchDocument
from agentops_server.db.upsert import Row, dialect_insert
from agentops_server.refusals import Invalid

__all__ = [
    "BODY_LIMIT",
    "MAX_WORDS",
    "MIN_PREFIX",
    "index_for_search",
    "matching_run_ids",
    "search_words",
]

BODY_LIMIT = 32768
"""Characters of a run's or span's text that are searchable (the rest is stored, not indexed)."""
MAX_WORDS = 16
"""Words a search may hold."""

MIN_PREFIX = 2
"""Characters a prefix (``ab*``) needs at least."""

_WORD = re.compile(r"[^\W_]+")  # both tokenizers split words at underscores too
_TERM = re.compile(r"([^\W_]+)(\*?)")


async def index_for_search(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    runs: list[Row],
    changed_runs: set[uuid.UUID],
    spans: list[Row],
    changed_spans: set[uuid.UUID],
) -> None:
    """Write the search documents of the ingested ``runs`` and ``spans`` whose stored state
    changed (their ids in ``changed_runs``, ``changed_spans``)."""
    documents = [_document(org_id, row, row["id"]) for row in runs if row["id"] in changed_runs] + [
        _document(org_id, row, row["run_id"]) for row in spans if row["id"] in changed_spans
    ]
    if not documents:
        return
    documents.sort(key=lambda document: document["id"])  # one lock order for every writer
    table = RunSearchDocument.__table__
    assert isinstance(table, Table)
    statement = dialect_insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.org_id, table.c.id],
        set_={
            "run_id": statement.excluded.run_id,
            "started_at": statement.excluded.started_at,
            "body": statement.excluded.body,
        },
    )
    await session.execute(statement, documents)


def search_words(query: str) -> list[str]:
    """The words of a search (a prefix keeps its trailing ``*``); ``validation_error`` if it
    has none, too many, or a prefix too short."""
    words = [word + star for word, star in _TERM.findall(query.lower())]
    if not words:
        raise Invalid("validation_error", "q: a search needs at least one word")
    if len(words) > MAX_WORDS:
        raise Invalid("validation_error", f"q: a search holds at most {MAX_WORDS} words")
    short = [word for word in words if word.endswith("*") and len(word) <= MIN_PREFIX]
    if short:
        raise Invalid(
            "validation_error",
            f"q: a prefix needs at least {MIN_PREFIX} characters before its * ({short[0]})",
        )
    return words


def matching_run_ids(dialect: str, org_id: uuid.UUID, words: list[str]) -> Any:
    """A ``SELECT run_id`` of the org's runs that have a document holding every word."""
    documents = RunSearchDocument
    if dialect == "postgresql":
        vector = func.to_tsvector(text("'simple'::regconfig"), documents.body)
        # Words are letters and digits only (search_words): no tsquery operator can get in.
        terms = " & ".join(f"{word[:-1]}:*" if word.endswith("*") else word for word in words)
        query = func.to_tsquery(text("'simple'::regconfig"), terms)
        matches: ColumnElement[bool] = vector.op("@@")(query)
        return select(documents.run_id).where(documents.org_id == org_id, matches)
    # Quoted: FTS5 operators are plain words; a prefix is a quoted word followed by *.
    fts = " ".join(f'"{word[:-1]}"*' if word.endswith("*") else f'"{word}"' for word in words)
    rowids = (
        text("SELECT rowid FROM run_search_fts WHERE run_search_fts MATCH :fts")
        .bindparams(fts=fts)
        .columns(column("rowid", Integer))
    )
    return select(documents.run_id).where(
        documents.org_id == org_id, literal_column("run_search.rowid").in_(rowids)
    )


def _document(org_id: uuid.UUID, row: Row, run_id: uuid.UUID) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "id": row["id"],
        "run_id": run_id,
        "started_at": row["started_at"],
        "body": _body(row),
    }


def _body(row: Row) -> str:
    """A row's searchable text: the words of its name, input and output (as JSON), error type
    and message, lowercased and separated by single spaces, so that both databases' tokenizers
    see the same words (PostgreSQL's own parser would read ``INV-4471`` as ``inv`` and
    ``-4471``)."""
    parts: Iterable[Any] = (row["name"], row["input"], row["output"], *_error_parts(row["error"]))
    text_ = " ".join(str(part) for part in parts if part)
    return " ".join(_WORD.findall(text_.lower()))[:BODY_LIMIT]


def _error_parts(error: str | None) -> tuple[Any, ...]:
    if error is None:
        return ()
    stored = msgspec.json.decode(error)
    if not isinstance(stored, dict):
        return (error,)
    return stored.get("type"), stored.get("message")
