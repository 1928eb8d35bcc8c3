"""What every console request shares: sessions, the navigation, the live hub, acknowledgements."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from service.console.acks import AckBook
from service.console.live import LiveHub
from service.console.nav import NavItem
from service.console.session import Sessions


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """Kept in ``app.state.console``."""

    sessions: Sessions
    nav: tuple[NavItem, ...]
    hub: LiveHub
    acks: AckBook


def console_of(request: Request) -> ConsoleState:
    """The console state of the app serving ``request``."""
    state = request.app.state.console
    assert isinstance(state, ConsoleState)
    return state
