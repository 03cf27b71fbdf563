"""Collection-plan documents: the JSON an automaker's engineer writes, validated strictly.

A document names the plan, the signals to send (each with a purpose and a
sampling policy) and condition-triggered captures::

    {"name": "highway-braking",
     "signals": [{"signal": "Engine.Speed", "purpose": "diagnostics",
                  "mode": "on_change", "deadband": 50, "heartbeat_ms": 10000}],
     "triggers": [{"name": "hard-brake", "condition": "BrakePressure > 50",
                   "capture": ["Chassis.VehicleSpeed.Speed"], "pre_ms": 5000,
                   "post_ms": 5000, "purpose": "diagnostics"}]}

A signal is ``"Signal"``, ``"Message.Signal"``, ``"Bus.Message.Signal"`` or an
object ``{"bus", "message", "name"}``; a missing bus or message matches any.
Unknown keys, wrong types and values out of range are refused, every problem
named in one ``InvalidPlan``. The trigger condition is only checked for being
present: the car parses it with its own grammar and reports a rejection back
(``PlanStatus``), which the cloud stores and shows.

``check_signals`` checks a document against a vehicle's catalog (when the
vehicle said hello at least once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cloud.errors import InvalidPlan

__all__ = [
    "MAX_HEARTBEAT_MS",
    "MAX_POST_MS",
    "MAX_PRE_MS",
    "MAX_PRIORITY",
    "PlanDocument",
    "PlanSignal",
    "PlanTrigger",
    "SignalName",
    "check_signals",
    "parse_plan",
]

PurposeName = Literal["diagnostics", "after_sales", "location", "recommendations", "analytics"]

#: Longest interval a policy may ask for (a day): longer is a typo, not a policy.
MAX_HEARTBEAT_MS = 86_400_000
#: History a car keeps before a trigger: bounded by the car's memory.
MAX_PRE_MS = 60_000
#: How long a capture may run after its trigger.
MAX_POST_MS = 600_000
MAX_PRIORITY = 255
_MAX_SIGNALS = 10_000
_MAX_TRIGGERS = 100
_MAX_CAPTURE = 500

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


class SignalName(BaseModel):
    """A signal by name; an empty bus or message matches any."""

    model_config = _STRICT

    bus: str = Field(default="", max_length=64)
    message: str = Field(default="", max_length=128)
    name: str = Field(min_length=1, max_length=128)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parts = value.split(".")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise ValueError(
                f"signal {value!r} must be 'Signal', 'Message.Signal' or 'Bus.Message.Signal'"
            )
        return dict(zip(("bus", "message", "name")[3 - len(parts) :], parts, strict=True))

    @field_validator("bus", "message", "name")
    @classmethod
    def _plain(cls, value: str) -> str:
        if any(char.isspace() or char == "." for char in value):
            raise ValueError(f"{value!r} must not contain spaces or dots")
        return value

    def matches(self, bus: str, message: str, name: str) -> bool:
        """Whether the catalog entry (bus, message, name) is this signal."""
        return (
            self.name == name
            and (not self.message or self.message == message)
            and (not self.bus or self.bus == bus)
        )

    def __str__(self) -> str:
        return ".".join(part for part in (self.bus, self.message, self.name) if part)


class PlanSignal(BaseModel):
    """One signal to send, why, and how often."""

    model_config = _STRICT

    signal: SignalName
    purpose: PurposeName
    mode: Literal["every", "on_change"] = "every"
    #: ``on_change``: the absolute change that counts.
    deadband: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    min_interval_ms: int = Field(default=0, ge=0, le=MAX_HEARTBEAT_MS)
    heartbeat_ms: int = Field(default=0, ge=0, le=MAX_HEARTBEAT_MS)
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    #: Round values to multiples of this (0: as decoded).
    quantum: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.deadband and self.mode != "on_change":
            raise ValueError("deadband applies only to mode 'on_change'")
        if self.heartbeat_ms and self.heartbeat_ms < self.min_interval_ms:
            raise ValueError(
                f"heartbeat_ms ({self.heartbeat_ms}) must not be shorter than "
                f"min_interval_ms ({self.min_interval_ms})"
            )
        return self


class PlanTrigger(BaseModel):
    """A condition-triggered capture."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    #: Parsed by the car's own grammar, never here.
    condition: str = Field(min_length=1, max_length=2_000)
    mode: Literal["rising_edge", "always"] = "rising_edge"
    min_interval_ms: int = Field(default=0, ge=0, le=MAX_HEARTBEAT_MS)
    pre_ms: int = Field(default=0, ge=0, le=MAX_PRE_MS)
    post_ms: int = Field(default=0, ge=0, le=MAX_POST_MS)
    capture: list[SignalName] = Field(default_factory=list, max_length=_MAX_CAPTURE)
    purpose: PurposeName
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)

    @field_validator("condition")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("condition must not be blank")
        return value


class PlanDocument(BaseModel):
    """A whole collection plan, as written (its version is given when it is stored)."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=200)
    signals: list[PlanSignal] = Field(default_factory=list, max_length=_MAX_SIGNALS)
    triggers: list[PlanTrigger] = Field(default_factory=list, max_length=_MAX_TRIGGERS)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen: dict[SignalName, int] = {}
        for position, item in enumerate(self.signals):
            first = seen.setdefault(item.signal, position)
            if first != position:
                raise ValueError(
                    f"signals[{position}]: {item.signal} is listed twice (also signals[{first}])"
                )
        names: set[str] = set()
        for trigger in self.triggers:
            if trigger.name in names:
                raise ValueError(f"trigger name {trigger.name!r} is used twice")
            names.add(trigger.name)
        return self

    def referenced(self) -> list[SignalName]:
        """Every signal the plan names (collected or captured), first mention first."""
        refs = [item.signal for item in self.signals]
        refs += [ref for trigger in self.triggers for ref in trigger.capture]
        return list(dict.fromkeys(refs))


def parse_plan(source: str | bytes | Mapping[str, Any] | PlanDocument) -> PlanDocument:
    """A validated document from JSON text or an already loaded object.

    Raises ``InvalidPlan`` listing every problem, each with where it is.
    """
    if isinstance(source, PlanDocument):
        return source
    try:
        if isinstance(source, str | bytes):
            return PlanDocument.model_validate_json(source)
        return PlanDocument.model_validate(source)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors()]
        raise InvalidPlan("invalid collection plan:\n  " + "\n  ".join(problems)) from None


def check_signals(
    document: PlanDocument, catalog: Iterable[tuple[str, str, str]], *, vehicle_id: str
) -> None:
    """Refuse a plan naming a signal the vehicle's catalog lacks, or names ambiguously."""
    entries = list(catalog)
    problems: list[str] = []
    for ref in document.referenced():
        found = [entry for entry in entries if ref.matches(*entry)]
        if not found:
            problems.append(f"{ref} is not in the catalog of vehicle {vehicle_id!r}")
        elif len(found) > 1:
            candidates = ", ".join(".".join(entry) for entry in found)
            problems.append(f"{ref} is ambiguous in the catalog (matches {candidates})")
    if problems:
        raise InvalidPlan(
            f"collection plan {document.name!r} does not fit the vehicle's catalog "
            "(as of its last hello):\n  " + "\n  ".join(problems)
        )


def _problem(error: Mapping[str, Any]) -> str:
    """One line per problem: where it is (``signals[2].mode``), then what is wrong."""
    where = ""
    for part in error["loc"]:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "string_pattern_mismatch":
        message = "must be 1-64 characters of letters, digits, '_', '.' or '-'"
    elif kind == "json_invalid":
        message = f"the plan is not valid JSON: {error.get('ctx', {}).get('error', '')}"
    elif kind == "model_type" and not where:
        message = "the plan must be a JSON object"
    else:
        # pydantic prefixes the messages our own validators raise.
        message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
