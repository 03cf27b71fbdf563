"""The pure core: the access rule (and that the SQL of the health list agrees with it),
the lead and recall state machines, the webhook backoff."""

from __future__ import annotations

import itertools

import pytest

from crm.domain import (
    ConsentTerm,
    GrantTerm,
    LeadState,
    MaintenanceSchedule,
    RecallStatus,
    Reminder,
    backoff_seconds,
    decide_access,
    lead_transition,
    maintenance_reminder,
    recall_transition,
)
from crm.store import CrmStores
from crm.store.base import now_us

NOW = 1_000_000
EVERY = frozenset({"health", "faults", "mileage", "service"})


def grant(dealer: int = 1, fields: frozenset[str] = EVERY, start: int = 0,
          end: int | None = None, purposes: frozenset[str] = frozenset(
              {"diagnostics", "after_sales"})) -> GrantTerm:  # fmt: skip
    return GrantTerm(dealer, purposes, fields, start, end)


def consent(purpose: str, dealer: int | None = None, start: int = 0, end: int | None = None,
            withdrawn: int | None = None) -> ConsentTerm:  # fmt: skip
    return ConsentTerm(purpose, dealer, start, end, withdrawn)


@pytest.mark.parametrize(
    ("grants", "consents", "fields"),
    [
        ([grant()], [consent("diagnostics"), consent("after_sales")], EVERY),
        ([grant()], [consent("diagnostics")], {"health", "faults"}),
        ([grant()], [consent("after_sales", dealer=1)], {"mileage", "service"}),
        ([grant()], [consent("after_sales", dealer=2)], set()),
        ([grant()], [consent("diagnostics", withdrawn=5)], set()),
        ([grant()], [consent("diagnostics", end=NOW)], set()),
        ([grant(end=NOW)], [consent("diagnostics")], set()),
        ([grant(start=NOW + 1)], [consent("diagnostics")], set()),
        ([grant(dealer=2)], [consent("diagnostics")], set()),
        ([grant(purposes=frozenset({"after_sales"}))], [consent("diagnostics")], set()),
        ([grant(fields=frozenset({"health"}))], [consent("diagnostics")], {"health"}),
    ],
)
def test_decide_access(
    grants: list[GrantTerm], consents: list[ConsentTerm], fields: set[str]
) -> None:
    decision = decide_access(1, grants, consents, NOW)
    assert decision.fields == fields
    assert decision.allowed == bool(fields)


def test_the_health_list_sql_agrees_with_the_pure_rule(stores: CrmStores) -> None:
    store = stores.store("acme")
    dealer = store.create_dealer("D1", "d", [])["id"]
    other = store.create_dealer("D2", "d", [])["id"]
    customer = store.create_customer({"name": "c", "email": "c@x.y", "phone": None})["id"]
    t = now_us()
    grants = [None, (dealer, t - 10, None), (dealer, t - 10, t - 1), (other, t - 10, None)]
    consents = [None, (None, None), (dealer, None), (other, None), (None, t - 1)]
    expected = set()
    for number, (g, c) in enumerate(itertools.product(grants, consents)):
        vehicle = store.create_vehicle({"vin": f"V{number:016d}", "telemetry_id": None,
                                        "model": "m", "year": 2020})["id"]  # fmt: skip
        if g is not None:
            store.create_grant({"dealer_id": g[0], "vehicle_id": vehicle,
                                "purposes": ["diagnostics"], "fields": ["health"],
                                "valid_from_us": g[1], "valid_to_us": g[2]})  # fmt: skip
        if c is not None:
            row = store.create_consent({"vehicle_id": vehicle, "customer_id": customer,
                                        "purpose": "diagnostics", "dealer_id": c[0],
                                        "valid_from_us": t - 10, "valid_to_us": None,
                                        "source": "app"})  # fmt: skip
            if c[1] is not None:
                store.withdraw_consent(row["id"])
        terms = store.access_terms(vehicle)
        if "health" in decide_access(dealer, *terms, now_us()).fields:
            expected.add(vehicle)
    listed = {row["id"] for row in store.health_page(dealer, after=None, limit=200).items}
    assert listed == expected
    assert len(expected) == 2  # the live grant with an all-dealer or own-dealer consent


def test_lead_moves() -> None:
    assert lead_transition(LeadState.OPEN, LeadState.PROPOSED) is LeadState.PROPOSED
    with pytest.raises(ValueError, match="cannot become"):
        lead_transition(LeadState.OPEN, LeadState.CLOSED)
    with pytest.raises(ValueError, match="cannot become"):
        lead_transition(LeadState.CLOSED, LeadState.OPEN)
    assert not LeadState.CANCELLED.is_open
    assert LeadState.IN_SERVICE.is_open


def test_recall_steps_only_forward() -> None:
    assert recall_transition(RecallStatus.OPEN, RecallStatus.BOOKED) is RecallStatus.BOOKED
    with pytest.raises(ValueError, match="cannot go back"):
        recall_transition(RecallStatus.DONE, RecallStatus.NOTIFIED)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_seconds(n, 1.0, 5.0) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    with pytest.raises(ValueError, match="from 1"):
        backoff_seconds(0, 1.0, 5.0)


DAY = 86_400_000_000


def test_a_reminder_comes_within_the_window_of_the_first_limit() -> None:
    schedule = MaintenanceSchedule(15_000.0, 365.0, remind_before_km=1_000.0,
                                   remind_before_days=30.0)  # fmt: skip

    def due(km: float | None, days: float) -> Reminder | None:
        return maintenance_reminder(schedule, last_service_us=0, last_service_km=10_000.0,
                                    mileage_km=km, now_us=int(days * DAY))  # fmt: skip

    assert due(20_000.0, 100) is None
    assert due(24_100.0, 100) == Reminder("distance", 365 * DAY, 25_000.0, overdue=False)
    assert due(25_000.0, 100) == Reminder("distance", 365 * DAY, 25_000.0, overdue=True)
    assert due(None, 340) == Reminder("time", 365 * DAY, 25_000.0, overdue=False)
    assert due(12_000.0, 366) == Reminder("time", 365 * DAY, 25_000.0, overdue=True)
