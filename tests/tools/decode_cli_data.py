"""A small BLF log and its DBC for the ``telehub decode`` command tests.

300 frames over 3 s on channels 1 and 2: a plain message (with choices), a
multiplexed one (a third of its frames carry a multiplexer value without a
branch), an extended-id one, an unknown id, short frames (decode errors) and
remote frames.
"""

from __future__ import annotations

from pathlib import Path

import can
import pytest

from tools.decode_cmd import main

DBC = """VERSION ""
BS_:
BU_: X
BO_ 256 Drive: 8 X
 SG_ Speed : 0|16@1+ (0.01,0) [0|655.35] "km/h" X
 SG_ Gear : 16|4@1+ (1,0) [0|15] "" X
 SG_ Torque : 24|16@1- (1,0) [0|0] "Nm" X
 SG_ Odometer : 40|24@1+ (1,0) [0|0] "km" X
BO_ 512 Muxed: 4 X
 SG_ Mux M : 0|8@1+ (1,0) [0|0] "" X
 SG_ Temp m0 : 8|8@1- (1,-40) [0|0] "degC" X
 SG_ Volt m1 : 8|16@1+ (0.001,0) [0|0] "V" X
BO_ 2164195329 Ext: 2 X
 SG_ Counter : 0|8@1+ (1,0) [0|0] "" X
VAL_ 256 Gear 0 "P" 1 "R" 2 "N" 3 "D" ;
"""


def write_files(folder: Path) -> dict[str, Path]:
    """Write the log and the DBC into *folder*."""
    dbc = folder / "test.dbc"
    dbc.write_text(DBC)
    messages: list[can.Message] = []
    for i in range(300):
        t = 1_000.0 + i * 0.01
        channel = 1 + i % 2
        kind = i % 6
        if kind in (0, 1):
            data = bytes(
                [i % 256, (i * 7) % 256, i % 5, (i * 3) % 256, 0xFF - i % 256, i % 7, 1, 2]
            )
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x100,
                    data=data,
                    channel=channel,
                    is_extended_id=False,
                )
            )
        elif kind == 2:
            data = bytes([(i // 6) % 3, i % 256, (i * 5) % 256, 0])  # mux 2: no branch
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x200,
                    data=data,
                    channel=channel,
                    is_extended_id=False,
                )
            )
        elif kind == 3:
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x00FF0001,
                    is_extended_id=True,
                    data=bytes([i % 256, 0]),
                    channel=channel,
                )
            )
        elif kind == 4:
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x7FF,
                    data=b"\x01",
                    channel=channel,
                    is_extended_id=False,
                )
            )
        elif i % 4 == 1:  # a short Drive frame: a decode error
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x100,
                    data=b"\x01\x02",
                    channel=channel,
                    is_extended_id=False,
                )
            )
        else:
            messages.append(
                can.Message(
                    timestamp=t,
                    arbitration_id=0x100,
                    is_remote_frame=True,
                    channel=channel,
                    is_extended_id=False,
                )
            )
    log = folder / "drive.blf"
    with can.Logger(str(log)) as writer:
        for msg in messages:
            writer.on_message_received(msg)
    return {"log": log, "dbc": dbc, "folder": folder}


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err
