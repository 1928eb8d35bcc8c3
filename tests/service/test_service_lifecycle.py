"""Ticket lifecycle: allowed moves, forbidden moves, pause/resume and what each step records."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.lifecycle import (
    Accept,
    Arrive,
    Close,
    Depart,
    Dispatch,
    Event,
    FollowUp,
    Pause,
    Reopen,
    Resolve,
    Resume,
    SignOff,
    TransitionError,
    allowed_events,
    transition,
)
from service.model import TicketState
from tests.service.factories import T0, hours, on_site, ticket, walk

S = TicketState
ALL_EVENTS: list[Event] = [
    Dispatch("e1", "nearest"),
    Accept(),
    Arrive(),
    Depart("needs part"),
    Pause("no access"),
    Resume(),
    Resolve("probe", "replaced probe"),
    SignOff("Dr Who", b"report"),
    FollowUp(5),
    Close(),
    Reopen("fault is back"),
]


def test_happy_path_records_every_step() -> None:
    t = walk(
        ticket(),
        (Dispatch("e1", "nearest"), T0 + hours(0.5)),
        (Accept(), T0 + hours(1)),
        (Arrive(), T0 + hours(2)),
        (Resolve("probe", "replaced"), T0 + hours(3)),
        (SignOff("Dr Who", b"the report"), T0 + hours(3.5)),
        (FollowUp(4), T0 + hours(30)),
        (Close(), T0 + hours(31)),
    )
    assert t.state is S.CLOSED
    assert [c.state for c in t.history] == [
        S.OPEN,
        S.DISPATCHED,
        S.ACCEPTED,
        S.ON_SITE,
        S.RESOLVED,
        S.SIGNED_OFF,
        S.FOLLOWED_UP,
        S.CLOSED,
    ]
    assert t.assignee == "e1" and t.dispatch_reason == "nearest"
    assert t.fault == "probe" and t.resolution == "replaced"
    assert t.signature is not None
    assert t.signature.signer == "Dr Who"
    assert t.signature.report_sha256 == hashlib.sha256(b"the report").hexdigest()
    assert t.satisfaction == 4
    assert t.entered(S.ACCEPTED) == T0 + hours(1)


def test_transition_does_not_mutate_its_input() -> None:
    t = ticket()
    transition(t, Dispatch("e1", "x"), T0)
    assert t.state is S.OPEN and t.assignee is None


@pytest.mark.parametrize("paused_in", [S.ACCEPTED, S.ON_SITE])
def test_pause_returns_to_where_it_came_from(paused_in: TicketState) -> None:
    t = (
        on_site(ticket(), T0)
        if paused_in is S.ON_SITE
        else walk(ticket(), (Dispatch("e1", "x"), T0), (Accept(), T0))
    )
    paused = transition(t, Pause("no access"), T0 + hours(1))
    assert paused.state is S.WAITING_FOR_CUSTOMER and paused.paused_from is paused_in
    resumed = transition(paused, Resume(), T0 + hours(2))
    assert resumed.state is paused_in and resumed.paused_from is None


def test_redispatch_remembers_previous_assignee() -> None:
    t = walk(ticket(), (Dispatch("e1", "a"), T0), (Dispatch("e2", "b"), T0 + hours(1)))
    assert t.assignee == "e2" and t.previous_assignees == ("e1",)


def test_depart_without_fix_counts_a_second_visit() -> None:
    t = walk(on_site(ticket(), T0), (Depart("part"), T0 + hours(1)), (Arrive(), T0 + hours(5)))
    t = walk(t, (Pause(), T0 + hours(6)), (Resume(), T0 + hours(7)))
    assert t.site_visits == 2


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_is_either_allowed_or_raises(state: TicketState, event: Event) -> None:
    t = ticket().model_copy(update={"state": state, "paused_from": S.ACCEPTED})
    if type(event).__name__ in allowed_events(state):
        assert transition(t, event, T0).state in S
    else:
        with pytest.raises(TransitionError, match=f"not allowed in state {state}"):
            transition(t, event, T0)


def test_closed_allows_only_reopening() -> None:
    assert allowed_events(S.CLOSED) == ("Reopen",)


def test_time_cannot_run_backwards() -> None:
    t = transition(ticket(), Dispatch("e1", "x"), T0 + hours(1))
    with pytest.raises(TransitionError, match="before the last change"):
        transition(t, Accept(), T0)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (Resolve(""), "fault type"),
        (SignOff("", b"r"), "signer"),
        (FollowUp(6), "satisfaction"),
        (FollowUp(0), "satisfaction"),
    ],
)
def test_bad_event_payloads_raise(event: Event, message: str) -> None:
    t = on_site(ticket(), T0)
    if isinstance(event, SignOff | FollowUp):
        t = transition(t, Resolve("probe"), T0)
    if isinstance(event, FollowUp):
        t = transition(t, SignOff("x", b""), T0)
    with pytest.raises(TransitionError, match=message):
        transition(t, event, T0)


@given(st.lists(st.sampled_from(ALL_EVENTS), max_size=30))
def test_random_event_sequences_keep_the_ticket_consistent(events: list[Event]) -> None:
    t = ticket()
    for i, event in enumerate(events):
        try:
            t = transition(t, event, T0 + hours(i))
        except TransitionError:
            continue
        assert (t.state is S.WAITING_FOR_CUSTOMER) == (t.paused_from is not None)
        assert t.history[-1].state is t.state
        assert [c.at for c in t.history] == sorted(c.at for c in t.history)
