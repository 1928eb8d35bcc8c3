"""The knowledge base: search it, keep it (admins), and what it suggests for a ticket."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import AfterValidator, Field

from service import audit, desk
from service.api.deps import AdminDep, Id, NowDep, StaffDep, StoreDep
from service.api.pages import DEFAULT_PAGE, Cursor, Limit, decode_cursor, page
from service.api.requests import In, PartNumber
from service.api.scope import actor, visible_ticket
from service.api.text import ID_PATTERN, SafeText, single_line
from service.knowledge import Fix, KnowledgeEntry
from service.store.queries import KnowledgeQuery

router = APIRouter(tags=["knowledge"])


def _filled(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Line = Annotated[str, Field(max_length=500), AfterValidator(single_line), AfterValidator(_filled)]


class FixIn(In):
    """One way to fix the fault and the parts it takes."""

    text: Line
    parts: Annotated[tuple[PartNumber, ...], Field(max_length=20)] = ()


class KnowledgeIn(In):
    """What is known about one fault code on one model (``any``: every model)."""

    title: Annotated[SafeText, AfterValidator(_filled)]
    causes: Annotated[tuple[Line, ...], Field(max_length=20)] = ()
    fixes: Annotated[tuple[FixIn, ...], Field(max_length=20)] = ()


@router.put("/knowledge/{model}/{code}", status_code=status.HTTP_204_NO_CONTENT)
def put_knowledge(
    who: AdminDep, store: StoreDep, now: NowDep, model: Id, code: Id, body: KnowledgeIn
) -> None:
    """Create or replace the knowledge of one (model, fault code); audited."""
    entry = KnowledgeEntry(
        model=model,
        code=code,
        title=body.title,
        causes=tuple(body.causes),
        fixes=tuple(Fix(text=f.text, parts=tuple(f.parts)) for f in body.fixes),
    )
    with store.atomic():
        store.put_knowledge(entry)
        digest = audit.document_digest(entry.model_dump(mode="json"))
        store.append_audit(now, actor(who), "knowledge_put", f"{model}/{code}", {"sha256": digest})


@router.get("/knowledge")
def search_knowledge(
    who: StaffDep,
    store: StoreDep,
    request: Request,
    response: Response,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    model: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    code: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_PAGE,
) -> list[KnowledgeEntry]:
    """Entries holding every word of ``q`` (full text: any order, stemmed, as prefixes), of one
    ``model`` or ``code``; a page."""
    if q is not None:
        try:
            single_line(q)  # no control characters in a search either
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"q: {exc}") from None
    after = decode_cursor(cursor, "knowledge", (str, str))
    query = KnowledgeQuery(
        text=q,
        model=model,
        code=code,
        after=(str(after[0]), str(after[1])) if after else None,
        limit=limit + 1,
    )
    found = [(e, (e.model, e.code)) for e in store.knowledge_page(query)]
    return page(found, limit, "knowledge", request, response)


@router.get("/tickets/{ticket_id}/suggestions")
def ticket_suggestions(who: StaffDep, store: StoreDep, ticket_id: Id) -> list[KnowledgeEntry]:
    """The knowledge for the ticket's device model and fault codes (its own model first)."""
    return desk.suggestions(store, visible_ticket(store, who, ticket_id))
