"""How the log tests compare python-can messages: every field a reader sets."""

from __future__ import annotations

import can

__all__ = ["Fields", "fields"]

Fields = tuple[object, ...]


def fields(msg: can.Message) -> Fields:
    """Every field of *msg*, the timestamp exact and the channel's type too.

    ``can.Message.__eq__`` compares timestamps with a tolerance and ignores
    some flags; readers must agree on all of them.
    """
    return (
        msg.timestamp,
        msg.arbitration_id,
        msg.is_extended_id,
        msg.is_remote_frame,
        msg.is_error_frame,
        msg.channel,
        type(msg.channel),
        msg.dlc,
        bytes(msg.data),
        msg.is_fd,
        msg.is_rx,
        msg.bitrate_switch,
        msg.error_state_indicator,
    )
