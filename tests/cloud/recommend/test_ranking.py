"""Scenario tables with known answers for the ranking (pure core, no web)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from cloud.recommend.catalog import Catalog, PoiKind
from cloud.recommend.context import (
    Context,
    Energy,
    Fault,
    FaultSeverity,
    Maintenance,
    Position,
    Precision,
    coarsen,
)
from cloud.recommend.errors import InvalidContext
from cloud.recommend.hours import parse_hours
from cloud.recommend.ranking import ReachPolicy, Recommender
from tests.cloud.recommend.scenarios import (
    BRAND,
    CATALOG,
    CCS,
    HOME,
    MONDAY_2PM,
    POIS,
    north,
    poi,
)


@pytest.fixture(scope="module")
def recommender() -> Recommender:
    return Recommender(CATALOG, brand=BRAND)


def ev(**fields: object) -> Context:
    base = Context(Position(*HOME), MONDAY_2PM, energy=Energy.ELECTRIC, connectors=CCS, limit=10)
    return replace(base, **fields)  # type: ignore[arg-type]


def ids(recommender: Recommender, context: Context) -> list[str]:
    return [s.poi.id for s in recommender.rank(context).suggestions]


@pytest.mark.parametrize(
    ("level", "range_km", "expected"),
    [
        # usable = 30 * 0.85 - 5 = 20.5 km by road = 15.8 km great circle: 15 km is in, 20 out.
        (10.0, 30.0, ["chg-near-ccs", "chg-mid-ccs"]),
        # usable = 12 * 0.85 - 5 = 5.2 km by road = 4.0 km great circle.
        (4.0, 12.0, ["chg-near-ccs"]),
        # usable = 0: nothing is reachable, and nothing is suggested.
        (1.0, 5.0, []),
    ],
)
def test_low_charge_picks_only_reachable_compatible_open_chargers(
    recommender: Recommender, level: float, range_km: float, expected: list[str]
) -> None:
    result = recommender.rank(ev(level_pct=level, range_km=range_km))
    assert [s.poi.id for s in result.suggestions] == expected
    for suggestion in result.suggestions:
        assert suggestion.poi.connectors & CCS
        codes = [reason.code for reason in suggestion.reasons]
        assert codes[0] in {"low_charge", "critical_charge"}
        assert "reachable" in codes


def test_reachability_follows_the_policy(recommender: Recommender) -> None:
    # With no safety margin, reserve or detour the whole 20 km range counts.
    generous = Recommender(
        CATALOG, brand=BRAND, reach=ReachPolicy(detour_factor=1.0, safety_margin=0.0, reserve_km=0)
    )
    assert "chg-far-ccs" in ids(generous, ev(level_pct=10.0, range_km=20.5))
    assert "chg-far-ccs" not in ids(recommender, ev(level_pct=10.0, range_km=20.5))


@pytest.mark.parametrize(
    ("faults", "maintenance", "named"),
    [
        ((Fault("P0301", FaultSeverity.CRITICAL),), Maintenance.OK, "P0301"),
        ((Fault("U0100", FaultSeverity.INFO), Fault("P0A80")), Maintenance.OK, "P0A80"),
        ((), Maintenance.OVERDUE, "overdue"),
    ],
)
def test_a_fault_or_due_service_puts_the_brand_service_centre_first(
    recommender: Recommender,
    faults: tuple[Fault, ...],
    maintenance: Maintenance,
    named: str,
) -> None:
    context = Context(
        Position(*HOME),
        MONDAY_2PM,
        energy=Energy.FUEL,
        level_pct=70,
        faults=faults,
        maintenance=maintenance,
        limit=4,
    )
    result = recommender.rank(context)
    first = result.suggestions[0]
    # The independent garage is nearer (2 km against 8 km); the brand wins.
    assert first.poi.id == "svc-brand"
    assert result.suggestions[1].poi.id == "dealer-brand"
    assert any(named in reason.text and BRAND in reason.text for reason in first.reasons)
    assert "svc-indep" in [s.poi.id for s in result.suggestions]


def test_no_fault_suggests_no_service_centre(recommender: Recommender) -> None:
    kinds = {s.poi.kind for s in recommender.rank(ev(level_pct=80)).suggestions}
    assert not kinds & {PoiKind.SERVICE_CENTRE, PoiKind.DEALER}


def test_critical_charge_outranks_the_service_centre(recommender: Recommender) -> None:
    context = ev(level_pct=5.0, range_km=30.0, faults=(Fault("P0A80"),))
    assert ids(recommender, context)[0] == "chg-near-ccs"


def test_closed_places_are_left_out_until_they_open(recommender: Recommender) -> None:
    assert "chg-closed-ccs" not in ids(recommender, ev(level_pct=30))
    at_eight = ev(level_pct=30, local_time=MONDAY_2PM.replace(hour=8, minute=30))
    assert "chg-closed-ccs" in ids(recommender, at_eight)


def test_coarse_position_gives_one_answer_for_the_whole_area(recommender: Recommender) -> None:
    cell = coarsen(Position(*HOME))
    rng = random.Random(3)
    answers = set()
    for _ in range(20):
        lat = cell.lat + rng.uniform(-0.0499, 0.0499)
        lon = cell.lon + rng.uniform(-0.0499, 0.0499)
        coarse = coarsen(Position(lat, lon))
        assert coarse == cell
        result = recommender.rank(ev(position=coarse, level_pct=40))
        answers.add(tuple((s.poi.id, s.distance_km) for s in result.suggestions))
        assert any("coarse" in note for note in result.notes)
    assert len(answers) == 1


def test_coarse_reachability_allows_for_the_uncertainty(recommender: Recommender) -> None:
    exact = Position(*north(0.0))
    coarse = coarsen(exact)
    assert coarse.precision is Precision.COARSE
    assert coarse.uncertainty_km > 5
    exact_ids = ids(recommender, ev(position=exact, level_pct=10, range_km=30))
    coarse_result = recommender.rank(ev(position=coarse, level_pct=10, range_km=30))
    for s in coarse_result.suggestions:
        assert (s.distance_km + coarse.uncertainty_km) * 1.3 <= coarse_result.usable_km  # type: ignore[operator]
    assert len(coarse_result.suggestions) <= len(exact_ids)


def test_equal_input_gives_the_same_order_whatever_the_catalog_order() -> None:
    shuffled = list(POIS)
    random.Random(5).shuffle(shuffled)
    twin = replace(POIS[0], id="chg-near-ccs-twin")  # same place and spec: a tie
    one = Recommender(Catalog.build([*POIS, twin], ()), brand=BRAND)
    other = Recommender(Catalog.build([twin, *reversed(shuffled)], ()), brand=BRAND)
    context = ev(level_pct=25, range_km=80)
    first = [(s.poi.id, s.score) for s in one.rank(context).suggestions]
    assert first == [(s.poi.id, s.score) for s in other.rank(context).suggestions]
    assert first == [(s.poi.id, s.score) for s in one.rank(context).suggestions]
    order = [poi_id for poi_id, _ in first]
    assert order.index("chg-near-ccs") + 1 == order.index("chg-near-ccs-twin")


def test_content_by_model_fault_and_validity(recommender: Recommender) -> None:
    context = ev(model="Volt", faults=(Fault("P0301"),), content_limit=5)
    content = recommender.rank(context).content
    assert [c.item.id for c in content] == ["recall-ev", "article-misfire", "offer-service"]
    assert "P0301" in content[1].reasons[0].text
    other = recommender.rank(ev(model="Other", content_limit=5)).content
    assert [c.item.id for c in other] == ["offer-service"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"level_pct": 120.0}, "level_pct"),
        ({"limit": 0}, "limit"),
        ({"local_time": MONDAY_2PM.replace(tzinfo=None)}, "local_time"),
    ],
)
def test_bad_context_is_refused_with_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidContext) as caught:
        ev(**fields)
    assert caught.value.field == field


def test_bad_position_is_refused() -> None:
    with pytest.raises(InvalidContext, match="latitude"):
        Position(91.0, 0.0)


def test_many_closed_places_do_not_hide_open_ones_further_away() -> None:
    closed = parse_hours("Mo-Fr 08:00-09:00")
    pois = [
        poi(f"closed-{i:02d}", PoiKind.CHARGING, 0.1 * (i + 1), connectors=CCS, hours=closed)
        for i in range(60)
    ]
    pois += [poi(f"open-{i}", PoiKind.CHARGING, 10.0 + i, connectors=CCS) for i in range(3)]
    recommender = Recommender(Catalog.build(pois, ()), brand=BRAND)
    assert ids(recommender, ev(level_pct=40, limit=3)) == ["open-0", "open-1", "open-2"]
