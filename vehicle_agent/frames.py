"""The CAN frame as the agent's core sees it.

Sources translate ``can.Message`` (python-can) into :class:`Frame` at the edge, so
decoding, batching and the collection policy never import python-can.
"""

from __future__ import annotations

from typing import NamedTuple


class Frame(NamedTuple):
    """One CAN or CAN FD frame with the timestamp it was received with.

    ``timestamp`` is seconds since the Unix epoch as the interface or log file gave
    it (hardware timestamp where the interface has one); it is carried unchanged
    to the cloud. ``channel`` is the channel the frame arrived on, as text (``"1"``,
    ``"can0"``), or ``None`` when the source does not say; sources that know the
    logical bus put its name there. ``bitrate_switch`` and ``error_state_indicator``
    are the CAN FD BRS and ESI bits (always False for classic CAN frames).

    A named tuple rather than a frozen dataclass because the agent builds one per
    frame: it is as immutable and ~5x cheaper to build (0.3 vs 1.3 µs here).
    """

    timestamp: float
    arbitration_id: int
    data: bytes
    is_extended: bool = False
    is_fd: bool = False
    is_remote: bool = False
    is_error: bool = False
    channel: str | None = None
    bitrate_switch: bool = False
    error_state_indicator: bool = False
