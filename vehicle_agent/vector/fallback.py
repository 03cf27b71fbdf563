"""Frame-by-frame decoding by cantools: the reference, and the fallback of vectorising.

:func:`decode_frames` gives the same columns as the vectorised path by calling
cantools' ``Message.decode`` for each frame; it serves ``--engine cantools`` and
every message whose layout cannot be vectorised exactly.
"""

from __future__ import annotations

import numpy as np
from cantools.database.can import Message
from cantools.database.namedsignalvalue import NamedSignalValue

from vehicle_agent.vector.model import (
    FRAME_ERRORS,
    BoolArray,
    Column,
    Frames,
    IntArray,
    OutputSignal,
)
from vehicle_agent.vector.values import conversion_of

__all__ = ["decode_frames"]


def decode_frames(
    message: Message,
    outputs: tuple[OutputSignal, ...],
    frames: Frames,
    rows: IntArray,
    choices: bool,
    scaling: bool,
) -> tuple[list[Column | None], BoolArray | None]:
    """cantools' ``Message.decode`` frame by frame (the reference, and the fallback)."""
    size = int(rows.shape[0])
    lengths = frames.length[rows].tolist()
    width = int(frames.data.shape[1]) if frames.data.ndim == 2 else 0
    buffer = np.ascontiguousarray(frames.data[rows]).tobytes()
    values: list[list[object]] = [[0] * size for _ in outputs]
    present = [np.zeros(size, dtype=np.bool_) for _ in outputs]
    labels: list[list[int] | None] = [
        [-1] * size if s.labels is not None else None for s in outputs
    ]
    label_index = [
        {text: i for i, text in enumerate(s.labels)} if s.labels is not None else {}
        for s in outputs
    ]
    ok = np.ones(size, dtype=np.bool_)
    names = [s.name for s in outputs]
    for row, frame_length in enumerate(lengths):
        payload = buffer[row * width : row * width + frame_length]
        decoded = _cantools_decode(message, payload, choices, scaling)
        if decoded is None:
            ok[row] = False
            continue
        numbers, texts = decoded
        for i, name in enumerate(names):
            if name not in numbers:
                continue
            values[i][row] = numbers[name]
            present[i][row] = True
            text = texts.get(name)
            found = labels[i]
            if found is not None and text is not None:
                found[row] = label_index[i][text]
    columns: list[Column | None] = []
    for i, signal in enumerate(outputs):
        found = labels[i]
        columns.append(
            Column(
                signal,
                np.array(values[i], dtype=signal.dtype),
                None if present[i].all() else present[i],
                None if found is None else np.array(found, dtype=np.int32),
            )
        )
    return columns, None if ok.all() else ok


def _cantools_decode(
    message: Message, payload: bytes, choices: bool, scaling: bool
) -> tuple[dict[str, object], dict[str, str]] | None:
    """(numeric values, labels) of one frame as cantools decodes it; None if it fails.

    With choices the frame decodes as ``decode_choices=True`` does (which picks
    multiplexer branches through labels); the numeric value of a signal is the one
    ``decode_choices=False`` gives, or, where that decode differs, its conversion
    of the choice's raw value.
    """
    try:
        plain = message.decode(payload, decode_choices=False, scaling=scaling)
    except FRAME_ERRORS:
        plain = None
    if not choices:
        return None if plain is None else (dict(plain), {})  # type: ignore[arg-type]
    try:
        named = message.decode(payload, decode_choices=True, scaling=scaling)
    except FRAME_ERRORS:
        return None
    numbers: dict[str, object] = {}
    texts: dict[str, str] = {}
    for name, value in named.items():  # type: ignore[union-attr]
        if isinstance(value, NamedSignalValue | str):
            texts[name] = str(value)
            if plain is not None and name in plain:
                numbers[name] = plain[name]  # type: ignore[index]
            else:
                raw = value.value if isinstance(value, NamedSignalValue) else value
                conversion = conversion_of(message.get_signal_by_name(name))
                numbers[name] = conversion.raw_to_scaled(raw, False) if scaling else raw
        else:
            numbers[name] = value
    return numbers, texts
