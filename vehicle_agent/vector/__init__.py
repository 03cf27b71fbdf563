"""Vectorised exact decoding of CAN frames: chunks of frame columns to columns of values.

The engine behind ``telehub decode`` and the agent's log replays. Every value
equals, in value and type, what cantools' ``Message.decode`` gives for the same
frame; see :mod:`vehicle_agent.vector.decoder` for how.

Pure compute modules: numpy and cantools, no I/O, no bus or transport library.
"""

from vehicle_agent.vector.decoder import (
    ERROR,
    EXTENDED,
    FRAME_ERRORS,
    REMOTE,
    Column,
    DbcSource,
    DecodeCounts,
    Engine,
    Frames,
    MessageBatch,
    OutputMessage,
    OutputSignal,
    VectorDecoder,
    message_names,
)

__all__ = [
    "ERROR",
    "EXTENDED",
    "FRAME_ERRORS",
    "REMOTE",
    "Column",
    "DbcSource",
    "DecodeCounts",
    "Engine",
    "Frames",
    "MessageBatch",
    "OutputMessage",
    "OutputSignal",
    "VectorDecoder",
    "message_names",
]
