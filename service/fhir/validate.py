"""Check FHIR JSON against the fhir.resources models (R4B, which match R4 for what vigil makes).

The models check structure, cardinality and primitive formats; they do not check terminology
bindings (an unknown status code passes), profiles or invariants (docs/fhir.md).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError


class FhirInvalid(ValueError):
    """A resource the FHIR models refuse; the message names the resource and the fields."""


@cache
def _model(resource_type: str) -> type[FHIRAbstractModel]:
    return get_fhir_model_class(resource_type)


def parsed(resource: dict[str, Any]) -> FHIRAbstractModel:
    """``resource`` as its fhir.resources model; FhirInvalid naming what is wrong."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(kind, str) or not kind.isalpha():
        raise FhirInvalid("not a FHIR resource: no resourceType")
    try:
        model = _model(kind)
    except ValueError:
        raise FhirInvalid(f"{kind!r} is not a FHIR R4B resource type") from None
    try:
        return model.model_validate(resource)
    except ValidationError as exc:
        where = resource.get("id", "?")
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise FhirInvalid(f"{kind}/{where}: {problems}") from None


def validate(resource: dict[str, Any]) -> None:
    """Raise FhirInvalid unless ``resource`` is a valid FHIR resource."""
    parsed(resource)
