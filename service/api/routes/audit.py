"""The hash-chained audit log, verified on demand (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import AdminDep, HeavyDep, StoreDep
from service.api.schemas import AuditProblemOut, AuditVerification
from service.audit_stream import verify_store

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("/verify")
def audit_verify(who: AdminDep, store: StoreDep, heavy: HeavyDep) -> AuditVerification:
    """Whether the audit log is intact; each broken row by seq with the reason.

    The log is read in chunks, so the API's memory stays flat however long it is.
    """
    with heavy:
        result = verify_store(store, documents=False)
    return AuditVerification(
        ok=result.ok,
        problems=[AuditProblemOut(seq=p.seq, reason=p.reason) for p in result.problems],
    )
