"""Apply a compiled collection plan and the owner's consent to decoded samples.

One :class:`Collector` runs per active plan. The agent gives it the samples of
each decoded frame with the frame's CAN timestamp; it returns the samples that
leave the car and records the triggers that fired. It never reads a clock: all
times are CAN times in microseconds, so a replayed log behaves like the road.

Semantics, per signal:

* A sample of a signal whose purpose the consent does not grant is never sent
  (counted in ``blocked``), nor kept as pre-trigger history. Withdrawing consent
  also forgets the signal's history and policy state, so after re-granting, the
  first sample counts as the first.
* EVERY sends each sample; ON_CHANGE sends the first, then a sample that differs
  from the last one sent by more than ``deadband``, or (``heartbeat_ms``) once
  the last one sent is at least that old. ``min_interval_ms`` caps either mode:
  a sample closer than that to the last one sent is not sent, heartbeat
  included. ``quantum`` (and the car's location quantum) rounds values before
  the deadband compares them. Policy state follows only what the policy itself
  sent: captures add samples without changing it.

Triggers:

* A condition is evaluated once per frame that carries a signal it reads, after
  every sample of the frame has updated the latest values (so two signals of one
  frame are never seen half-updated), and is false until each signal it reads
  has had a value. It reads raw values, before any coarsening.
* RISING_EDGE fires on false → true, ALWAYS on every true evaluation, both at
  least ``min_interval_ms`` after the previous firing (a firing suppressed by the
  interval is counted and lost, not postponed). A trigger whose purpose is not
  granted keeps evaluating, so its edges stay correct, but never fires.
* On firing at time T, every unsent sample of each capture signal from
  T - ``pre_ms`` to T (both inclusive) is sent, then every sample up to
  T + ``post_ms`` (inclusive). A sample is sent at most once, whichever policy
  or capture selects it.

Order: within one returned list the samples of each signal are in timestamp
order; pre-trigger history is by nature older than samples a policy may already
have sent in earlier calls.

Counters (:class:`CollectorStats`) account for every sample: ``samples_in`` =
``samples_out`` + ``unselected`` + ``blocked`` + ``filtered``. A pre-trigger
sample later sent by a capture moves from ``filtered`` to ``samples_out``.

Pure module: no transport, storage or bus library.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from vehicle_agent.batching import TriggerMark
from vehicle_agent.consent import Consent, Purpose, coarsen
from vehicle_agent.expressions import Condition, NoData, compile_condition
from vehicle_agent.plan import CompiledPlan, SamplingMode, TriggerMode

__all__ = [
    "DEFAULT_HISTORY_SAMPLES",
    "DEFAULT_MAX_MARKS",
    "DEFAULT_WINDOW_SAMPLES",
    "Collector",
    "CollectorStats",
    "Window",
]

#: Most pre-trigger samples kept per capture signal.
DEFAULT_HISTORY_SAMPLES = 20_000
#: Most samples kept per window of a window function (min/max/avg).
DEFAULT_WINDOW_SAMPLES = 100_000
#: Most trigger marks kept between two drains.
DEFAULT_MAX_MARKS = 10_000

# Route codes, one per catalog index: what process() does with a sample.
_SKIP = 0  # the plan does not use the signal
_SEND = 1  # EVERY, consented, nothing else to do: the fast path
_BLOCK = 2  # sent by the plan but not consented, and read by no trigger
_SLOW = 3  # anything else: see Collector._slow
_NEVER = -(2**62)  # "long ago" for capture deadlines
_BY_TIME = itemgetter(1)


@dataclass(slots=True)
class CollectorStats:
    """What a :class:`Collector` did with the samples it was given.

    ``unselected``: samples of signals the plan does not send (trigger inputs,
    other signals of the same frames). ``filtered``: samples of sent signals that
    neither the policy nor a capture selected. ``blocked``: samples whose purpose
    the consent does not grant. ``history_dropped``: pre-trigger samples dropped
    because a capture signal's history was full; ``window_dropped``: samples
    dropped from full windows (both make the history shorter than asked for).
    ``marks_dropped``: trigger marks dropped because nobody drained them.
    """

    samples_in: int = 0
    samples_out: int = 0
    unselected: int = 0
    filtered: int = 0
    blocked: int = 0
    triggers_fired: int = 0
    triggers_suppressed: int = 0
    history_dropped: int = 0
    window_dropped: int = 0
    marks_dropped: int = 0


class Window:
    """The samples of one signal in the last ``span_us`` of CAN time (for min/max/avg).

    Keeps at most ``max_samples`` samples (dropping the oldest, counted in
    ``dropped``) so a fast signal cannot grow it without bound. Minimum and
    maximum come from monotonic queues (amortised O(1) per sample); the average
    from a running sum, recomputed exactly now and then so rounding errors do not
    accumulate.
    """

    __slots__ = (
        "_maxs",
        "_mins",
        "_removed",
        "_seq",
        "_sum",
        "_times",
        "_values",
        "dropped",
        "max_samples",
        "span_us",
    )

    def __init__(self, span_us: int, max_samples: int) -> None:
        self.span_us = span_us
        self.max_samples = max_samples
        self._times: deque[int] = deque()
        self._values: deque[float] = deque()
        self._mins: deque[tuple[int, float]] | None = None
        self._maxs: deque[tuple[int, float]] | None = None
        self._sum = 0.0
        self._seq = 0  # samples ever added: gives each one a sequence number
        self._removed = 0
        self.dropped = 0

    def track(self, func: str) -> None:
        """Maintain what ``func`` (``min``, ``max`` or ``avg``) needs."""
        if func == "min" and self._mins is None:
            self._mins = deque()
        elif func == "max" and self._maxs is None:
            self._maxs = deque()

    def add(self, time_us: int, value: float) -> None:
        seq = self._seq
        self._seq = seq + 1
        self._times.append(time_us)
        self._values.append(value)
        self._sum += value
        if len(self._times) > self.max_samples:
            self.dropped += 1
            self._pop()
        if (mins := self._mins) is not None:
            while mins and mins[-1][1] >= value:
                mins.pop()
            mins.append((seq, value))
        if (maxs := self._maxs) is not None:
            while maxs and maxs[-1][1] <= value:
                maxs.pop()
            maxs.append((seq, value))
        self._expire(time_us)

    def _pop(self) -> None:
        self._times.popleft()
        self._sum -= self._values.popleft()
        self._removed += 1

    def _expire(self, now_us: int) -> None:
        times = self._times
        cutoff = now_us - self.span_us
        while times and times[0] < cutoff:
            self._pop()
        if not times:
            self._sum = 0.0
            self._removed = 0
        elif self._removed > 4096:
            self._sum = math.fsum(self._values)
            self._removed = 0
        first = self._seq - len(times)  # sequence number of the oldest kept sample
        for queue in (self._mins, self._maxs):
            if queue is not None:
                while queue and queue[0][0] < first:
                    queue.popleft()

    def __len__(self) -> int:
        return len(self._times)

    def min(self, now_us: int) -> float:
        self._expire(now_us)
        if not self._mins:
            raise NoData
        return self._mins[0][1]

    def max(self, now_us: int) -> float:
        self._expire(now_us)
        if not self._maxs:
            raise NoData
        return self._maxs[0][1]

    def avg(self, now_us: int) -> float:
        self._expire(now_us)
        if not self._times:
            raise NoData
        return self._sum / len(self._times)


class _Slot:
    """State of one signal the plan sends or reads."""

    __slots__ = (
        "allowed",
        "capture",
        "capture_until",
        "deadband",
        "heartbeat_us",
        "history",
        "index",
        "keep_us",
        "last_t",
        "last_v",
        "min_interval_us",
        "on_change",
        "policy",
        "purpose",
        "quantum",
        "seen",
        "sends",
        "triggers",
        "windows",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.purpose: Purpose | None = None
        self.sends = False  # leaves the car by policy or capture
        self.allowed = False
        self.policy = False
        self.on_change = False
        self.deadband = 0.0
        self.min_interval_us = 0
        self.heartbeat_us = 0
        self.quantum = 0.0
        self.last_t: int | None = None
        self.last_v = 0.0
        self.capture = False
        self.keep_us = 0  # longest pre-trigger history any trigger wants
        self.history: deque[tuple[int, float]] = deque()
        self.capture_until = _NEVER
        self.triggers: list[_Trigger] = []
        self.windows: list[Window] = []
        self.seen = False

    @property
    def trivial(self) -> bool:
        """Every sample goes out as decoded: the fast path can take it."""
        return (
            self.policy
            and not self.on_change
            and not self.min_interval_us
            and not self.quantum
            and not self.capture
            and not self.triggers
        )


class _Trigger:
    """State of one trigger."""

    __slots__ = (
        "allowed",
        "capture",
        "condition",
        "dirty",
        "last_fire",
        "min_interval_us",
        "missing",
        "name",
        "order",
        "post_us",
        "pre_us",
        "purpose",
        "rising",
        "state",
    )

    def __init__(self, order: int, name: str, condition: Condition, purpose: Purpose) -> None:
        self.order = order
        self.name = name
        self.condition = condition
        self.purpose = purpose
        self.allowed = False
        self.rising = True
        self.min_interval_us = 0
        self.pre_us = 0
        self.post_us = 0
        self.capture: list[_Slot] = []
        self.missing = 0  # referenced signals without a value yet
        self.state = False
        self.dirty = False
        self.last_fire: int | None = None


_UNUSED = _Slot(-1)


class Collector:
    """The running state of one compiled plan; see the module docstring."""

    def __init__(
        self,
        plan: CompiledPlan,
        consent: Consent,
        *,
        history_samples: int = DEFAULT_HISTORY_SAMPLES,
        window_samples: int = DEFAULT_WINDOW_SAMPLES,
        max_marks: int = DEFAULT_MAX_MARKS,
    ) -> None:
        if min(history_samples, window_samples, max_marks) < 1:
            raise ValueError("history_samples, window_samples and max_marks must be positive")
        self.plan = plan
        self.consent = consent
        self._version = plan.plan.version
        self._history_samples = history_samples
        self._window_samples = window_samples
        self._max_marks = max_marks
        self._stats = CollectorStats()
        self._fired: list[TriggerMark] = []
        self._values: list[float] = [0.0] * plan.catalog_size
        self._windows: dict[tuple[int, int], Window] = {}
        # Indexed by catalog index; _UNUSED where the plan neither sends nor reads.
        self._slot_list: list[_Slot] = [_UNUSED] * plan.catalog_size
        self._dirty: list[_Trigger] = []
        self._reorder = False

        for index, compiled in plan.signals.items():
            slot = self._slot(index)
            slot.sends = True
            slot.purpose = compiled.purpose
            slot.quantum = compiled.quantum
            rule = compiled.rule
            if rule is not None:
                slot.policy = True
                slot.on_change = rule.mode == SamplingMode.ON_CHANGE
                slot.deadband = rule.deadband
                slot.min_interval_us = rule.min_interval_ms * 1000
                slot.heartbeat_us = rule.heartbeat_ms * 1000
        self._triggers: list[_Trigger] = []
        for order, compiled_trigger in enumerate(plan.triggers):
            trigger_rule = compiled_trigger.rule
            condition = compile_condition(
                compiled_trigger.expression, compiled_trigger.index_of, self._values, self._window
            )
            trigger = _Trigger(order, trigger_rule.name, condition, Purpose(trigger_rule.purpose))
            trigger.rising = trigger_rule.mode == TriggerMode.RISING_EDGE
            trigger.min_interval_us = trigger_rule.min_interval_ms * 1000
            trigger.pre_us = trigger_rule.pre_ms * 1000
            trigger.post_us = trigger_rule.post_ms * 1000
            for index in compiled_trigger.inputs:
                self._slot(index).triggers.append(trigger)
            trigger.missing = len(compiled_trigger.inputs)
            for index in compiled_trigger.capture:
                slot = self._slot(index)
                slot.capture = True
                slot.keep_us = max(slot.keep_us, trigger.pre_us)
                trigger.capture.append(slot)
            self._triggers.append(trigger)
        self._route: list[int] = [_SKIP] * plan.catalog_size
        self._passthrough = False
        self.set_consent(consent)

    def _slot(self, index: int) -> _Slot:
        slot = self._slot_list[index]
        if slot is _UNUSED:
            slot = self._slot_list[index] = _Slot(index)
        return slot

    def _window(self, index: int, seconds: float, func: str) -> Window:
        span_us = round(seconds * 1_000_000)
        window = self._windows.get((index, span_us))
        if window is None:
            window = Window(span_us, self._window_samples)
            self._windows[(index, span_us)] = window
            self._slot(index).windows.append(window)
        window.track(func)
        return window

    # ------------------------------------------------------------ consent

    def set_consent(self, consent: Consent) -> None:
        """Apply a new consent from the next sample on."""
        self.consent = consent
        for slot in self._slot_list:
            if slot is _UNUSED:
                continue
            allowed = slot.purpose is not None and consent.allows(slot.purpose)
            if slot.allowed and not allowed:
                # Nothing collected while consent was given may leave later, and
                # after a re-grant the policy starts afresh.
                slot.history.clear()
                slot.capture_until = _NEVER
                slot.last_t = None
            slot.allowed = allowed
        for trigger in self._triggers:
            trigger.allowed = consent.allows(trigger.purpose)
        route = self._route
        for index, slot in enumerate(self._slot_list):
            if slot is _UNUSED:
                route[index] = _SKIP
            elif slot.trivial:
                route[index] = _SEND if slot.allowed else _BLOCK
            else:
                route[index] = _SLOW
        self._passthrough = not self._triggers and all(code == _SEND for code in route)

    @property
    def passthrough(self) -> bool:
        """Whether every sample of every catalog signal goes out as decoded.

        Then the caller may skip :meth:`process` and count with :meth:`passed`.
        """
        return self._passthrough

    def passed(self, count: int) -> None:
        """Count *count* samples sent as they are, without :meth:`process`."""
        stats = self._stats
        stats.samples_in += count
        stats.samples_out += count

    # ------------------------------------------------------------ samples

    def process(
        self, timestamp_us: int, samples: Sequence[tuple[int, float]]
    ) -> list[tuple[int, int, float]]:
        """Filter the samples of one frame; return those to send as (index, time, value)."""
        out: list[tuple[int, int, float]] = []
        route = self._route
        skipped = blocked = 0
        for index, value in samples:
            code = route[index]
            if code == _SEND:
                out.append((index, timestamp_us, value))
            elif code == _SKIP:
                skipped += 1
            elif code == _BLOCK:
                blocked += 1
            else:
                self._slow(self._slot_list[index], timestamp_us, value, out)
        if self._dirty:
            self._evaluate(timestamp_us, out)
        if self._reorder:
            # Flushed history is older than samples of this frame already in
            # `out`; a stable sort by time restores per-signal order.
            out.sort(key=_BY_TIME)
            self._reorder = False
        stats = self._stats
        stats.samples_in += len(samples)
        stats.samples_out += len(out)
        stats.unselected += skipped
        stats.blocked += blocked
        return out

    def _slow(self, slot: _Slot, ts: int, value: float, out: list[tuple[int, int, float]]) -> None:
        if slot.triggers:
            self._values[slot.index] = value
            for window in slot.windows:
                window.add(ts, value)
            if not slot.seen:
                slot.seen = True
                for trigger in slot.triggers:
                    trigger.missing -= 1
            for trigger in slot.triggers:
                if not trigger.dirty:
                    trigger.dirty = True
                    self._dirty.append(trigger)
        stats = self._stats
        if not slot.sends:
            stats.unselected += 1
            return
        if not slot.allowed:
            stats.blocked += 1
            return
        if slot.quantum:
            value = coarsen(value, slot.quantum)
        if slot.policy:
            last_t = slot.last_t
            if last_t is None or (
                not (slot.min_interval_us and ts - last_t < slot.min_interval_us)
                and (
                    not slot.on_change
                    or abs(value - slot.last_v) > slot.deadband
                    or (slot.heartbeat_us and ts - last_t >= slot.heartbeat_us)
                )
            ):
                slot.last_t = ts
                slot.last_v = value
                out.append((slot.index, ts, value))
                return
        if slot.capture:
            if ts <= slot.capture_until:
                out.append((slot.index, ts, value))
                return
            history = slot.history
            history.append((ts, value))
            cutoff = ts - slot.keep_us
            while history[0][0] < cutoff:
                history.popleft()
            if len(history) > self._history_samples:
                history.popleft()
                stats.history_dropped += 1
        stats.filtered += 1

    def _evaluate(self, ts: int, out: list[tuple[int, int, float]]) -> None:
        dirty = self._dirty
        if len(dirty) > 1:
            dirty.sort(key=lambda t: t.order)
        for trigger in dirty:
            trigger.dirty = False
            if trigger.missing:
                continue
            state = trigger.condition(ts)
            was = trigger.state
            trigger.state = state
            if not state or (trigger.rising and was) or not trigger.allowed:
                continue
            last = trigger.last_fire
            if last is not None and ts - last < trigger.min_interval_us:
                self._stats.triggers_suppressed += 1
                continue
            trigger.last_fire = ts
            self._fire(trigger, ts, out)
        dirty.clear()

    def _fire(self, trigger: _Trigger, ts: int, out: list[tuple[int, int, float]]) -> None:
        stats = self._stats
        stats.triggers_fired += 1
        if len(self._fired) < self._max_marks:
            self._fired.append(TriggerMark(trigger.name, ts, self._version))
        else:
            stats.marks_dropped += 1
        cutoff = ts - trigger.pre_us
        end = ts + trigger.post_us
        for slot in trigger.capture:
            if not slot.allowed:
                continue
            history = slot.history
            taken: list[tuple[int, float]] = []
            # History is in arrival order; what the window wants is its tail.
            while history and history[-1][0] >= cutoff:
                taken.append(history.pop())
            if taken:
                index = slot.index
                out.extend((index, t, v) for t, v in reversed(taken))
                stats.filtered -= len(taken)
                self._reorder = True
            if end > slot.capture_until:
                slot.capture_until = end

    # ------------------------------------------------------------ reporting

    @property
    def stats(self) -> CollectorStats:
        """The counters so far (a live object; copy it to keep a snapshot)."""
        self._stats.window_dropped = sum(w.dropped for w in self._windows.values())
        return self._stats

    @property
    def fired(self) -> list[TriggerMark]:
        """Trigger marks since the last :meth:`drain_fired` (a copy)."""
        return list(self._fired)

    def drain_fired(self) -> list[TriggerMark]:
        """Return and forget the trigger marks recorded so far."""
        fired, self._fired = self._fired, []
        return fired
