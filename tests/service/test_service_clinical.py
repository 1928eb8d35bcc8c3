"""Clinical routing (wound alerts → nurse on duty and patient), preferences and quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from contract import DeviceKind
from service.lifecycle import Dispatch
from service.model import Channel, Device, Ticket, Tier
from service.notifications import (
    Notification,
    NotifyConfig,
    QuietHours,
    RecipientPrefs,
    escalation_notifications,
    opened_notifications,
    outbox_items,
)
from service.routing import CLINICAL_RULE_PREFIXES, Route, patient_message, route_of
from service.sla import SlaConfig
from tests.service.factories import T0, device, site, ticket, walk

WOUND_RULES = [
    "dressing.ph.alkaline",
    "dressing.temp.rise",
    "dressing.ph.rise",
    "dressing.exudate.rise",
    "dressing.infection.suspected",
    "dressing.infection_signs",
    "dressing.temp.contralateral",
    "dressing.exudate.saturated",
    "dressing.patch.off_skin",
]
DEVICE_RULES = [
    "dressing.sensor.temp_implausible",
    "dressing.sensor.ph_jump",
    "dressing.battery.low",
    "dressing.patch.silent",
]


def kit(device_id: str = "k1") -> Device:
    return device(device_id, DeviceKind.PATCH).model_copy(update={"patient": "pt-1"})


def alert_ticket(rule: str, tier: Tier = Tier.GENERAL, assignee: str | None = "e1") -> Ticket:
    t = ticket(device_id="k1", rule_id=rule, tier=tier)
    return walk(t, (Dispatch(assignee, "x"), T0)) if assignee else t


def by_role(notes: list[Notification]) -> dict[str, Notification]:
    return {n.role: n for n in notes}


@pytest.mark.parametrize("rule", WOUND_RULES)
def test_wound_alerts_go_to_the_clinical_team_and_the_patient_in_plain_words(rule: str) -> None:
    t = alert_ticket(rule)
    assert route_of(t, kit()) is Route.CLINICAL
    notes = by_role(opened_notifications(t, kit(), T0, SlaConfig()))
    assert set(notes) == {"clinical", "engineer", "hospital", "patient"}  # no field service
    assert notes["clinical"].subject == "s1" and notes["clinical"].payload["patient"] == "pt-1"
    message = str(notes["patient"].payload["message"])
    assert "nurse" in message and "engineer" not in message and "assigned" not in message
    assert set(notes["patient"].payload) == {"ticket_id", "device_id", "state", "message"}


@pytest.mark.parametrize("rule", DEVICE_RULES)
def test_device_faults_go_to_field_service(rule: str) -> None:
    t = alert_ticket(rule)
    assert route_of(t, kit()) is Route.FIELD_SERVICE
    notes = by_role(opened_notifications(t, kit(), T0, SlaConfig()))
    assert set(notes) == {"service", "engineer", "hospital", "patient"}
    assert "technical fault" in str(notes["patient"].payload["message"])


def test_only_dressings_and_alerts_are_clinical() -> None:
    scope = device("x1", DeviceKind.ENDOSCOPE)
    assert route_of(alert_ticket("dressing.ph.alkaline"), scope) is Route.FIELD_SERVICE
    assert route_of(alert_ticket("dressing.ph.alkaline"), None) is Route.FIELD_SERVICE
    assert all(r.startswith("dressing.") for r in CLINICAL_RULE_PREFIXES)
    unassigned = alert_ticket("dressing.battery.low", assignee=None)
    assert "has been told" in patient_message(unassigned, kit(), Route.FIELD_SERVICE)


def test_infection_message_says_what_to_do() -> None:
    text = patient_message(alert_ticket("dressing.infection_signs"), kit(), Route.CLINICAL)
    assert "infected" in text and "call your clinic" in text


# --- quiet hours and preferences ------------------------------------------------------------

NIGHT = QuietHours(start=time(22), end=time(7), timezone="Europe/Berlin")


def test_quiet_hours_hold_non_urgent_patient_news_until_morning() -> None:
    config = NotifyConfig(patient_quiet_hours=NIGHT)
    late = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    general = opened_notifications(alert_ticket("dressing.ph.rise"), kit(), late, SlaConfig())
    items = outbox_items(general, config, late)
    morning = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
    assert {i.next_at for i in items if i.role == "patient"} == {morning}
    assert {i.next_at for i in items if i.role != "patient"} == {late}
    urgent = alert_ticket("dressing.infection_signs", tier=Tier.URGENT)
    items = outbox_items(opened_notifications(urgent, kit(), late, SlaConfig()), config, late)
    assert {i.next_at for i in items} == {late}  # urgent news is never held


@pytest.mark.parametrize(
    ("at", "released"),
    [
        (datetime(2026, 3, 2, 20, 59, tzinfo=UTC), datetime(2026, 3, 2, 20, 59, tzinfo=UTC)),
        (datetime(2026, 3, 2, 21, 0, tzinfo=UTC), datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),
        (datetime(2026, 3, 3, 5, 59, tzinfo=UTC), datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),
        (datetime(2026, 3, 3, 6, 0, tzinfo=UTC), datetime(2026, 3, 3, 6, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_wrap_over_midnight(at: datetime, released: datetime) -> None:
    assert NIGHT.release(at) == released


def test_daytime_quiet_hours_and_a_recipients_own_choice() -> None:
    nap = QuietHours(start=time(13), end=time(15))
    assert nap.release(datetime(2026, 3, 2, 14, tzinfo=UTC)) == datetime(2026, 3, 2, 15, tzinfo=UTC)
    config = NotifyConfig(
        patient_quiet_hours=NIGHT,
        recipients={"patient/pt-1": RecipientPrefs(quiet_hours=nap, channels={Channel.MQTT})},
    )
    at = datetime(2026, 3, 2, 14, tzinfo=UTC)
    note = Notification("patient", "pt-1", "ticket.opened", {"ticket_id": "t"}, "x")
    [item] = outbox_items([note], config, at)
    assert item.next_at == datetime(2026, 3, 2, 15, tzinfo=UTC) and item.channel is Channel.MQTT


def test_channel_preferences_and_email_targets() -> None:
    smtp = {"host": "127.0.0.1", "port": 2525, "sender": "desk@vigil.example"}
    config = NotifyConfig.model_validate(
        {
            "smtp": smtp,
            "clinical": {"s1": [{"url": "https://ward.example/hook", "secret": "s"}]},
            "recipients": {
                "clinical/s1": {"emails": ["nurse@ward.example"]},
                "patient/pt-1": {"channels": ["email"], "emails": ["carer@home.example"]},
            },
        }
    )
    t = alert_ticket("dressing.infection_signs")
    items = outbox_items(opened_notifications(t, kit(), T0, SlaConfig()), config, T0)
    targets = {(i.role, i.channel, i.target) for i in items if i.role in ("clinical", "patient")}
    assert targets == {
        ("clinical", Channel.MQTT, "vigil/v1/notifications/clinical/s1"),
        ("clinical", Channel.WEBHOOK, "https://ward.example/hook"),
        ("clinical", Channel.EMAIL, "nurse@ward.example"),
        ("patient", Channel.EMAIL, "carer@home.example"),
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"recipients": {"doctor/x": {}}}, "must read role/subject"),
        ({"recipients": {"patient/": {}}}, "must read role/subject"),
        ({"recipients": {"patient/p1": {"emails": ["a@b.example"]}}}, "no smtp is configured"),
        ({"recipients": {"patient/p1": {"emails": ["not-an-address"]}}}, "pattern"),
        ({"recipients": {"patient/p1": {"channels": ["fax"]}}}, "'webhook', 'mqtt' or 'email'"),
        ({"patient_quiet_hours": {"start": "22:00", "end": "22:00"}}, "different times"),
        ({"patient_quiet_hours": {"start": "22:00", "end": "7:00", "timezone": "X/Y"}}, "time"),
        ({"smtp": {"host": "h", "sender": "nobody"}}, "pattern"),
        ({"smtp": {"host": "h", "port": 0, "sender": "a@b.example"}}, "greater than or equal"),
    ],
)
def test_bad_notification_settings_are_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NotifyConfig.model_validate(config)


def test_an_unstaffed_wound_alert_escalates_to_the_clinical_team() -> None:
    from service.escalation import escalate

    t = alert_ticket("dressing.infection_signs", tier=Tier.URGENT, assignee=None)
    result = escalate(t, T0 + timedelta(hours=3), kit(), site("s1"), [], [])
    notes = escalation_notifications(result, kit(), T0 + timedelta(hours=3), SlaConfig())
    assert [(n.role, n.subject) for n in notes] == [("clinical", "s1")]
    fault = alert_ticket("dressing.battery.low", tier=Tier.URGENT, assignee=None)
    result = escalate(fault, T0 + timedelta(hours=3), kit(), site("s1"), [], [])
    notes = escalation_notifications(result, kit(), T0 + timedelta(hours=3), SlaConfig())
    assert [(n.role, n.subject) for n in notes] == [("service", "team")]


# --- the nurse on duty ------------------------------------------------------------------------


def rota() -> NotifyConfig:
    return NotifyConfig.model_validate(
        {
            "rota": {
                "s1": [
                    {
                        "nurse": "n-day",
                        "start": "07:00",
                        "end": "19:00",
                        "timezone": "Asia/Shanghai",
                    },
                    {
                        "nurse": "n-night",
                        "start": "19:00",
                        "end": "07:00",
                        "weekdays": [0, 1, 2, 3, 4],
                        "timezone": "Asia/Shanghai",
                    },
                ]
            },
            "nurses": {"n-night": [{"url": "https://pager.example/n-night", "secret": "s"}]},
        }
    )


@pytest.mark.parametrize(
    ("at", "on_duty"),
    [
        (datetime(2026, 3, 2, 2, tzinfo=UTC), ["n-day"]),  # Monday 10:00 in Shanghai
        (datetime(2026, 3, 2, 12, tzinfo=UTC), ["n-night"]),  # Monday 20:00
        (datetime(2026, 3, 2, 22, tzinfo=UTC), ["n-night"]),  # Tuesday 06:00, Monday's night
        (datetime(2026, 3, 6, 22, tzinfo=UTC), ["n-night"]),  # Saturday 06:00, Friday's night
        (datetime(2026, 3, 7, 22, tzinfo=UTC), []),  # Sunday 06:00: no Saturday night shift
        (datetime(2026, 3, 2, 11, tzinfo=UTC), ["n-night"]),  # 19:00 sharp: the night begins
    ],
)
def test_the_nurse_on_duty_is_found_in_the_sites_time(at: datetime, on_duty: list[str]) -> None:
    assert rota().on_duty("s1", at) == on_duty
    assert rota().on_duty("s2", at) == []


def test_a_wound_alert_also_reaches_the_nurse_on_duty() -> None:
    night = datetime(2026, 3, 2, 12, tzinfo=UTC)
    t = alert_ticket("dressing.infection_signs")
    items = outbox_items(opened_notifications(t, kit(), night, SlaConfig()), rota(), night)
    nurse = {(i.channel, i.target) for i in items if i.role == "nurse"}
    assert nurse == {
        (Channel.MQTT, "vigil/v1/notifications/nurse/n-night"),
        (Channel.WEBHOOK, "https://pager.example/n-night"),
    }
    fault = alert_ticket("dressing.battery.low")
    items = outbox_items(opened_notifications(fault, kit(), night, SlaConfig()), rota(), night)
    assert not [i for i in items if i.role == "nurse"]  # device faults are field service's


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        ({"nurse": "n", "start": "07:00", "end": "07:00"}, "different times"),
        ({"nurse": "n 1", "start": "07:00", "end": "08:00"}, "pattern"),
        ({"nurse": "n", "start": "07:00", "end": "08:00", "weekdays": [7]}, "less than or equal"),
        ({"nurse": "n", "start": "25:00", "end": "08:00"}, "time"),
        ({"nurse": "n", "start": "07:00", "end": "08:00", "timezone": "Nowhere/X"}, "timezone"),
    ],
)
def test_bad_shifts_are_refused(shift: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NotifyConfig.model_validate({"rota": {"s1": [shift]}})
