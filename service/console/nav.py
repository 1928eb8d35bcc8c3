"""Role-aware navigation: each screen module declares the entries it adds to the base layout.

A screen module exposes ``router`` (an ``APIRouter``) and ``NAV`` (a tuple of ``NavItem``);
``service.console.app`` collects both. An entry is shown only to its ``roles``; the first entry
a role may use is where that role lands after login.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.api.schemas import Role


@dataclass(frozen=True, slots=True)
class NavItem:
    """One link of the navigation bar: its path, its label (a msgid, see ``i18n.N_``), roles."""

    path: str
    label: str
    roles: frozenset[Role]
    order: int = 100  # smaller first


def for_role(items: Iterable[NavItem], role: Role) -> list[NavItem]:
    """The entries ``role`` sees, in order."""
    return sorted((i for i in items if role in i.roles), key=lambda i: (i.order, i.path))


def home(items: Iterable[NavItem], role: Role) -> str:
    """Where ``role`` lands after login: its first entry (the login page when it has none)."""
    mine = for_role(items, role)
    return mine[0].path if mine else "/console/login"
