"""Columns of frames: packing python-can messages and turning them back into frames or messages."""

from __future__ import annotations

import itertools

import can
import numpy as np
import pytest

from tests.vehicle_agent.logs.messages import fields
from vehicle_agent.logs.columns import FrameColumns, columns_from_messages
from vehicle_agent.sources import to_frame


def _messages() -> list[can.Message]:
    out = []
    for n, (channel, kind) in enumerate(itertools.product((0, 1, "can2", None), range(6))):
        t = 1_600_000_000.123456 + n / 7
        if kind == 0:
            msg = can.Message(timestamp=t, arbitration_id=0x123, data=bytes(range(n % 9)))
        elif kind == 1:
            msg = can.Message(
                timestamp=t, arbitration_id=0x1CEBFF00, is_extended_id=True, data=b"\xff" * 8
            )
        elif kind == 2:
            msg = can.Message(timestamp=t, arbitration_id=0x7FF, is_remote_frame=True, dlc=5)
        elif kind == 3:
            msg = can.Message(timestamp=t, is_error_frame=True, arbitration_id=0, dlc=0)
        elif kind == 4:
            msg = can.Message(
                timestamp=t,
                arbitration_id=0x10,
                is_fd=True,
                bitrate_switch=True,
                error_state_indicator=True,
                data=bytes(range(64)),
            )
        else:
            msg = can.Message(
                timestamp=t, arbitration_id=0x10, is_fd=True, data=b"\x01" * 12, is_rx=False
            )
        msg.channel = channel
        out.append(msg)
    return out


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_columns_give_back_the_messages_and_the_frames(chunk: int) -> None:
    messages = _messages()
    chunks = list(columns_from_messages(messages, chunk))
    assert [c.first_position for c in chunks] == list(range(0, len(messages), chunk))
    assert all(isinstance(c, FrameColumns) for c in chunks)
    back = [m for c in chunks for m in c.messages()]
    assert [fields(m) for m in back] == [fields(m) for m in messages]
    frames = [f for c in chunks for f in c.frames()]
    assert frames == [to_frame(m) for m in messages]


def test_frames_rename_channels_as_text_and_keep_the_others() -> None:
    messages = _messages()
    (chunk,) = columns_from_messages(messages, 1000)
    names = {"0": "powertrain", "can2": "body"}
    frames = chunk.frames(names)
    expected = [
        to_frame(m, None if m.channel is None else names.get(str(m.channel))) for m in messages
    ]
    assert frames == expected
    assert {f.channel for f in frames} == {"powertrain", "1", "body", None}


def test_a_chunk_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="chunk_frames"):
        list(columns_from_messages(_messages(), 0))


def test_frames_of_some_rows_are_those_rows_of_all_frames() -> None:
    (chunk,) = list(columns_from_messages(_messages()))
    names = {"0": "powertrain"}
    rows = np.array([0, 2, len(chunk) - 1], dtype=np.intp)
    every = chunk.frames(names)
    assert chunk.frames(names, rows=rows) == [every[r] for r in rows.tolist()]
