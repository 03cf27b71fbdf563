"""The events the cloud puts on the bus, and their JSON envelope.

::

    {"kind": "batch_committed", "tenant": "acme", "vehicle_id": "WVW1", "sequence": 7,
     "samples": 1000, "first_ts_us": ..., "last_ts_us": ...}

Each event names its ``kind``; fields are only ever added, and a reader
ignores fields it does not know, so an older worker reads a newer gateway's
events. JSON rather than protobuf: these are small notifications read by our
own workers and by operators (``nats sub``), not the car's bulk wire format.
Each event knows its subject and its message id, which is what makes a
repeat of it recognisable to the bus and to idempotent consumers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError

from cloud.errors import MalformedEvent
from cloud.events import subjects

__all__ = [
    "BatchCommitted",
    "Event",
    "FaultChange",
    "FaultsCommitted",
    "RuleEvent",
    "decode",
    "encode",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant: str
    vehicle_id: str


class BatchCommitted(_Event):
    """A telemetry batch is in the tenant's store (also sent again for a resent duplicate)."""

    kind: Literal["batch_committed"] = "batch_committed"
    sequence: int = Field(ge=0)
    #: Samples the batch carries (all of them are stored).
    samples: int = Field(ge=0)
    #: CAN time of its first and last sample, microseconds since the epoch; 0 when empty.
    first_ts_us: int
    last_ts_us: int

    @property
    def subject(self) -> str:
        return subjects.batches(self.tenant)

    @property
    def msg_id(self) -> str:
        return f"{self.vehicle_id}:{self.sequence}"


class FaultChange(BaseModel):
    """One fault code set or cleared, as the car reported it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: str
    state: str
    protocol: str
    bus: str
    source: int
    ts_us: int


class FaultsCommitted(_Event):
    """A fault-code report is in the tenant's store."""

    kind: Literal["faults_committed"] = "faults_committed"
    report_id: int = Field(ge=0)
    codes: tuple[FaultChange, ...] = ()
    #: How many of the codes were not stored before (0 for a resent report).
    new: int = Field(default=0, ge=0)

    @property
    def subject(self) -> str:
        return subjects.faults(self.tenant)

    @property
    def msg_id(self) -> str:
        return f"{self.vehicle_id}:faults:{self.report_id}"


class RuleEvent(_Event):
    """Something the rules saw happen (``cloud.rules.events.Event``), stored and announced."""

    kind: Literal["rule_event"] = "rule_event"
    #: The rule event's stable id (the same when a batch is processed again).
    id: str
    #: What happened: ``fault_set``, ``trip_ended``, ... (``EventKind``); names the subject.
    event: str
    ts_us: int
    severity: str
    details: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def subject(self) -> str:
        return subjects.events(self.tenant, self.event)

    @property
    def msg_id(self) -> str:
        return self.id


Event = BatchCommitted | FaultsCommitted | RuleEvent

_EVENT: TypeAdapter[Event] = TypeAdapter(Annotated[Event, Field(discriminator="kind")])


def encode(event: Event) -> bytes:
    """The event as the bus carries it."""
    return event.model_dump_json().encode()


def decode(data: bytes) -> Event:
    """The event in ``data``; ``MalformedEvent`` if it is not one this cloud knows."""
    try:
        return _EVENT.validate_json(data)
    except ValidationError as exc:
        raise MalformedEvent(f"not a known event: {exc.errors()[0]['msg']}") from exc
