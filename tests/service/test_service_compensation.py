"""Follow-up scores in the KPIs, and service credits for SLA breaches (KPIs and the report)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from pydantic import ValidationError

from service.api import Principal, build_app
from service.api.routes.kpis import compute_kpis, kpis_from_facts
from service.compensation import CompensationPolicy, ServiceCredit, credit_for
from service.lifecycle import Accept, Arrive, Dispatch, FollowUp, Resolve, SignOff
from service.model import Tier
from service.report import half_year, hospital_report
from service.schedules import ScheduleConfig
from service.sla import Breach, Clock, SlaConfig
from service.store import SqliteStore
from service.store.aggregates import CreditTotals
from service.store.queries import CreditQuery, DeviceQuery, Scope
from service.ticker import Ticker
from service.worker_settings import WorkerSettings
from tests.service.factories import T0, device, engineer, hours, site, ticket, walk

POLICY = CompensationPolicy(
    currency="EUR",
    credits={
        Tier.URGENT: {Clock.RESPOND: 5_000, Clock.RESOLVE: 20_000},
        Tier.GENERAL: {Clock.RESOLVE: 2_500},
    },
)
NO_PM = ScheduleConfig(inspected_kinds=frozenset())


def breach(clock: Clock = Clock.RESPOND, tier: Tier = Tier.URGENT) -> Breach:
    return Breach("t1", clock, tier, T0 + hours(2))


def test_a_breach_earns_the_configured_credit() -> None:
    credit = credit_for(breach(), device(), POLICY, T0 + hours(3))
    assert credit is not None
    assert (credit.amount_minor, credit.currency, credit.site_id) == (5_000, "EUR", "s1")
    assert credit.key == f"t1|respond|{(T0 + hours(2)).isoformat()}"
    assert credit_for(breach(Clock.RESPOND, Tier.GENERAL), device(), POLICY, T0) is None
    assert credit_for(breach(), device(), None, T0) is None
    assert credit_for(breach(), None, POLICY, T0) is None
    contract = POLICY.model_copy(update={"contract_only": True})
    assert credit_for(breach(), device(), contract, T0) is None
    covered = device().model_copy(update={"service_contract": "SC-1"})
    assert credit_for(breach(), covered, contract, T0) is not None


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"currency": "euro"}, "pattern"),
        ({"credits": {"urgent": {"respond": -1}}}, "greater than or equal to 0"),
        ({"credits": {"vip": {"respond": 1}}}, "'urgent' or 'general'"),
        ({"credits": {"urgent": {"lunch": 1}}}, "'respond' or 'resolve'"),
    ],
)
def test_bad_policies_are_refused(policy: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CompensationPolicy.model_validate(policy)


def _store() -> SqliteStore:
    store = SqliteStore()
    store.put_site(site("s1"))
    store.put_site(site("s2"))
    store.put_device(device("d1"))
    store.put_device(device("d2", site_id="s2"))
    store.put_engineer(engineer("e1"))
    return store


async def test_the_breach_scan_keeps_one_credit_per_breach_and_audits_it() -> None:
    store = _store()
    settings = WorkerSettings(compensation=POLICY, schedules=NO_PM)
    store.put_ticket(walk(ticket("t1", "d1"), (Dispatch("e1", "x"), T0)))
    ticker = Ticker(settings, store)
    await ticker.scan_breaches(T0)
    await ticker.scan_breaches(T0 + hours(3))
    await Ticker(settings, store).scan_breaches(T0 + hours(3))  # a restart reports nothing new
    [credit] = store.credits(CreditQuery())
    assert (credit.ticket_id, credit.clock, credit.amount_minor) == ("t1", Clock.RESPOND, 5_000)
    audited = [e for e in store.audit_log() if e.action == "service_credit"]
    assert [e.data["amount_minor"] for e in audited] == [5_000]
    [note] = [i for i in store.notifications() if i.event == "sla.breached"]
    assert note.payload["credit_minor"] == 5_000 and note.payload["currency"] == "EUR"
    await ticker.scan_breaches(T0 + hours(30))  # the resolve clock too
    assert [c.amount_minor for c in store.credits(CreditQuery())] == [5_000, 20_000]
    assert store.credit_totals(CreditQuery()) == [CreditTotals("EUR", 2, 25_000)]
    store.close()


async def test_without_a_policy_breaches_earn_nothing() -> None:
    store = _store()
    store.put_ticket(ticket("t1", "d1"))
    ticker = Ticker(WorkerSettings(schedules=NO_PM), store)
    await ticker.scan_breaches(T0)
    await ticker.scan_breaches(T0 + hours(30))
    assert store.credits(CreditQuery()) == []
    store.close()


def scored(store: SqliteStore, ticket_id: str, device_id: str, score: int) -> None:
    t = walk(
        ticket(ticket_id, device_id),
        (Dispatch("e1", "x"), T0),
        (Accept(), T0),
        (Arrive(), T0),
        (Resolve("fan"), T0 + hours(1)),
        (SignOff("Dr A", b"r"), T0 + hours(2)),
        (FollowUp(score), T0 + hours(3)),
    )
    store.put_ticket(t)


def credit(key: str, site_id: str, at_hours: float, amount: int) -> ServiceCredit:
    return ServiceCredit(
        key=key,
        ticket_id="t-" + key,
        device_id="d1",
        site_id=site_id,
        clock=Clock.RESPOND,
        tier=Tier.URGENT,
        breach_at=T0 + hours(at_hours),
        amount_minor=amount,
        currency="EUR",
        created_at=T0 + hours(at_hours),
        reason="test",
    )


@pytest.mark.parametrize("scope", [Scope(), Scope(site_id="s1"), Scope(site_id="s2")])
def test_kpis_count_scores_and_credits_in_sql_as_in_python(scope: Scope) -> None:
    store = _store()
    scored(store, "a", "d1", 5)
    scored(store, "b", "d1", 2)
    scored(store, "c", "d2", 4)
    assert store.put_credit(credit("k1", "s1", 3, 1_000))
    assert not store.put_credit(credit("k1", "s1", 3, 9_999))  # the same breach: kept once
    store.put_credit(credit("k2", "s2", 4, 2_500))
    now = T0 + timedelta(days=1)
    got = kpis_from_facts(store.kpi_facts(scope, now), now, SlaConfig())
    fleet = store.device_page(DeviceQuery(scope=scope, limit=None))
    tickets = [t for t in store.tickets() if t.device_id in {d.id for d in fleet}]
    totals = store.credit_totals(CreditQuery(scope=scope))
    assert got == compute_kpis(fleet, tickets, now, SlaConfig(), totals)
    want = {
        Scope(): (3, 3.667, 2, 3_500),
        Scope(site_id="s1"): (2, 3.5, 1, 1_000),
        Scope(site_id="s2"): (1, 4.0, 1, 2_500),
    }[scope]
    [money] = got.service_credits
    assert (got.satisfaction.responses, got.satisfaction.mean) == want[:2]
    assert (money.credits, money.amount_minor) == want[2:]
    store.close()


def test_credits_are_paged_and_filtered_in_sql() -> None:
    store = _store()
    for n in range(5):
        store.put_credit(credit(f"k{n}", "s1", n, 100 * (n + 1)))
    store.put_credit(credit("other", "s2", 2, 7))
    first = store.credits(CreditQuery(site_id="s1", limit=2))
    assert [c.key for c in first] == ["k0", "k1"]
    last = first[-1]
    after = (int(last.breach_at.timestamp() * 1_000_000), last.key)
    assert [c.key for c in store.credits(CreditQuery(site_id="s1", after=after))] == [
        "k2",
        "k3",
        "k4",
    ]
    window = CreditQuery(scope=Scope(site_id="s1"), since=T0 + hours(1), until=T0 + hours(3))
    assert [c.key for c in store.credits(window)] == ["k1", "k2"]
    assert store.credit_totals(window) == [CreditTotals("EUR", 2, 500)]
    store.close()


def test_the_half_yearly_report_lists_the_periods_credits() -> None:
    start, end = half_year(T0.date())
    credits = [
        credit("in", "s1", 5, 12_345),
        credit("other-site", "s2", 5, 1),
        credit("later", "s1", 24 * 200, 1),
    ]
    html = hospital_report(
        site("s1"), [device()], [], start, end, SlaConfig(), "ab" * 32, credits=credits
    )
    section = html.split("<h2>Service credits</h2>", 1)[1]
    assert "123.45 EUR" in section and "t-in" in section
    assert "t-other-site" not in section and "t-later" not in section
    assert re.search(r"<td>service credits</td><td>123\.45 EUR \(1\)</td>", html)
    empty = hospital_report(site("s1"), [device()], [], start, end, SlaConfig(), "ab" * 32)
    assert "no service credits in this period" in empty


ADM = "in-memory-admin-token-0123456789abcdef"
H2 = "in-memory-hospital-s2-token-0123456789ab"


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    store = _store()
    scored(store, "a", "d1", 5)
    store.put_credit(credit("k1", "s1", 3, 1_000))
    store.put_credit(credit("k2", "s2", 4, 2_500))
    tokens = {ADM: {"role": "admin"}, H2: {"role": "hospital", "subject": "s2"}}
    app = build_app(store, {t: Principal.model_validate(p) for t, p in tokens.items()})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield client
    store.close()


async def test_the_kpi_route_shows_scores_and_credits_in_the_callers_scope(
    api: httpx.AsyncClient,
) -> None:
    everything = (await api.get("/kpis", headers={"Authorization": f"Bearer {ADM}"})).json()
    assert everything["satisfaction"] == {"responses": 1, "mean": 5.0}
    assert everything["service_credits"] == [
        {"currency": "EUR", "credits": 2, "amount_minor": 3_500}
    ]
    mine = (await api.get("/kpis", headers={"Authorization": f"Bearer {H2}"})).json()
    assert mine["satisfaction"] == {"responses": 0, "mean": None}
    assert mine["service_credits"] == [{"currency": "EUR", "credits": 1, "amount_minor": 2_500}]


def test_settings_make_the_policy() -> None:
    from vigil.settings import VigilSettings

    assert VigilSettings().compensation_policy() is None
    policy = VigilSettings(
        compensation={"urgent_respond_credit": 5000, "currency": "USD"}
    ).compensation_policy()
    assert policy is not None and policy.amount(Tier.URGENT, Clock.RESPOND) == 5000
    assert policy.amount(Tier.GENERAL, Clock.RESOLVE) == 0 and policy.currency == "USD"
    with pytest.raises(ValidationError, match="pattern"):
        VigilSettings(compensation={"currency": "dollars"})
