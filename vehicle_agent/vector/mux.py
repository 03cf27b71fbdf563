"""Multiplexing: cantools' codec tree, walked for a message's frames all at once.

A :class:`Node` holds the signals of one codec node and its multiplexers; each
multiplexer's raw values are turned into branch numbers as cantools does
(:func:`mux_number`), and :func:`walk` decodes every branch for its subset of
frames into a :class:`State`, failing the frames whose multiplexer value has no
branch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from cantools.database.can import Signal
from cantools.database.namedsignalvalue import NamedSignalValue

from vehicle_agent.vector.layout import SignalPlan, Windows
from vehicle_agent.vector.model import (
    FRAME_ERRORS,
    AnyArray,
    BoolArray,
    Column,
    IntArray,
    OutputSignal,
)

__all__ = ["Node", "State", "mux_number", "walk"]


@dataclass(slots=True)
class Node:
    """One codec node of cantools' multiplexing tree, reduced to what is needed."""

    signals: list[SignalPlan]
    # (multiplexer plan, branch node by multiplexer value, value-to-number function)
    muxes: list[tuple[SignalPlan, dict[int, Node | None], Callable[[int], int]]]


def mux_number(signal: Signal, scaling: bool, choices: bool) -> Callable[[int], int]:
    """The branch number cantools derives from one raw multiplexer value.

    Mirrors ``decode_data`` (scaling, choices) then ``Message._get_mux_number``
    (a choice goes back to a number through its label).
    """
    conversion = signal.conversion

    def number(raw: int) -> int:
        value: object
        if scaling:
            value = conversion.raw_to_scaled(raw, choices)
        elif choices and conversion.choices and raw in conversion.choices:
            value = conversion.choices[raw]
        else:
            value = raw
        if isinstance(value, str | NamedSignalValue):
            return int(conversion.choice_to_number(str(value)))
        return int(value)

    return number


def walk(node: Node, windows: Windows, subset: IntArray | None, state: State) -> None:
    """Decode *node* for the frames at *subset* (None: all of them) into *state*.

    Its signals first, then each multiplexer's branches, each for its own frames.
    """
    for plan in node.signals:
        raw = plan.raw(windows, subset)
        assert plan.output is not None
        state.put(plan.output, subset, plan.scaler(raw), plan.labels(raw))
    for mux, branches, number in node.muxes:
        raw = mux.raw(windows, subset)
        # The branch of each distinct multiplexer value, computed as cantools does;
        # a value without a branch (or that cantools cannot turn into a number)
        # fails its frames.
        distinct, inverse = np.unique(raw, return_inverse=True)
        keys = list(branches)
        slots: list[int] = []
        for value in distinct.tolist():
            try:
                branch = number(value)
            except FRAME_ERRORS:
                branch = None
            slots.append(keys.index(branch) if branch in branches else -1)
        slot = np.array(slots, dtype=np.int64)
        per_row = slot[inverse.reshape(-1)]
        rows_here = subset if subset is not None else np.arange(state.size)
        bad = per_row < 0
        if bad.any():
            state.fail(rows_here[bad])
        for position, branch in enumerate(keys):
            child = branches[branch]
            if child is None:
                continue
            chosen = rows_here[per_row == position]
            if chosen.shape[0]:
                walk(child, windows, chosen, state)


class State:
    """The columns of one message's frames while its codec tree is walked."""

    __slots__ = ("_columns", "_signals", "ok", "size")

    def __init__(self, size: int, signals: tuple[OutputSignal, ...]) -> None:
        self.size = size
        self._signals = signals
        self._columns: list[list[Any] | None] = [None] * len(signals)
        self.ok: BoolArray | None = None

    def put(
        self,
        index: int,
        subset: IntArray | None,
        values: AnyArray,
        codes: npt.NDArray[np.int32] | None,
    ) -> None:
        if subset is None:
            self._columns[index] = [values, None, codes]
            return
        current = self._columns[index]
        signal = self._signals[index]
        if current is None:
            current = [
                np.zeros(self.size, dtype=signal.dtype),
                np.zeros(self.size, dtype=np.bool_),
                None if codes is None else np.full(self.size, -1, dtype=np.int32),
            ]
            self._columns[index] = current
        current[0][subset] = values
        current[1][subset] = True
        if codes is not None:
            current[2][subset] = codes

    def fail(self, rows: IntArray) -> None:
        if self.ok is None:
            self.ok = np.ones(self.size, dtype=np.bool_)
        self.ok[rows] = False

    def columns(self) -> list[Column | None]:
        out: list[Column | None] = []
        for signal, current in zip(self._signals, self._columns, strict=True):
            if current is None:
                out.append(None)
                continue
            values, valid, codes = current
            if valid is not None and valid.all():
                valid = None
            out.append(Column(signal, values, valid, codes))
        return out
