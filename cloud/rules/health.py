"""A vehicle's health score, 0 to 100, with the reasons it is not 100.

The score starts at 100 and each reason takes its points (``HealthWeights``):
every active fault code by its severity, maintenance due or overdue, a low
12 V battery now, a battery whose daily lowest voltage keeps falling (least
squares slope over the kept days), and anomalies against the vehicle's own
history: a watched signal whose mean today lies more than ``anomaly_z``
standard deviations from its daily means of the days before. The same state
always gives the same score and reasons, in the same order.
"""

from __future__ import annotations

import math

from cloud.rules.config import RuleConfig
from cloud.rules.events import HealthReason, HealthScore
from cloud.rules.state import EngineState

__all__ = ["battery_slope", "health_score"]


def health_score(
    state: EngineState,
    config: RuleConfig,
    maintenance: tuple[float, str] | None,
    as_of_us: int,
) -> HealthScore:
    """Score ``state``; ``maintenance`` is (fraction of the service interval used, by what)."""
    settings = config.health
    weights = settings.weights
    reasons: list[HealthReason] = []
    by_severity = {
        "info": weights.fault_info,
        "warning": weights.fault_warning,
        "critical": weights.fault_critical,
    }
    for key, fault in sorted(state.active_faults.items()):
        reasons.append(
            HealthReason(
                f"fault:{key}",
                by_severity.get(fault.severity, weights.fault_warning),
                f"{fault.severity} fault code {fault.code} active",
            )
        )
    if maintenance is not None and maintenance[0] >= 1.0:
        fraction, by = maintenance
        overdue = fraction >= settings.overdue_fraction
        reasons.append(
            HealthReason(
                "maintenance_overdue" if overdue else "maintenance_due",
                weights.maintenance_overdue if overdue else weights.maintenance_due,
                f"service {'overdue' if overdue else 'due'} by {by} "
                f"({fraction:.0%} of the interval)",
            )
        )
    if state.low_battery:
        volts = state.values.get("battery_voltage")
        reasons.append(
            HealthReason("low_battery", weights.low_battery, f"12 V battery low ({volts} V)")
        )
    slope = battery_slope(state.battery_daily_min)
    if slope is not None and slope <= -settings.battery_decline_v_per_day:
        reasons.append(
            HealthReason(
                "battery_decline",
                weights.battery_decline,
                f"daily lowest battery voltage falling {-slope:.3f} V/day",
            )
        )
    for role in sorted(state.daily_sums):
        z = _anomaly_z(state.daily_sums[role], config)
        if z is not None and abs(z) >= settings.anomaly_z:
            reasons.append(
                HealthReason(
                    f"anomaly:{role}",
                    weights.anomaly,
                    f"{role} today is {z:+.1f} standard deviations from its own history",
                )
            )
    lost = sum(reason.points for reason in reasons)
    return HealthScore(max(0, round(100 - lost)), tuple(reasons), as_of_us)


def battery_slope(daily_min: dict[int, float]) -> float | None:
    """Least-squares slope (V/day) of the daily lowest voltages; ``None`` under 3 days."""
    if len(daily_min) < 3:
        return None
    days = sorted(daily_min)
    mean_x = sum(days) / len(days)
    mean_y = sum(daily_min[d] for d in days) / len(days)
    cov = sum((d - mean_x) * (daily_min[d] - mean_y) for d in days)
    var = sum((d - mean_x) ** 2 for d in days)
    return cov / var


def _anomaly_z(days: dict[int, list[float]], config: RuleConfig) -> float | None:
    settings = config.health
    ordered = sorted(days)
    if len(ordered) < settings.anomaly_min_days + 1:
        return None
    today, history = ordered[-1], ordered[-1 - settings.anomaly_days : -1]
    means = [days[d][1] / days[d][0] for d in history if days[d][0]]
    if len(means) < settings.anomaly_min_days or not days[today][0]:
        return None
    mean = sum(means) / len(means)
    std = math.sqrt(sum((m - mean) ** 2 for m in means) / len(means))
    spread = max(std, settings.anomaly_min_spread * abs(mean), 1e-9)
    return (days[today][1] / days[today][0] - mean) / spread
