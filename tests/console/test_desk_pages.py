"""The knowledge base and vigilance list in the console: searchable, paged, scoped by role,
every bad input a 4xx, and the draft incident report downloaded rather than framed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service import desk
from service.knowledge import Fix, KnowledgeEntry
from service.model import Tier
from service.vigilance import HarmFlag
from tests.console.test_engineer_world import ADMIN, E1, H1, World, world


@pytest.fixture
def w() -> Iterator[World]:
    yield from world()


def _entry(code: str, title: str) -> KnowledgeEntry:
    return KnowledgeEntry(
        model="any",
        code=code,
        title=title,
        causes=("worn seal",),
        fixes=(Fix(text="replace the seal", parts=("SEAL-9",)),),
    )


def test_engineers_search_the_knowledge_base_in_pages(w: World) -> None:
    w.store.put_knowledge(_entry("E101", "Pump pressure low"))
    w.store.put_knowledge(_entry("E202", "Image artefacts"))
    e1 = w.client(E1)
    found = e1.get("/console/knowledge?q=PUMP")
    assert found.status_code == 200
    assert "E101" in found.text and "E202" not in found.text and "SEAL-9" in found.text
    every = e1.get("/console/knowledge")
    assert "E101" in every.text and "E202" in every.text
    assert "Knowledge base" in every.text  # in the navigation
    after = e1.get("/console/knowledge?after_model=any&after_code=E101")
    assert "E202" in after.text and "E101" not in after.text
    assert e1.get("/console/knowledge?q=%01").status_code == 422
    assert e1.get("/console/knowledge?q=%00").status_code == 422
    assert e1.get("/console/knowledge?q=" + "x" * 101).status_code == 422
    assert e1.get("/console/knowledge?after_code=bad%20id").status_code == 422
    assert w.client(H1).get("/console/knowledge").status_code == 403


def test_admins_list_flagged_tickets_and_download_each_draft(w: World) -> None:
    made = desk.open_ticket(w.store, "d1", Tier.URGENT, "burn", "hospital:s1", "t1", w.clock())
    flag = HarmFlag(
        ticket_id=made.id,
        flagged_at=w.clock(),
        flagged_by="hospital:s1",
        description="skin burn under the probe",
    )
    assert w.store.flag_harm(flag)
    admin = w.client(ADMIN)
    listed = admin.get("/console/vigilance")
    assert listed.status_code == 200
    assert made.id in listed.text and "skin burn under the probe" in listed.text
    draft = admin.get(f"/console/vigilance/{made.id}.html")
    assert draft.status_code == 200
    assert draft.headers["content-disposition"].startswith("attachment;")
    assert "skin burn under the probe" in draft.text
    assert admin.get("/console/vigilance/nope.html").status_code == 404
    assert admin.get("/console/vigilance?after_us=-1&after_ticket=t1").status_code == 422
    assert admin.get("/console/vigilance?after_us=x&after_ticket=t1").status_code == 422
    assert admin.get(f"/console/vigilance?after_us={2**63}&after_ticket=t1").status_code == 422
    assert w.client(E1).get("/console/vigilance").status_code == 403
