"""The data of vectorised decoding: what goes in, what comes out, what was counted.

The frame columns a decoder reads (:class:`Frames`, with the flag bits of
:mod:`vehicle_agent.logs.columns`), the databases it applies (:class:`DbcSource`),
the messages and signals it outputs (:class:`OutputMessage`,
:class:`OutputSignal`), the decoded values (:class:`MessageBatch` of
:class:`Column`) and its counters (:class:`DecodeCounts`). Re-exported by
:mod:`vehicle_agent.vector`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from cantools.database.can import Database, Message
from cantools.database.errors import DecodeError, EncodeError

__all__ = [
    "ERROR",
    "EXTENDED",
    "FRAME_ERRORS",
    "REMOTE",
    "AnyArray",
    "BoolArray",
    "Column",
    "DbcSource",
    "DecodeCounts",
    "Engine",
    "Frames",
    "IntArray",
    "MessageBatch",
    "OutputMessage",
    "OutputSignal",
]


#: Flag bits of the frame columns; the same values as :mod:`vehicle_agent.logs.columns`
#: (kept here so that this module needs no log reader; a test checks they agree).
EXTENDED = 0x01
REMOTE = 0x02
ERROR = 0x04

#: What cantools raises for one frame's payload: a wrong length, an unknown
#: multiplexer value, a failed unpack (DecodeError); a choice or multiplexer value
#: that cannot become an int (ValueError, OverflowError, or EncodeError/KeyError
#: from a multiplexer label). The frame counts as a decode error.
FRAME_ERRORS: tuple[type[Exception], ...] = (
    DecodeError,
    EncodeError,
    KeyError,
    ValueError,
    OverflowError,
)

Engine = Literal["vector", "cantools"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
AnyArray = npt.NDArray[Any]


class Frames(Protocol):
    """The columns of a chunk of frames (what :class:`~vehicle_agent.logs.FrameColumns` has)."""

    @property
    def timestamp(self) -> npt.NDArray[np.float64]: ...
    @property
    def arbitration_id(self) -> npt.NDArray[np.uint32]: ...
    @property
    def flags(self) -> npt.NDArray[np.uint8]: ...
    @property
    def length(self) -> npt.NDArray[np.uint8]: ...
    @property
    def data(self) -> npt.NDArray[np.uint8]: ...
    @property
    def channel(self) -> npt.NDArray[np.int32]: ...
    @property
    def channels(self) -> Sequence[object]: ...


@dataclass(frozen=True, slots=True)
class DbcSource:
    """One database applied to the frames of a log.

    ``channel`` limits it to the frames whose channel, as text, equals it (None:
    every frame); ``j1939`` matches extended frames by parameter group number.
    """

    database: Database
    name: str
    j1939: bool = False
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class OutputSignal:
    """One output column: a signal's name, the numpy dtype of its values, its labels.

    ``dtype`` is int64, uint64 or float64, or object for integers no fixed-width
    type holds (a 64-bit raw value times a large integer scale). ``labels`` (only
    when decoding choices) are the texts of the signal's choices; a batch gives
    indices into them.
    """

    name: str
    dtype: np.dtype[Any]
    labels: tuple[str, ...] | None
    unit: str = ""
    #: Whether float64 holds every value exactly (floats, integers within 2**53).
    float_exact: bool = True
    #: Whether some decoded frames may lack the signal (a multiplexed signal, or a
    #: signal of a container message); False promises a value in every frame.
    optional: bool = True


@dataclass(frozen=True, slots=True)
class OutputMessage:
    """A decoded message: its unique display name and its output signals, in DBC order."""

    index: int
    name: str
    message: Message
    signals: tuple[OutputSignal, ...]
    vectorised: bool
    #: Why the message is decoded frame by frame by cantools (None when vectorised).
    fallback_reason: str | None


@dataclass(frozen=True, slots=True)
class Column:
    """One signal's values for the frames of a batch.

    ``valid`` is None when every frame has the signal (a multiplexed signal is only
    in the frames of its branch); ``label_codes`` index :attr:`OutputSignal.labels`,
    -1 where the value has no choice.
    """

    signal: OutputSignal
    values: AnyArray
    valid: BoolArray | None
    label_codes: npt.NDArray[np.int32] | None

    def take(self, keep: BoolArray) -> Column:
        return Column(
            self.signal,
            self.values[keep],
            None if self.valid is None else self.valid[keep],
            None if self.label_codes is None else self.label_codes[keep],
        )

    def count(self) -> int:
        return int(self.values.shape[0]) if self.valid is None else int(self.valid.sum())


@dataclass(frozen=True, slots=True)
class MessageBatch:
    """The decoded frames of one message in one chunk, in log order.

    ``rows`` are the frames' positions in the chunk; ``channel`` indexes
    ``channels``, the chunk's channels as the log reader gives them.
    """

    message: OutputMessage
    rows: IntArray
    timestamp: npt.NDArray[np.float64]
    channel: npt.NDArray[np.int32]
    channels: Sequence[object]
    columns: tuple[Column, ...]

    def __len__(self) -> int:
        return int(self.rows.shape[0])


@dataclass(slots=True)
class DecodeCounts:
    """What happened to the frames given to a decoder; each frame counts once.

    ``frames == skipped + unknown_ids + not_selected + decode_errors + frames_decoded``.
    """

    frames: int = 0
    frames_decoded: int = 0
    samples: int = 0
    skipped: int = 0  # remote and error frames
    unknown_ids: int = 0
    not_selected: int = 0
    decode_errors: int = 0
    by_message: dict[str, int] = field(default_factory=dict)
    errors_by_message: dict[str, int] = field(default_factory=dict)
