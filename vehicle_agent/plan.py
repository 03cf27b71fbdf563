"""The collection plan: which signals leave the car, how often, and for what purpose.

The cloud pushes a plan (the wire contract's ``CollectionPlan``); the edge
translates it into the frozen dataclasses below and :func:`compile_plan` checks
it against the car's :class:`~vehicle_agent.catalog.Catalog`. Compiling either
gives a :class:`CompiledPlan` or raises :class:`~vehicle_agent.errors.PlanError`
saying exactly what is wrong; the caller then keeps running the previous plan.

A :class:`CompiledPlan` knows which catalog indices the plan reads (the decoder
decodes only frames carrying them) and makes a
:class:`~vehicle_agent.collector.Collector`, the stateful filter that applies
the plan and the owner's consent to decoded samples.

Pure module: no transport, storage or bus library.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

from vehicle_agent.catalog import Catalog, SignalSpec
from vehicle_agent.consent import Consent, Purpose
from vehicle_agent.errors import PlanError
from vehicle_agent.expressions import Expression, ExpressionError, SignalName, parse

if TYPE_CHECKING:
    from vehicle_agent.collector import Collector

__all__ = [
    "MAX_CAPTURE_MS",
    "MAX_CAPTURE_SIGNALS",
    "MAX_SIGNALS",
    "MAX_TRIGGERS",
    "CompiledPlan",
    "CompiledSignal",
    "CompiledTrigger",
    "Plan",
    "SamplingMode",
    "SignalRef",
    "SignalRule",
    "TriggerMode",
    "TriggerRule",
    "compile_plan",
    "default_plan",
]

#: Most signal rules one plan may list.
MAX_SIGNALS = 10_000
#: Most triggers one plan may hold.
MAX_TRIGGERS = 100
#: Most capture signals one trigger may list.
MAX_CAPTURE_SIGNALS = 1_000
#: Longest pre- or post-trigger capture, in milliseconds (ten minutes).
MAX_CAPTURE_MS = 600_000
_UINT32_MAX = 2**32 - 1


class SamplingMode(StrEnum):
    """How a signal's samples are selected (the wire's UNSPECIFIED means EVERY)."""

    EVERY = "every"
    ON_CHANGE = "on_change"


class TriggerMode(StrEnum):
    """When a trigger fires (the wire's UNSPECIFIED means RISING_EDGE)."""

    RISING_EDGE = "rising_edge"
    ALWAYS = "always"


@dataclass(frozen=True, slots=True)
class SignalRef:
    """A signal by name. An empty ``bus`` matches any bus, an empty ``message``
    any message; what is left must name exactly one catalog signal."""

    name: str
    message: str = ""
    bus: str = ""

    def __str__(self) -> str:
        if self.bus:
            return f"{self.bus}.{self.message or '*'}.{self.name}"
        return f"{self.message}.{self.name}" if self.message else self.name


@dataclass(frozen=True, slots=True)
class SignalRule:
    """How one signal is sent (the wire's ``PlanSignal``).

    ``deadband`` applies to ON_CHANGE only; ``min_interval_ms`` 0 means no limit,
    ``heartbeat_ms`` 0 never, ``quantum`` 0 as decoded.
    """

    signal: SignalRef
    purpose: Purpose = Purpose.DIAGNOSTICS
    mode: SamplingMode = SamplingMode.EVERY
    deadband: float = 0.0
    min_interval_ms: int = 0
    heartbeat_ms: int = 0
    priority: int = 0
    quantum: float = 0.0


@dataclass(frozen=True, slots=True)
class TriggerRule:
    """A condition-triggered capture (the wire's ``CaptureTrigger``)."""

    name: str
    condition: str
    mode: TriggerMode = TriggerMode.RISING_EDGE
    min_interval_ms: int = 0
    pre_ms: int = 0
    post_ms: int = 0
    capture: tuple[SignalRef, ...] = ()
    purpose: Purpose = Purpose.DIAGNOSTICS
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """A versioned collection plan (the wire's ``CollectionPlan``)."""

    version: int
    name: str
    signals: tuple[SignalRule, ...] = ()
    triggers: tuple[TriggerRule, ...] = ()


def default_plan(catalog: Catalog, purpose: Purpose = Purpose.DIAGNOSTICS) -> Plan:
    """Version 0: every catalog signal, every sample, for ``purpose``."""
    rules = tuple(
        SignalRule(SignalRef(spec.name, spec.message, spec.bus), purpose) for spec in catalog
    )
    return Plan(version=0, name="default", signals=rules)


@dataclass(frozen=True, slots=True)
class CompiledSignal:
    """A signal's resolved rule: ``rule`` is None for a capture-only signal."""

    index: int
    purpose: Purpose
    rule: SignalRule | None
    quantum: float


@dataclass(frozen=True, slots=True)
class CompiledTrigger:
    """A trigger with its condition parsed and its signals resolved."""

    rule: TriggerRule
    expression: Expression
    index_of: Mapping[SignalName, int]
    inputs: tuple[int, ...]
    capture: tuple[int, ...]


@dataclass(frozen=True)
class CompiledPlan:
    """A plan checked against a catalog, ready to run.

    ``needed`` is every catalog index the plan reads (sent signals, capture
    signals and trigger inputs); ``purpose_of`` and ``priority_of`` cover every
    index that may leave the car. A capture signal takes its trigger's purpose and
    the highest priority of the rules that send it.
    """

    plan: Plan
    catalog_size: int
    signals: Mapping[int, CompiledSignal]
    triggers: tuple[CompiledTrigger, ...]
    needed: frozenset[int]
    purpose_of: Mapping[int, Purpose]
    priority_of: Mapping[int, int]
    location_quantum: float = field(default=0.0)

    def signals_for(self, purposes: Iterable[Purpose]) -> frozenset[int]:
        """The indices that may leave the car for any of ``purposes``."""
        wanted = frozenset(purposes)
        return frozenset(i for i, p in self.purpose_of.items() if p in wanted)

    def collector(self, consent: Consent) -> Collector:
        """A fresh collector running this plan under ``consent``."""
        # Imported here: the collector module imports this one for its types.
        from vehicle_agent.collector import Collector

        return Collector(self, consent)


class _Unresolved(Exception):
    """A name that does not match exactly one catalog signal (reason in args[0])."""


class _Names:
    """Resolves signal names against a catalog, explaining failures."""

    def __init__(self, catalog: Catalog) -> None:
        self.by_name: dict[str, list[SignalSpec]] = {}
        for spec in catalog:
            self.by_name.setdefault(spec.name, []).append(spec)

    def resolve(self, label: str, bus: str, message: str, name: str) -> int:
        if not name:
            raise _Unresolved("the signal name is empty")
        named = self.by_name.get(name, [])
        matches = [
            s for s in named if (not bus or s.bus == bus) and (not message or s.message == message)
        ]
        if len(matches) == 1:
            return matches[0].index
        if matches:
            found = ", ".join(_qualified(s) for s in matches)
            raise _Unresolved(
                f"signal {label!r} is ambiguous: it matches {found}; qualify it with "
                "the message (message.signal) or the bus (bus.message.signal)"
            )
        if named:
            found = ", ".join(_qualified(s) for s in named)
            raise _Unresolved(f"unknown signal {label!r}; signals named {name!r}: {found}")
        close = difflib.get_close_matches(name, self.by_name, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise _Unresolved(f"unknown signal {label!r}: no catalog signal is named {name!r}{hint}")

    def ref(self, ref: SignalRef) -> int:
        return self.resolve(str(ref), ref.bus, ref.message, ref.name)

    def written(self, name: SignalName) -> int:
        parts = ("", "", *name)[-3:]
        return self.resolve(".".join(name), parts[0], parts[1], parts[2])


def _qualified(spec: SignalSpec) -> str:
    return f"{spec.bus}.{spec.message}.{spec.name}"


def _check_count(what: str, value: object, maximum: int = _UINT32_MAX) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return f"{what} must be a whole number, got {value!r}"
    if value < 0:
        return f"{what} must not be negative, got {value}"
    if value > maximum:
        return f"{what} is {value}, more than the limit of {maximum}"
    return None


def _check_amount(what: str, value: object) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"{what} must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"{what} must be finite, got {value}"
    if value < 0:
        return f"{what} must not be negative, got {value}"
    return None


def _first(*problems: str | None) -> str | None:
    return next((p for p in problems if p is not None), None)


def _check_enum(what: str, kind: type[StrEnum], value: str) -> str | None:
    # The edge builds these from protobuf enums; a stray value must not slip
    # through as a plain string that compares unequal to every member.
    try:
        kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        return f"{what} {value!r} is not one of {choices}"
    return None


def _check_rule(rule: SignalRule) -> str | None:
    return _first(
        _check_enum("purpose", Purpose, rule.purpose),
        _check_enum("mode", SamplingMode, rule.mode),
        _check_amount("deadband", rule.deadband),
        _check_amount("quantum", rule.quantum),
        _check_count("min_interval_ms", rule.min_interval_ms),
        _check_count("heartbeat_ms", rule.heartbeat_ms),
        _check_count("priority", rule.priority),
    )


def _check_trigger(rule: TriggerRule) -> str | None:
    if len(rule.capture) > MAX_CAPTURE_SIGNALS:
        return f"captures {len(rule.capture)} signals, more than the limit of {MAX_CAPTURE_SIGNALS}"
    return _first(
        _check_enum("purpose", Purpose, rule.purpose),
        _check_enum("mode", TriggerMode, rule.mode),
        _check_count("min_interval_ms", rule.min_interval_ms),
        _check_count("pre_ms", rule.pre_ms, MAX_CAPTURE_MS),
        _check_count("post_ms", rule.post_ms, MAX_CAPTURE_MS),
        _check_count("priority", rule.priority),
    )


def compile_plan(plan: Plan, catalog: Catalog, *, location_quantum: float = 0.0) -> CompiledPlan:
    """Check ``plan`` against ``catalog`` and prepare it to run.

    ``location_quantum`` is the car's own floor for coarsening LOCATION signals:
    their values are rounded to at least this quantum whatever the plan says.

    Raises :class:`PlanError` naming the plan version, the signal or trigger at
    fault and the reason: an unknown or ambiguous signal, a signal listed twice,
    a signal wanted for two purposes, a negative, non-finite or oversize number,
    an empty trigger name or a name used twice, a condition that does not parse,
    or more signals or triggers than the limits above.
    """
    if not math.isfinite(location_quantum) or location_quantum < 0:
        raise ValueError(f"location_quantum must be finite and >= 0, got {location_quantum}")

    def fail(reason: str) -> PlanError:
        return PlanError(f"plan {plan.version} rejected: {reason}")

    if problem := _check_count("version", plan.version, 2**64 - 1):
        raise fail(problem)
    if len(plan.signals) > MAX_SIGNALS:
        raise fail(f"{len(plan.signals)} signals, more than the limit of {MAX_SIGNALS}")
    if len(plan.triggers) > MAX_TRIGGERS:
        raise fail(f"{len(plan.triggers)} triggers, more than the limit of {MAX_TRIGGERS}")

    names = _Names(catalog)
    rules: dict[int, tuple[int, SignalRule]] = {}
    for position, rule in enumerate(plan.signals):
        where = f"signal #{position} ({rule.signal})"
        if problem := _check_rule(rule):
            raise fail(f"{where}: {problem}")
        try:
            index = names.ref(rule.signal)
        except _Unresolved as exc:
            raise fail(f"{where}: {exc.args[0]}") from None
        if index in rules:
            other = rules[index][0]
            raise fail(
                f"{where}: {_qualified(catalog[index])} is already listed as signal #{other}"
            )
        rules[index] = (position, rule)

    purpose_of = {index: Purpose(rule.purpose) for index, (_, rule) in rules.items()}
    priority_of = {index: rule.priority for index, (_, rule) in rules.items()}
    captured_by: dict[int, str] = {}
    triggers: list[CompiledTrigger] = []
    seen_names: set[str] = set()
    for trigger in plan.triggers:
        label = f"trigger {trigger.name!r}"
        if not trigger.name.strip():
            raise fail("a trigger has an empty name")
        if trigger.name in seen_names:
            raise fail(f"{label}: the name is used by two triggers")
        seen_names.add(trigger.name)
        if problem := _check_trigger(trigger):
            raise fail(f"{label}: {problem}")
        try:
            expression = parse(trigger.condition)
        except ExpressionError as exc:
            raise fail(f"{label}: bad condition: {exc}") from None
        if not expression.signals:
            # Conditions are evaluated when a signal they read arrives.
            raise fail(f"{label}: the condition reads no signal, so it would never be evaluated")
        index_of: dict[SignalName, int] = {}
        try:
            for name in expression.signals:
                index_of[name] = names.written(name)
        except _Unresolved as exc:
            raise fail(f"{label}: condition: {exc.args[0]}") from None
        capture: list[int] = []
        for ref in trigger.capture:
            try:
                index = names.ref(ref)
            except _Unresolved as exc:
                raise fail(f"{label}: capture: {exc.args[0]}") from None
            if index in capture:
                raise fail(f"{label}: capture lists {_qualified(catalog[index])} twice")
            purpose = purpose_of.setdefault(index, Purpose(trigger.purpose))
            if purpose != trigger.purpose:
                source = (
                    f"trigger {captured_by[index]!r}"
                    if index in captured_by
                    else f"signal #{rules[index][0]}"
                )
                raise fail(
                    f"{label}: captures {_qualified(catalog[index])} for {trigger.purpose}, "
                    f"but {source} collects it for {purpose}"
                )
            captured_by.setdefault(index, trigger.name)
            priority_of[index] = max(priority_of.get(index, 0), trigger.priority)
            capture.append(index)
        triggers.append(
            CompiledTrigger(
                rule=trigger,
                expression=expression,
                index_of=MappingProxyType(index_of),
                inputs=tuple(dict.fromkeys(index_of.values())),
                capture=tuple(capture),
            )
        )

    signals: dict[int, CompiledSignal] = {}
    for index, purpose in purpose_of.items():
        sent = rules[index][1] if index in rules else None
        quantum = sent.quantum if sent is not None else 0.0
        if purpose is Purpose.LOCATION:
            quantum = max(quantum, location_quantum)
        signals[index] = CompiledSignal(index, purpose, sent, quantum)

    needed = set(signals)
    for compiled in triggers:
        needed.update(compiled.inputs)
    return CompiledPlan(
        plan=plan,
        catalog_size=len(catalog),
        signals=MappingProxyType(signals),
        triggers=tuple(triggers),
        needed=frozenset(needed),
        purpose_of=MappingProxyType(purpose_of),
        priority_of=MappingProxyType(priority_of),
        location_quantum=location_quantum,
    )
