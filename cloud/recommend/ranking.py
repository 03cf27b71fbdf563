"""Ranking: hard filters, then a weighted score, each suggestion with its reasons.

For one context the :class:`Recommender`:

1. takes the points within the search radius from the spatial index: the
   smaller of ``max_search_km`` and what the range reaches;
2. keeps those that pass the **hard filters**: a kind worth suggesting now
   (chargers for an electric car, fuel stations otherwise; dealers and service
   centres only with a fault or a service due; no parking while energy is
   low), a compatible connector, and **reachable**: great-circle distance, plus
   the position's uncertainty when it is coarse, times ``detour_factor`` (roads
   are longer than the great circle), within the *usable* range: the range
   less ``safety_margin`` of it and less ``reserve_km``;
3. scores them: ``distance`` (nearer is better) + ``urgency`` (of fuel or charge
   for energy stops, of the worst fault or the service for service points) +
   ``brand`` (the tenant's own service points, when a service is needed) +
   ``price`` (cheap for its kind in the catalog; unknown is neutral) +
   ``power`` (chargers), each term in 0..1 times the tenant's weight;
4. orders by tier (the brand's service points come first when a fault or
   service is due, unless the energy left is critical, when energy stops do),
   then score, then id, so equal input always gives the same order;
5. walks that order skipping what is closed at the context's local time
   ("open now" is a hard filter, but it does not change the score, so it is
   checked only for the best few, and further down only when too many of
   those are closed).

Everything but step 5 is vectorised over numpy arrays, so a query costs about
the same for a catalog of a hundred points or of a hundred thousand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cloud.recommend.catalog import (
    SERVICE_KINDS,
    Catalog,
    Connector,
    ContentItem,
    ContentKind,
    Poi,
    PoiKind,
)
from cloud.recommend.context import Context, Energy, FaultSeverity, Maintenance, Precision
from cloud.recommend.spatial import GridIndex

__all__ = [
    "ContentSuggestion",
    "ReachPolicy",
    "Reason",
    "Recommendations",
    "Recommender",
    "Suggestion",
    "Weights",
]

_KINDS = list(PoiKind)
_CONNECTORS = list(Connector)
#: Kind code → whether it is a service point.
_SERVICE_LUT = np.array([kind in SERVICE_KINDS for kind in _KINDS], np.bool_)
_SEVERITY_URGENCY = {
    FaultSeverity.INFO: 0.2,
    FaultSeverity.WARNING: 0.6,
    FaultSeverity.CRITICAL: 1.0,
}
_MAINTENANCE_URGENCY = {Maintenance.OK: 0.0, Maintenance.DUE: 0.4, Maintenance.OVERDUE: 0.7}
#: Charger power above which more is no better for the score.
_FULL_POWER_KW = 350.0
#: How many ranked candidates are checked for opening hours per suggestion wanted.
_OVERSCAN = 8
#: Larger than any score: what puts the first tier ahead of every other candidate.
_TIER_GAP = 1e6


@dataclass(frozen=True, slots=True)
class Weights:
    """The tenant's weight of each score term (each term is in 0..1)."""

    distance: float = 1.0
    urgency: float = 2.0
    brand: float = 1.5
    price: float = 0.5
    power: float = 0.6


@dataclass(frozen=True, slots=True)
class ReachPolicy:
    """What counts as reachable, and when energy is low (see the module docstring)."""

    detour_factor: float = 1.3
    safety_margin: float = 0.15
    reserve_km: float = 5.0
    max_search_km: float = 30.0
    low_level_pct: float = 20.0
    critical_level_pct: float = 8.0
    low_range_km: float = 60.0
    critical_range_km: float = 25.0

    def usable_km(self, range_km: float) -> float:
        return max(0.0, range_km * (1.0 - self.safety_margin) - self.reserve_km)


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an item was suggested: a stable ``code`` for programs, ``text`` for people."""

    code: str
    text: str


@dataclass(frozen=True, slots=True)
class Suggestion:
    poi: Poi
    distance_km: float
    score: float
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class ContentSuggestion:
    item: ContentItem
    score: float
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class Recommendations:
    suggestions: tuple[Suggestion, ...]
    content: tuple[ContentSuggestion, ...]
    #: Range left and the part of it counted as usable, km (None: not known).
    range_km: float | None
    usable_km: float | None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class _Situation:
    """What the context says, worked out once per query."""

    energy_kind: PoiKind
    energy_urgency: float
    energy_low: bool
    energy_critical: bool
    service_urgency: float
    service_needed: bool


class Recommender:
    """One tenant's catalog, indexed, and the tenant's ranking policy."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        weights: Weights | None = None,
        reach: ReachPolicy | None = None,
        brand: str | None = None,
        cell_deg: float = 0.05,
    ) -> None:
        self.weights = weights or Weights()
        self.reach = reach or ReachPolicy()
        self.brand = brand
        # Id order is the final tie-break: position in these arrays is the id's rank.
        self.pois = tuple(sorted(catalog.pois, key=lambda poi: poi.id))
        self.content = tuple(sorted(catalog.content, key=lambda item: item.id))
        n = len(self.pois)
        lats = np.fromiter((p.lat for p in self.pois), np.float64, n)
        lons = np.fromiter((p.lon for p in self.pois), np.float64, n)
        self._index = GridIndex(lats, lons, cell_deg=cell_deg)
        self._kind = np.fromiter((_KINDS.index(p.kind) for p in self.pois), np.int8, n)
        #: How many places of each kind the catalog holds.
        self.kind_counts = {
            kind.value: int(count)
            for kind, count in zip(
                _KINDS, np.bincount(self._kind, minlength=len(_KINDS)), strict=True
            )
            if count
        }
        self._plugs = np.fromiter((_mask(p.connectors) for p in self.pois), np.int64, n)
        self._fixed: dict[str, tuple[Reason | None, Reason, Reason | None]] = {}
        own = brand.casefold() if brand else None
        self._own_service = np.fromiter(
            (
                own is not None and p.kind in SERVICE_KINDS and (p.brand or "").casefold() == own
                for p in self.pois
            ),
            np.bool_,
            n,
        )
        # The terms that do not depend on the context, summed once: power (unknown
        # scores as none, above _FULL_POWER_KW no better) and price (see _cheapness).
        power = np.fromiter(
            (min(p.power_kw or 0.0, _FULL_POWER_KW) / _FULL_POWER_KW for p in self.pois),
            np.float64,
            n,
        )
        price = np.fromiter(
            (np.nan if p.price is None else p.price for p in self.pois), np.float64, n
        )
        w = self.weights
        self._static = w.power * power + w.price * _cheapness(price, self._kind)
        self._static_brand = self._static + w.brand * self._own_service

    def __len__(self) -> int:
        return len(self.pois)

    def rank(self, context: Context) -> Recommendations:
        """The suggestions and content for ``context``, best first, each with its reasons."""
        reach = self.reach
        situation = self._situation(context)
        usable = None if context.range_km is None else reach.usable_km(context.range_km)
        uncertainty = context.position.uncertainty_km
        radius = reach.max_search_km
        if usable is not None:
            radius = min(radius, max(0.0, usable / reach.detour_factor - uncertainty))
        lat, lon = context.position.lat, context.position.lon
        # Attributes first (cheap lookups), distances only for what passes them.
        idx = self._index.candidates(lat, lon, radius)
        idx = idx[self._hard_filters(idx, situation, context)]
        dist = self._index.distances_km(lat, lon, idx)
        near = dist <= radius
        idx, dist = idx[near], dist[near]
        score, first = self._score(idx, dist, radius, situation)
        suggestions: list[Suggestion] = []
        energy = (situation.energy_kind, _energy_reason(situation, context))
        ranked = self._order(idx, score, first, context.limit * _OVERSCAN)
        walked = 0
        while len(suggestions) < context.limit and walked < ranked.size:
            position = ranked[walked]
            walked += 1
            if walked == ranked.size and ranked.size < idx.size:
                # Too many of the best were closed: sort them all. The best few are
                # every key up to the k-th, so they are this order's first entries.
                ranked = self._order(idx, score, first, idx.size)
            poi = self.pois[int(idx[position])]
            if poi.hours.is_open(context.local_time):
                suggestions.append(
                    self._suggestion(
                        poi,
                        float(dist[position]),
                        float(score[position]),
                        context,
                        usable,
                        energy,
                    )
                )
        notes = list(context.notes)
        if context.position.precision is Precision.COARSE:
            notes.append(
                f"distances are from the centre of a coarse area (±{uncertainty:.0f} km) and "
                "reachability allows for that"
            )
        return Recommendations(
            tuple(suggestions),
            self._rank_content(context, situation),
            context.range_km,
            usable,
            tuple(notes),
        )

    # ------------------------------------------------------------------ steps

    def _situation(self, context: Context) -> _Situation:
        reach = self.reach
        level, range_km = context.level_pct, context.range_km
        urgency = 0.0
        if level is not None:
            urgency = max(urgency, min(1.0, max(0.0, (50.0 - level) / 50.0)))
        if range_km is not None:
            urgency = max(urgency, min(1.0, max(0.0, 1.0 - range_km / 200.0)))
        low = (level is not None and level <= reach.low_level_pct) or (
            range_km is not None and range_km <= reach.low_range_km
        )
        critical = (level is not None and level <= reach.critical_level_pct) or (
            range_km is not None and range_km <= reach.critical_range_km
        )
        service = max(
            [_SEVERITY_URGENCY[fault.severity] for fault in context.faults]
            + [_MAINTENANCE_URGENCY[context.maintenance]]
        )
        return _Situation(
            energy_kind=PoiKind.CHARGING if context.energy is Energy.ELECTRIC else PoiKind.FUEL,
            energy_urgency=urgency,
            energy_low=low,
            energy_critical=critical,
            service_urgency=service,
            service_needed=bool(context.faults) or context.maintenance is not Maintenance.OK,
        )

    def _hard_filters(
        self, idx: npt.NDArray[np.int64], situation: _Situation, context: Context
    ) -> npt.NDArray[np.bool_]:
        kind = self._kind[idx]
        wanted = np.zeros(len(_KINDS), np.bool_)
        wanted[_KINDS.index(situation.energy_kind)] = True
        if situation.service_needed:
            wanted[_SERVICE_LUT] = True
        if not situation.energy_low:
            wanted[[_KINDS.index(PoiKind.PARKING), _KINDS.index(PoiKind.OTHER)]] = True
        keep: npt.NDArray[np.bool_] = wanted[kind]
        if situation.energy_kind is PoiKind.CHARGING and context.connectors:
            charging = kind == _KINDS.index(PoiKind.CHARGING)
            fits = (self._plugs[idx] & _mask(context.connectors)) != 0
            keep &= ~charging | fits
        return keep

    def _score(
        self,
        idx: npt.NDArray[np.int64],
        dist: npt.NDArray[np.float64],
        radius: float,
        situation: _Situation,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_] | None]:
        """Each candidate's score, and which of them form the first tier (None: no tier)."""
        w = self.weights
        kind = self._kind[idx]
        energy_code = _KINDS.index(situation.energy_kind)
        urgency = np.zeros(len(_KINDS))
        urgency[_SERVICE_LUT] = situation.service_urgency
        urgency[energy_code] = situation.energy_urgency
        static = self._static_brand if situation.service_needed else self._static
        score: npt.NDArray[np.float64] = (w.urgency * urgency)[kind] + static[idx]
        if radius > 0:
            score += (w.distance / radius) * (radius - dist)
        if situation.energy_critical:
            return score, kind == energy_code
        if situation.service_needed:
            return score, self._own_service[idx]
        return score, None

    def _order(
        self,
        idx: npt.NDArray[np.int64],
        score: npt.NDArray[np.float64],
        first: npt.NDArray[np.bool_] | None,
        wanted: int,
    ) -> npt.NDArray[np.int64]:
        """Positions of the best ``wanted`` (and any tied with the last), best first:
        first tier, then score, then id. Only those are sorted."""
        # One key per candidate: the first tier sits a constant below the rest, which
        # keeps equal scores equal within a tier.
        key = -score if first is None else np.where(first, -score - _TIER_GAP, -score)
        if key.size > wanted:
            kth = np.partition(key, wanted - 1)[wanted - 1]
            chosen = np.flatnonzero(key <= kth)
        else:
            chosen = np.arange(key.size)
        ordered: npt.NDArray[np.int64] = chosen[np.lexsort((idx[chosen], key[chosen]))]
        return ordered

    def _suggestion(
        self,
        poi: Poi,
        distance: float,
        score: float,
        context: Context,
        usable: float | None,
        energy: tuple[PoiKind, Reason],
    ) -> Suggestion:
        """``energy``: the kind of energy stop wanted and the reason for it (one per query)."""
        reasons: list[Reason] = []
        if poi.kind is energy[0]:
            reasons.append(energy[1])
        elif poi.kind in SERVICE_KINDS:
            reasons.extend(_service_reasons(poi, context, self._is_own(poi)))
        plugs, opening, price = self._fixed_reasons(poi)
        if plugs is not None:
            fits = sorted(c.value for c in poi.connectors & context.connectors)
            reasons.append(
                Reason(plugs.code, f"{plugs.text}; fits your {', '.join(fits)}") if fits else plugs
            )
        road = distance * self.reach.detour_factor
        text = f"{distance:.1f} km away (about {road:.1f} km by road)"
        if usable is not None:
            text += f", within the {usable:.0f} km usable of {context.range_km:.0f} km range"
        reasons.append(Reason("reachable" if usable is not None else "distance", text))
        reasons.append(opening)
        if price is not None:
            reasons.append(price)
        return Suggestion(poi, round(distance, 3), round(score, 6), tuple(reasons))

    def _fixed_reasons(self, poi: Poi) -> tuple[Reason | None, Reason, Reason | None]:
        """The reasons that depend on the place alone, made once per place on first use
        (the cache grows to the catalog's size at most)."""
        fixed = self._fixed.get(poi.id)
        if fixed is None:
            plugs = None
            if poi.kind is PoiKind.CHARGING:
                names = ", ".join(sorted(c.value for c in poi.connectors))
                power = f", up to {poi.power_kw:g} kW" if poi.power_kw else ""
                plugs = Reason("connector", f"connectors {names}{power}")
            opening = Reason(
                "open", "open 24/7" if poi.hours.always else f"open now ({poi.hours.text})"
            )
            price = None
            if poi.price is not None:
                unit = "kWh" if poi.kind is PoiKind.CHARGING else "litre"
                price = Reason("price", f"price {poi.price:g} per {unit}")
            fixed = (plugs, opening, price)
            self._fixed[poi.id] = fixed
        return fixed

    def _is_own(self, poi: Poi) -> bool:
        return bool(self.brand and (poi.brand or "").casefold() == self.brand.casefold())

    def _rank_content(
        self, context: Context, situation: _Situation
    ) -> tuple[ContentSuggestion, ...]:
        today = context.local_time.date()
        ranked: list[ContentSuggestion] = []
        for item in self.content:
            if (item.valid_from and today < item.valid_from) or (
                item.valid_until and today > item.valid_until
            ):
                continue
            if item.models and context.model not in item.models:
                continue
            scored = _content_score(item, context, situation)
            if scored is not None:
                ranked.append(ContentSuggestion(item, scored[0], scored[1]))
        ranked.sort(key=lambda s: (-s.score, s.item.id))
        return tuple(ranked[: context.content_limit])


def _mask(connectors: frozenset[Connector]) -> int:
    return sum(1 << _CONNECTORS.index(c) for c in connectors)


def _cheapness(
    price: npt.NDArray[np.float64], kind: npt.NDArray[np.int8]
) -> npt.NDArray[np.float64]:
    """1 for the cheapest of its kind in the catalog, 0 for the dearest, 0.5 unknown.

    Against the whole catalog rather than the candidates of one query, so it is
    computed once; a tenant's catalog covers one market, one currency."""
    result = np.full(price.size, 0.5)
    known = ~np.isnan(price)
    if not known.any():
        return result
    for code in range(len(_KINDS)):
        same = known & (kind == code)
        if not same.any():
            continue
        low, high = price[same].min(), price[same].max()
        if high > low:
            result[same] = (high - price[same]) / (high - low)
    return result


def _energy_reason(situation: _Situation, context: Context) -> Reason:
    what = "charge" if situation.energy_kind is PoiKind.CHARGING else "fuel"
    level = "" if context.level_pct is None else f" at {context.level_pct:.0f}%"
    left = "" if context.range_km is None else f", about {context.range_km:.0f} km left"
    if situation.energy_critical:
        return Reason(f"critical_{what}", f"{what}{level}{left}: stop as soon as you can")
    if situation.energy_low:
        return Reason(f"low_{what}", f"{what}{level}{left}: time to stop")
    return Reason(f"{what}_stop", f"{what}{level}{left}")


def _service_reasons(poi: Poi, context: Context, own: bool) -> list[Reason]:
    reasons: list[Reason] = []
    who = f"{poi.brand} service" if own and poi.brand else "service"
    for fault in context.faults:
        reasons.append(Reason("fault", f"{who} for fault {fault.code} ({fault.severity.value})"))
    if context.maintenance is not Maintenance.OK:
        reasons.append(
            Reason("maintenance", f"{who}: your scheduled service is {context.maintenance.value}")
        )
    return reasons


def _content_score(
    item: ContentItem, context: Context, situation: _Situation
) -> tuple[float, tuple[Reason, ...]] | None:
    codes = [f.code.upper() for f in context.faults]
    about = [c for c in codes if any(c.startswith(p) for p in item.fault_prefixes)]
    if item.kind is ContentKind.RECALL:
        model = f" for your {context.model}" if item.models and context.model else ""
        return 3.0, (Reason("recall", f"recall notice{model}: {item.title}"),)
    if about:
        return 2.0, (Reason("fault", f"about your fault {', '.join(about)}"),)
    if item.kind is ContentKind.SERVICE_OFFER:
        if situation.service_needed:
            why = (
                "your scheduled service is " + context.maintenance.value
                if context.maintenance is not Maintenance.OK
                else "a fault needs a visit"
            )
            return 1.5, (Reason("service_offer", f"offer for a visit: {why}"),)
        return 0.5, (Reason("service_offer", "current service offer"),)
    if item.fault_prefixes:
        return None  # an article about faults this vehicle does not have
    return 0.3, (Reason("article", "article"),)
