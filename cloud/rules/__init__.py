"""Rules over a vehicle's data: events, trips, idle time and a health score.

The pure core (configuration, engine, state, health) imports no storage,
transport or web library; ``cloud.rules.worker`` is the adapter that runs it
over a tenant store and is imported on its own.
"""

from __future__ import annotations

from cloud.rules.config import RuleConfig, RuleConfigError
from cloud.rules.engine import EngineOutput, RuleEngine
from cloud.rules.events import (
    DayIdle,
    Event,
    EventKind,
    HealthReason,
    HealthScore,
    Severity,
    Trip,
    event_id,
)
from cloud.rules.state import EngineState, ServiceRecord

__all__ = [
    "DayIdle",
    "EngineOutput",
    "EngineState",
    "Event",
    "EventKind",
    "HealthReason",
    "HealthScore",
    "RuleConfig",
    "RuleConfigError",
    "RuleEngine",
    "ServiceRecord",
    "Severity",
    "Trip",
    "event_id",
]
