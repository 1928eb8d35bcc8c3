"""Bundles (searchset, transaction, collection) and OperationOutcome."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from service.fhir.ids import urn

Json = dict[str, Any]


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> Json:
    """An OperationOutcome with one issue (``code`` from the FHIR issue-type value set)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def searchset(resources: Sequence[Json], base: str, self_url: str, next_url: str | None) -> Json:
    """A searchset Bundle of ``resources`` (full URLs under ``base``) with its paging links."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": datetime.now(UTC).isoformat(),
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def collection(resources: Iterable[Json], base: str) -> Json:
    """A collection Bundle of ``resources`` (an export, e.g. a lot trace)."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": datetime.now(UTC).isoformat(),
        "entry": [
            {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources
        ],
    }


@dataclass(frozen=True, slots=True)
class Conditional:
    """A resource to create unless one with its identifier exists (``ifNoneExist``)."""

    resource: Json
    system: str
    value: str

    @property
    def local(self) -> str:
        """The relative reference other resources use for it, e.g. ``Device/k1``."""
        return f"{self.resource['resourceType']}/{self.resource['id']}"

    @property
    def full_url(self) -> str:
        """Its stable urn:uuid in a transaction (the same on every retry)."""
        return urn(self.resource["resourceType"], f"{self.system}|{self.value}")


def _rewritten(value: Any, urls: dict[str, str]) -> Any:
    """``value`` with every ``reference`` to a bundled resource turned into its urn:uuid."""
    if isinstance(value, dict):
        return {
            k: urls.get(v, v) if k == "reference" and isinstance(v, str) else _rewritten(v, urls)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewritten(v, urls) for v in value]
    return value


def transaction(entries: Sequence[Conditional]) -> Json:
    """A transaction Bundle creating each entry unless its identifier is already on the server.

    Ids are left out (the server assigns them) and references between entries become the
    entries' urn:uuids, which the server resolves to whatever it created or found; so posting
    the same bundle again creates nothing twice.
    """
    urls = {e.local: e.full_url for e in entries}
    bundled = []
    for entry in entries:
        resource = {k: v for k, v in entry.resource.items() if k != "id"}
        bundled.append(
            {
                "fullUrl": entry.full_url,
                "resource": _rewritten(resource, urls),
                "request": {
                    "method": "POST",
                    "url": entry.resource["resourceType"],
                    "ifNoneExist": if_none_exist(entry.system, entry.value),
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": bundled}


def if_none_exist(system: str, value: str) -> str:
    """The conditional-create query of an identifier: escaped as a token, then URL-encoded."""
    token = f"{_escaped(system)}|{_escaped(value)}"
    return "identifier=" + quote(token, safe=":/|\\.-_,$")


def _escaped(text: str) -> str:
    """A token search value with FHIR's special characters escaped (``\\``, ``|``, ``,``, ``$``)."""
    for char in "\\|,$":
        text = text.replace(char, "\\" + char)
    return text
