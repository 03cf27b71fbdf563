"""One selected message's decoding plan: compiled once, then applied to each chunk.

:class:`MessagePlan` compiles the message's codec tree into :class:`~vehicle_agent.vector.mux.Node`
of :class:`~vehicle_agent.vector.layout.SignalPlan` (or records why it cannot, and
decodes with cantools frame by frame instead, :mod:`vehicle_agent.vector.fallback`), and
decodes a chunk's frames of the message into a :class:`~vehicle_agent.vector.model.MessageBatch`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from cantools.database.can import Message, Signal
from cantools.database.conversion import (
    IdentityConversion,
    LinearConversion,
    LinearIntegerConversion,
)

from vehicle_agent.vector.fallback import decode_frames
from vehicle_agent.vector.layout import (
    SignalPlan,
    Unsupported,
    Windows,
    check_layout,
    network_start,
)
from vehicle_agent.vector.model import (
    BoolArray,
    Column,
    DecodeCounts,
    Engine,
    Frames,
    IntArray,
    MessageBatch,
    OutputMessage,
    OutputSignal,
)
from vehicle_agent.vector.mux import Node, State, mux_number, walk
from vehicle_agent.vector.values import (
    choice_labels,
    conversion_of,
    float_exact,
    label_lookup,
    make_scaler,
    output_dtype,
)

__all__ = ["MessagePlan"]


_FLOAT_BITS = (16, 32, 64)


def _always_decoded(message: Message) -> frozenset[str]:
    """The signals cantools decodes in every frame: those outside multiplexer branches."""
    codecs = message._codecs
    if message.is_container or codecs is None:
        return frozenset()
    return frozenset(signal.name for signal in codecs["signals"])


class MessagePlan:
    """How one selected message decodes: vectorised, or by cantools frame by frame."""

    def __init__(
        self,
        index: int,
        name: str,
        message: Message,
        wanted: Collection[str] | None,
        choices: bool,
        scaling: bool,
        engine: Engine,
    ) -> None:
        self.message = message
        self.name = name
        self.choices = choices
        self.scaling = scaling
        self.length = int(message.length) if type(message.length) is int else -1
        chosen = [s for s in message.signals if wanted is None or s.name in wanted]
        always = _always_decoded(message)
        signals = tuple(
            OutputSignal(
                s.name,
                output_dtype(s, scaling),
                choice_labels(s) if choices and s.conversion.choices is not None else None,
                s.unit or "",
                float_exact(s, scaling),
                s.name not in always,
            )
            for s in chosen
        )
        self.column_of = {s.name: i for i, s in enumerate(signals)}
        self.root: Node | None = None
        reason: str | None = "--engine cantools"
        if engine == "vector":
            try:
                self.root = self._compile(signals)
                reason = None
            except Unsupported as exc:
                reason = str(exc)
        self.output = OutputMessage(index, name, message, signals, self.root is not None, reason)

    # -- compiling

    def _compile(self, outputs: tuple[OutputSignal, ...]) -> Node:
        message = self.message
        if message.is_container:
            raise Unsupported("container message")
        if self.length < 0:
            raise Unsupported("message length is not an integer")
        codecs = message._codecs
        if codecs is None:
            raise Unsupported("no codec")
        names = [s.name for s in message.signals]
        if len(set(names)) != len(names):
            raise Unsupported("two signals share a name")
        node = self._compile_node(codecs, outputs)
        if node is None:
            return Node([], [])
        return node

    def _compile_node(
        self, codec: Mapping[str, Any], outputs: tuple[OutputSignal, ...]
    ) -> Node | None:
        """The node's plan, or None when it yields nothing selected and cannot fail."""
        signals: list[Signal] = list(codec["signals"])
        check_layout(signals, self.length)
        multiplexers: Mapping[str, Mapping[int, Mapping[str, Any]]] = codec["multiplexers"]
        plans: list[SignalPlan] = []
        muxes: list[tuple[SignalPlan, dict[int, Node | None], Callable[[int], int]]] = []
        by_name = {s.name: s for s in signals}
        output_plans: dict[str, SignalPlan] = {}
        for signal in signals:
            column = self.column_of.get(signal.name)
            if column is not None:
                output_plans[signal.name] = self._signal_plan(signal, column, outputs[column])
                plans.append(output_plans[signal.name])
        for mux_name, branches in multiplexers.items():
            mux_signal = by_name[mux_name]
            if mux_signal.conversion.is_float:
                raise Unsupported(f"float multiplexer {mux_name}")
            # An output multiplexer is decoded with the node's signals; otherwise it is
            # extracted only to pick branches.
            mux_plan = output_plans.get(mux_name) or self._signal_plan(mux_signal, None, None)
            children = {
                value: self._compile_node(child, outputs) for value, child in branches.items()
            }
            muxes.append((mux_plan, children, mux_number(mux_signal, self.scaling, self.choices)))
        if not plans and not muxes:
            return None
        return Node(plans, muxes)

    def _signal_plan(
        self, signal: Signal, column: int | None, output: OutputSignal | None
    ) -> SignalPlan:
        if signal.byte_order not in ("little_endian", "big_endian"):
            raise Unsupported(f"signal {signal.name} has byte order {signal.byte_order!r}")
        if type(signal.start) is not int or type(signal.length) is not int:
            raise Unsupported(f"signal {signal.name} has a non-integer position")
        bits = signal.length
        if not 1 <= bits <= 64:
            raise Unsupported(f"signal {signal.name} is {bits} bits long")
        is_float = bool(signal.conversion.is_float)
        if is_float and bits not in _FLOAT_BITS:
            raise Unsupported(f"float signal {signal.name} is {bits} bits long")
        conversion = conversion_of(signal)
        if type(conversion) not in (IdentityConversion, LinearConversion, LinearIntegerConversion):
            raise Unsupported(f"signal {signal.name} has a {type(conversion).__name__}")
        if type(conversion.scale) not in (int, float) or type(conversion.offset) not in (
            int,
            float,
        ):
            raise Unsupported(f"signal {signal.name} has a non-numeric scale or offset")
        if is_float and self.choices and signal.conversion.choices:
            # cantools looks float raw values up as int(raw) (NaN and inf raise).
            raise Unsupported(f"float signal {signal.name} has choices")
        big = signal.byte_order == "big_endian"
        first_bit = network_start(signal) if big else signal.start
        last_bit = first_bit + bits - 1
        first_byte = 0 if self.length <= 8 else first_bit // 8
        if last_bit // 8 - first_byte >= 8:
            raise Unsupported(f"signal {signal.name} spans more than 8 bytes")
        relative = first_bit - 8 * first_byte
        shift = 64 - relative - bits if big else relative
        dtype = output.dtype if output is not None else output_dtype(signal, self.scaling)
        keys = codes = None
        if output is not None and output.labels is not None:
            keys, codes = label_lookup(signal, output.labels, bits == 64 and not is_float)
        return SignalPlan(
            signal=signal,
            output=column,
            first_byte=first_byte,
            big=big,
            shift=np.uint64(shift),
            mask=None if bits == 64 else np.uint64((1 << bits) - 1),
            kind="f" if is_float else ("s" if signal.is_signed else "u"),
            bits=bits,
            scaler=make_scaler(signal, self.scaling, dtype),
            label_keys=keys,
            label_codes=codes,
        )

    # -- decoding

    def decode(self, frames: Frames, rows: IntArray, counts: DecodeCounts) -> MessageBatch | None:
        """Decode the frames at *rows* (ascending chunk positions) of this message."""
        length = self.length
        errors = 0
        if length > 0:
            short = frames.length[rows] < length
            errors = int(np.count_nonzero(short))
            if errors:
                rows = rows[~short]
        columns: list[Column | None]
        ok: BoolArray | None = None
        if rows.shape[0]:
            if self.root is not None:
                columns, ok = self._vector(frames.data, rows)
            else:
                columns, ok = decode_frames(
                    self.message, self.output.signals, frames, rows, self.choices, self.scaling
                )
            if ok is not None:
                errors += int(rows.shape[0] - np.count_nonzero(ok))
                rows = rows[ok]
        if errors:
            counts.decode_errors += errors
            counts.errors_by_message[self.name] = (
                counts.errors_by_message.get(self.name, 0) + errors
            )
        decoded = int(rows.shape[0])
        if decoded == 0:
            return None
        result = tuple(self._finish(i, column, ok, decoded) for i, column in enumerate(columns))
        counts.frames_decoded += decoded
        counts.samples += sum(column.count() for column in result)
        counts.by_message[self.name] = counts.by_message.get(self.name, 0) + decoded
        return MessageBatch(
            message=self.output,
            rows=rows,
            timestamp=frames.timestamp[rows],
            channel=frames.channel[rows],
            channels=frames.channels,
            columns=result,
        )

    def _finish(self, index: int, column: Column | None, ok: BoolArray | None, size: int) -> Column:
        signal = self.output.signals[index]
        if column is None:  # in no branch of any decoded frame
            return Column(
                signal,
                np.zeros(size, dtype=signal.dtype),
                np.zeros(size, dtype=np.bool_),
                None if signal.labels is None else np.full(size, -1, dtype=np.int32),
            )
        return column if ok is None else column.take(ok)

    def _vector(
        self, data: npt.NDArray[np.uint8], rows: IntArray
    ) -> tuple[list[Column | None], BoolArray | None]:
        assert self.root is not None
        size = int(rows.shape[0])
        windows = Windows(data, rows, self.length)
        state = State(size, self.output.signals)
        walk(self.root, windows, None, state)
        return state.columns(), state.ok
