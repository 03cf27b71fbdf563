"""A tenant's rule configuration: which signals mean what, thresholds, geofences, schedules.

Rules are data, not code: an operator writes one JSON document per tenant
(``RuleConfig.from_json``), and every field has a default that suits a
passenger car, so ``RuleConfig()`` is a working configuration. Signals are
referred to by their catalog name (optionally narrowed by message and bus)
with the unit the DBC gives them; the engine converts to its own units
(km/h, km, %, V, m/s²) with ``to_engine_unit``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "Circle",
    "Geofence",
    "ModelSpec",
    "Polygon",
    "RuleConfig",
    "RuleConfigError",
    "SignalMapping",
    "SignalRef",
    "Thresholds",
    "to_engine_unit",
]


class RuleConfigError(ValueError):
    """A rule configuration document that cannot be used; the message says why."""


#: Factors from a DBC unit to the engine's unit of the same quantity.
_UNIT_FACTORS: dict[str, float] = {
    "km/h": 1.0,
    "kph": 1.0,
    "m/s": 3.6,
    "mph": 1.609344,
    "km": 1.0,
    "m": 0.001,
    "mi": 1.609344,
    "%": 1.0,
    "v": 1.0,
    "mv": 0.001,
    "rpm": 1.0,
    "m/s^2": 1.0,
    "m/s2": 1.0,
    "m/s²": 1.0,
    "g": 9.80665,
    "deg": 1.0,
    "": 1.0,
}


def to_engine_unit(unit: str) -> float:
    """The factor turning a value in ``unit`` into the engine's unit of that quantity."""
    try:
        return _UNIT_FACTORS[unit.strip().lower()]
    except KeyError:
        raise RuleConfigError(f"unknown unit {unit!r}; known: {sorted(_UNIT_FACTORS)}") from None


class _Strict(BaseModel):
    # A misspelt key in an operator's document must fail, not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignalRef(_Strict):
    """A catalog signal by name (and message/bus when the name alone is ambiguous)."""

    name: str = Field(min_length=1)
    unit: str = ""
    message: str | None = None
    bus: str | None = None

    @property
    def factor(self) -> float:
        return to_engine_unit(self.unit)


class SignalMapping(_Strict):
    """Which catalog signals the rules read; an unmapped role disables what needs it."""

    speed: SignalRef | None = SignalRef(name="Speed", unit="km/h")
    engine_speed: SignalRef | None = None
    fuel_level: SignalRef | None = None
    state_of_charge: SignalRef | None = None
    battery_voltage: SignalRef | None = None
    odometer: SignalRef | None = None
    latitude: SignalRef | None = None
    longitude: SignalRef | None = None
    #: Positive forwards: braking is negative.
    longitudinal_acceleration: SignalRef | None = None

    def roles(self) -> dict[str, SignalRef]:
        """Every mapped role with its signal."""
        return {
            role: ref
            for role in type(self).model_fields
            if (ref := getattr(self, role)) is not None
        }


class Thresholds(_Strict):
    """Limits of the rules; ``*_enter``/``*_exit`` pairs are hysteresis bands."""

    low_fuel_enter_pct: float = 12.0
    low_fuel_exit_pct: float = 18.0
    low_charge_enter_pct: float = 15.0
    low_charge_exit_pct: float = 20.0
    #: Below this the 12 V battery is low, once it stayed there for ``low_voltage_seconds``
    #: (a cranking dip is shorter); it is fine again at or above ``low_voltage_exit``.
    low_voltage_enter: float = 11.8
    low_voltage_exit: float = 12.2
    low_voltage_seconds: float = 30.0
    #: Engine speed at or above which the engine runs.
    engine_on_rpm: float = 300.0
    #: Below this speed a vehicle with its engine running is idling.
    idle_speed_kmh: float = 2.0
    idle_minutes: float = 5.0
    #: Deceleration (positive, m/s²) that counts as harsh braking; it re-arms below half.
    harsh_braking_mps2: float = 4.0
    #: From the speed signal (no acceleration mapped): only over samples this close.
    harsh_braking_window_s: float = 2.0
    trip_start_kmh: float = 5.0
    trip_end_kmh: float = 2.0
    #: A trip ends once the vehicle stood still (below ``trip_end_kmh``) this long.
    trip_end_gap_s: float = 180.0
    #: Longer than this without any sample is a gap in the data: time is not counted
    #: across it and an open trip ends at its last sample.
    max_gap_s: float = 300.0

    @model_validator(mode="after")
    def _bands(self) -> Thresholds:
        pairs = [
            ("low_fuel", self.low_fuel_enter_pct, self.low_fuel_exit_pct),
            ("low_charge", self.low_charge_enter_pct, self.low_charge_exit_pct),
            ("low_voltage", self.low_voltage_enter, self.low_voltage_exit),
            ("trip speed", self.trip_end_kmh, self.trip_start_kmh),
        ]
        for name, low, high in pairs:
            if low > high:
                raise ValueError(f"{name}: the lower threshold {low} is above {high}")
        return self


class Circle(_Strict):
    kind: Literal["circle"] = "circle"
    name: str = Field(min_length=1)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0)


class Polygon(_Strict):
    kind: Literal["polygon"] = "polygon"
    name: str = Field(min_length=1)
    #: (latitude, longitude) vertices; the ring closes itself.
    points: list[tuple[float, float]] = Field(min_length=3)


Geofence = Annotated[Circle | Polygon, Field(discriminator="kind")]


class ModelSpec(_Strict):
    """What the rules need to know of one vehicle model."""

    service_every_km: float | None = Field(default=15_000.0, gt=0)
    service_every_days: float | None = Field(default=365.0, gt=0)
    fuel_tank_litres: float | None = Field(default=None, gt=0)
    battery_kwh: float | None = Field(default=None, gt=0)
    #: Fuel an idling engine burns, for "fuel wasted idling".
    idle_fuel_lph: float = Field(default=0.8, ge=0)


class HealthWeights(_Strict):
    """Points a health score loses per reason."""

    fault_info: float = 3.0
    fault_warning: float = 12.0
    fault_critical: float = 35.0
    maintenance_due: float = 10.0
    maintenance_overdue: float = 20.0
    low_battery: float = 15.0
    battery_decline: float = 10.0
    anomaly: float = 8.0


class HealthSettings(_Strict):
    weights: HealthWeights = HealthWeights()
    #: Overdue once past this fraction of the interval.
    overdue_fraction: float = Field(default=1.1, ge=1.0)
    #: Daily minimum voltage falling faster than this (V/day) over the kept days.
    battery_decline_v_per_day: float = Field(default=0.05, gt=0)
    battery_days: int = Field(default=14, ge=3)
    #: Days of history a signal's daily means are judged against.
    anomaly_days: int = Field(default=30, ge=3)
    anomaly_min_days: int = Field(default=5, ge=2)
    anomaly_z: float = Field(default=3.0, gt=0)
    #: A floor under the history's spread (fraction of its mean), so a signal that
    #: never varied does not call every hundredth of a volt an anomaly.
    anomaly_min_spread: float = Field(default=0.01, ge=0)
    #: Roles whose daily means are watched for anomalies.
    anomaly_roles: list[str] = ["battery_voltage", "engine_speed"]


class RuleConfig(_Strict):
    """One tenant's rules."""

    signals: SignalMapping = SignalMapping()
    thresholds: Thresholds = Thresholds()
    geofences: list[Geofence] = []
    #: Vehicle model → its spec; ``default_model`` applies to models not listed.
    models: dict[str, ModelSpec] = {}
    default_model: ModelSpec = ModelSpec()
    #: Fault code (or code prefix, longest wins) → severity; others are "warning".
    fault_severity: dict[str, Literal["info", "warning", "critical"]] = {}
    health: HealthSettings = HealthSettings()

    @model_validator(mode="after")
    def _unique_fences(self) -> RuleConfig:
        names = [fence.name for fence in self.geofences]
        if len(names) != len(set(names)):
            raise ValueError("geofence names must be unique")
        for ref in self.signals.roles().values():
            to_engine_unit(ref.unit)
        for role in self.health.anomaly_roles:
            if role not in SignalMapping.model_fields:
                raise ValueError(f"anomaly role {role!r} is not a signal role")
        return self

    @classmethod
    def from_json(cls, text: str | bytes) -> RuleConfig:
        """Parse and validate a configuration document."""
        try:
            return cls.model_validate_json(text)
        except (ValidationError, RuleConfigError) as exc:
            raise RuleConfigError(f"invalid rule configuration: {exc}") from exc

    def model_spec(self, model: str | None) -> ModelSpec:
        return self.models.get(model or "", self.default_model)

    def severity_of(self, code: str) -> str:
        best: tuple[int, str] = (-1, "warning")
        for prefix, severity in self.fault_severity.items():
            if code.startswith(prefix) and len(prefix) > best[0]:
                best = (len(prefix), severity)
        return best[1]
