"""Contexts built from a vehicle's stored state: latest values, consent, faults, health.

The one place the recommendation API reads a tenant's store, read-only. The
tenant's rule configuration says which catalog signals mean latitude,
longitude, fuel level and state of charge, and how severe each fault code is,
so the recommendations read the vehicle as the rules do. The position is
exact only while the owner's consent covers location, and nothing is read
unless it covers recommendations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloud.domain import LatestValue, Purpose
from cloud.errors import NotPermitted, UnknownTenant
from cloud.recommend.context import Energy, Fault, FaultSeverity, Maintenance
from cloud.recommend.errors import InvalidContext
from cloud.rules.config import RuleConfig, SignalRef
from cloud.store.registry import TenantRegistry
from cloud.store.repository import TenantStore

__all__ = ["StoreStates", "VehicleSnapshot", "VehicleStates", "snapshot_of"]


@dataclass(frozen=True, slots=True)
class VehicleSnapshot:
    """What the store says of one vehicle now; ``None``: not known."""

    lat: float
    lon: float
    location_consent: bool
    energy: Energy | None
    level_pct: float | None
    faults: tuple[Fault, ...]
    maintenance: Maintenance
    model: str | None


#: (tenant, vehicle id) → its snapshot; raises ``UnknownVehicle``, ``StoreError``,
#: ``NotPermitted`` (no consent to recommendations), ``InvalidContext`` (no position
#: stored). Blocking: call it from a thread.
VehicleStates = Callable[[str, str], VehicleSnapshot]


class StoreStates:
    """Snapshots read from each tenant's store through a ``TenantRegistry``."""

    def __init__(self, registry: TenantRegistry, rules_files: dict[str, Path | None]) -> None:
        self._registry = registry
        self._rules = {
            tenant: RuleConfig.from_json(path.read_bytes()) if path else RuleConfig()
            for tenant, path in rules_files.items()
        }

    def __call__(self, tenant: str, vehicle_id: str) -> VehicleSnapshot:
        rules = self._rules.get(tenant)
        if rules is None:
            raise UnknownTenant(f"tenant {tenant!r} has no store configured")
        return snapshot_of(self._registry.store(tenant), vehicle_id, rules)


def snapshot_of(store: TenantStore, vehicle_id: str, rules: RuleConfig) -> VehicleSnapshot:
    """The vehicle's snapshot from ``store`` (raises ``UnknownVehicle`` first if not enrolled)."""
    consent = store.consent(vehicle_id)
    if Purpose.RECOMMENDATIONS not in consent.purposes:
        # The owner withdrew this purpose: the vehicle's data is not read for it at all.
        raise NotPermitted("the owner has not consented to recommendations for this vehicle")
    latest = store.latest(vehicle_id)
    roles = rules.signals
    lat = _value(latest, roles.latitude)
    lon = _value(latest, roles.longitude)
    if lat is None or lon is None:
        raise InvalidContext(
            "the vehicle has no stored position; send the context instead", field="vehicle_id"
        )
    soc = _value(latest, roles.state_of_charge)
    fuel = _value(latest, roles.fuel_level)
    energy, level = (
        (Energy.ELECTRIC, soc)
        if soc is not None
        else ((Energy.FUEL, fuel) if fuel is not None else (None, None))
    )
    faults = tuple(
        Fault(entry.fault.code, FaultSeverity(rules.severity_of(entry.fault.code)))
        for entry in store.active_faults(vehicle_id)
    )
    health = store.health(vehicle_id)
    codes = {reason.code for reason in health.reasons} if health else set()
    maintenance = (
        Maintenance.OVERDUE
        if "maintenance_overdue" in codes
        else Maintenance.DUE
        if "maintenance_due" in codes
        else Maintenance.OK
    )
    return VehicleSnapshot(
        lat=lat,
        lon=lon,
        location_consent=Purpose.LOCATION in consent.purposes,
        energy=energy,
        level_pct=None if level is None else min(100.0, max(0.0, level)),
        faults=faults,
        maintenance=maintenance,
        model=store.service_record(vehicle_id).model,
    )


def _value(latest: list[LatestValue], ref: SignalRef | None) -> float | None:
    if ref is None:
        return None
    for value in latest:
        if (
            value.signal == ref.name
            and (ref.message in (None, value.message))
            and (ref.bus in (None, value.bus))
        ):
            return value.value * ref.factor
    return None
