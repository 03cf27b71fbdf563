"""The fast TRC reader yields exactly python-can's frames, for every file version;
and the bulk path of each text reader reads the usual lines (not the line parser).

Same checks as ``test_text_readers`` (whose helpers this module uses): field by
field against python-can's reader, in chunks of 7.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import can
import pytest

from tests.vehicle_agent.logs.messages import Fields, fields
from tests.vehicle_agent.logs.test_text_readers import (
    CHUNK,
    LOG_DIR,
    fast,
    fast_until_error,
    python_can,
    python_can_until_error,
    sample_messages,
    write_log,
    write_text,
)
from vehicle_agent.logs import asc, candump, trc
from vehicle_agent.logs.fields import Tokens
from vehicle_agent.logs.generic import read_messages


@pytest.mark.parametrize("path", sorted(LOG_DIR.glob("*.trc")), ids=lambda p: p.name)
def test_trc_bundled_logs(path: Path) -> None:
    expected = python_can(path)
    assert expected
    assert fast(trc, path) == expected


@pytest.mark.parametrize("name", ["frames.trc", "frames.trc.gz"])
def test_trc_written_by_python_can(tmp_path: Path, name: str) -> None:
    path = write_log(tmp_path / name, sample_messages())
    expected = python_can(path)
    assert len(expected) == 84  # python-can writes no FD, remote or error frames
    assert fast(trc, path) == expected
    assert fast(trc, path, 1000) == expected


def test_trc_many_frames_cross_blocks(tmp_path: Path) -> None:
    path = write_log(tmp_path / "many.trc", sample_messages(9000, fd=False, special=False))
    assert fast(trc, path, 1000) == python_can(path)


V21 = ";$FILEVERSION=2.1\n;$STARTTIME=44548.6028595139\n;$COLUMNS=N,O,T,B,I,d,R,L,D\n;\n"
V21_LINES = """\
      1     17535.400 DT 1  00000100 Tx -  8    00 01 02 03 04 05 06 07
      2     17540.300 ST 1         - Rx -  4    00 00 00 08
      3     17700.300 DT 2      0000 Rx -  0
      4     17700.310 DT 2      07Ff Rx -  2    AA bb
      5     17700.320 FD 3  1FFFFFFF Rx -  9    00 01 02 03 04 05 06 07 08 09 0A 0B
      6     17700.330 FB 3       123 Tx - 15    00 01 02 03 04 05 06 07 08 09 0A 0B
      7     17700.340 FE 1       123 Tx -  8    00 01 02 03 04 05 06 07
      8     17700.350 BI 1       123 Tx -  8    00 01 02 03 04 05 06 07
      9     48937.600 RR 1      0704 Rx -  1
     10     48937.700 RR 1      0704 Rx -  1    12 34
; a comment in the middle
     11     48937.800 DT 1      0705 Rx -  2    12  34

     12        48937.9 DT 1      0706 Rx -  2    1234
     13     48938.000 DT 1      0707 Rx -  2
     14     48938.100 DT 1      0708 Rx -  0    zz
     15     48938.200 DT 01     0709 Rx -  3    01 02
     16     48938.300 DT 1    123456 rx -  1    01 99 77
     17         12345 DT 1      0709 Rx -  1    01\t
     18      1234.500 DT 1      070A Tx -
     19     48938.400 EV 1
     20     48938.500 ER 1      0709 Rx -  1    01
;21          48938.600 DT 1      0709 Rx -  1    01
 22\x8522.5    48938.700 DT 1      0709 Rx -  1    01
     23     48938.800 DT 1000000001 0709 Rx -  1    01
     24     48938.900 DT 1      0709 xRx -  1    01
     25          .950 DT 1      0709 Rx -  1    01
"""


def test_trc_v2_1_lines(tmp_path: Path) -> None:
    path = write_text(tmp_path / "v21.trc", V21 + V21_LINES)
    expected = python_can(path)
    assert len(expected) == 18
    assert fast(trc, path) == expected
    assert fast(trc, path, 1) == expected


@pytest.mark.parametrize(
    ("header", "lines"),
    [
        (
            ";$FILEVERSION=2.0\n;$STARTTIME=44548.6\n;$COLUMNS=N,O,T,I,d,l,D\n",
            "1 17535.400 DT 00000100 Tx 8 00 01 02 03 04 05 06 07\n"
            "2 17540.300 ST Rx 00 00 00 08\n"
            "3 17541.300 FD 00000100 Rx 12 00 01 02 03 04 05 06 07 08 09 0A 0B\n"
            "4 17541.400 FD 00000100 Rx 64 00\n"
            "5 48937.600 RR 0704 Rx 1\n",
        ),
        (
            ";$FILEVERSION=2.1\n;$COLUMNS=N,O,T,B,I,d,R,L,l,D\n",
            "1 1.5 DT 1 100 Tx - 9 12 00 01 02\n2 1.6 DT 1 100 Tx - 3 0 00\n",
        ),
        (
            ";$FILEVERSION=2.1\n;$STARTTIME=44548.6\n;$COLUMNS=O,T,D,I,d,L\n",
            "1.5 DT 0102 100 Rx 2\n",
        ),
        (
            ";$FILEVERSION=1.1\n;$STARTTIME=44548.6028595139\n",
            "     1)     17535.4  Tx     00000100  8  00 00 00 00 00 00 00 00 \n"
            "     2)     17540.3  Warng  FFFFFFFF  4  00 00 00 08  BUSHEAVY \n"
            "     3)     17540.4  Rx         0704  1  RTR\n"
            "     4)     17540.5  Rx         0704  0  RTR\n"
            "     5)     17540.6  Rx         0704  2  01 02 03 RTR\n"
            "     6)     17540.7  Rx         0704  2  01\n"
            "     7)     17540.8  Rx         0704  2  1 2\n",
        ),
        (
            ";$FILEVERSION=1.3\n;$STARTTIME=44548.6028595139\n",
            "     1)     17535.400 1  Tx    00000100 -  8    00 00 00 00 00 00 00 00\n"
            "     2)     17540.300 1  Warng FFFFFFFF -  4    00 00 00 08 BUSHEAVY\n"
            "     3)     17700.300 2  Rx        0000 -  3    01 02 03 04\n"
            "    12)     48937.600 1  Rx        0704 -  1    RTR\n",
        ),
        (
            ";   Start time: 18.12.2021 14:28:07.062\n",
            "     1)     17535  00000100  8  00 00 00 00 00 00 00 00\n"
            "     2)     17540  FFFFFFFF  4  00 00 00 08 -- -- -- -- BUSHEAVY\n"
            "     3)     17541  ffffffff  1  01\n"
            "     4)     17542      0704  1  RTR\n",
        ),
        (";$FILEVERSION=1.1\n;$COLUMNS=N,O,d,I,L,X,Y\n", "1) 1.5 Rx 100 2 01 02\n"),
        (";$FILEVERSION=2.1\n;$COLUMNS=N,O,T,B,I,d,R,L,D\n", ""),
        ("", ""),
        ("", "\n"),
    ],
    ids=[
        "v2.0",
        "l-and-L",
        "data-not-last",
        "v1.1",
        "v1.3",
        "v1.0",
        "v1-columns",
        "no-lines",
        "empty",
        "blank",
    ],
)
def test_trc_versions(tmp_path: Path, header: str, lines: str) -> None:
    path = write_text(tmp_path / "version.trc", header + lines)
    assert fast(trc, path) == python_can(path)


def test_trc_first_line_after_the_header_is_parsed_even_blank(tmp_path: Path) -> None:
    body = "\n      1     1.500 DT 1  0100 Tx -  1    01\n"
    path = write_text(tmp_path / "first.trc", V21 + body)
    assert fast(trc, path) == python_can(path)
    assert len(python_can(path)) == 1


def test_trc_random_v2_lines(tmp_path: Path) -> None:
    """Lines of every kind, shuffled: the handled ones and the others keep file order."""
    rng = random.Random(7)
    kinds = V21_LINES.splitlines()[:10] + V21_LINES.splitlines()[11:17]
    lines = [rng.choice(kinds) for _ in range(3000)]
    path = write_text(tmp_path / "random.trc", V21 + "\n".join(lines) + "\n")
    assert fast(trc, path, 100) == python_can(path)


def test_trc_frame_the_columns_cannot_hold_raises(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "wide.trc", V21 + "1 1.500 DT 1 0100 Tx - 1 01\n2 1.6 DT 1 100000000 Tx - 1 01\n"
    )
    assert [f[1] for f in python_can(path)] == [0x100, 0x1_0000_0000]
    got, error = fast_until_error(trc, path)
    assert [f[1] for f in got] == [0x100]
    assert error.position == "line 6"


def test_decimal_tokens_are_floats_bit_for_bit() -> None:
    rng = random.Random(3)
    for width in range(1, 21):
        for point in range(width):
            texts = [
                "".join(rng.choice("0123456789") for _ in range(width - point))
                + ("." + "".join(rng.choice("0123456789") for _ in range(point)) if point else "")
                for _ in range(200)
            ]
            texts.append("9" * (width - point) + ("." + "9" * point if point else ""))
            tokens = Tokens("\n".join(texts))
            values, ok = tokens.decimal(tokens.field(0))
            assert ok.all() or width > 15  # beyond 2**53 only some are taken
            exact = [float(text) for text, good in zip(texts, ok.tolist(), strict=True) if good]
            assert values[ok].tolist() == exact


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            V21
            + "      1     1.500 DT 1  0100 Tx -  1    01\n      2     x.5 DT 1 0100 Tx - 1 01\n",
            6,
        ),
        (V21 + "      1     1.500 DT 1  0100 Tx -  1    0G\n", 5),
        (V21 + "      1     1.500 DT x  0100 Tx -  1    01\n", 5),
        (";$FILEVERSION=2.1\n;$STARTTIME=soon\n", 2),
        (";$FILEVERSION=2.0\n      1     1.500 DT 1  0100 Tx -  1    01\n", 2),
        (";$FILEVERSION=2.1\n;$COLUMNS=N,O,I,d,L,D\n1 1.5 100 Rx 1 01\n", 3),
        (";$FILEVERSION=2.1\n;$COLUMNS=N,O,T,I,d,D\n1 1.5 DT 100 Rx 01\n", 3),
        (";   only a comment\n", 1),
        (";$FILEVERSION=1.1\n;$COLUMNS=N,O,d,I,L\n1) 1.5 Rx 100 2 01 02\n", 3),
        ("     1)     17535  00000100  8  00 00 00 00 00 00 00 00\n     2)  17540  1  1  100\n", 2),
    ],
)
def test_trc_lines_python_can_rejects_raise_at_their_line(
    tmp_path: Path, text: str, line: int
) -> None:
    path = write_text(tmp_path / "bad.trc", text)
    got, error = fast_until_error(trc, path)
    assert got == python_can_until_error(path)
    assert error.path == path
    assert error.position == f"line {line}"


@pytest.mark.parametrize(
    ("reader", "suffix", "by_line_parser"),
    [(candump, ".log", 0), (asc, ".asc", 24), (trc, ".trc", 0)],
    ids=["candump", "asc", "trc"],
)
def test_bulk_path_reads_what_python_can_writes(
    tmp_path: Path,
    line_parser_frames: list[int],
    reader: ModuleType,
    suffix: str,
    by_line_parser: int,
) -> None:
    """Only the rare lines (ASC's error and remote frames here) take the line parser."""
    path = write_log(tmp_path / f"frames{suffix}", sample_messages())
    assert fast(reader, path) == python_can(path)
    assert sum(line_parser_frames) == by_line_parser


USUAL_CANDUMP = (
    "(1.5) can0 123#11\n(1.6) vcan1 1ABCDEF0##3AABB R\n(1.7) 2 7FF#r5 T\n(1.8) can0 20000080#00\n"
)
USUAL_ASC = (
    "internal events logged\n 1.5 1  123  Rx   d 2 01 02  Length = 1\n"
    " 1.6 2  1ABCDEFX  Tx   d F 01 02 03 04 05 06 07 08\n"
    " 1.7 CANFD   1 Rx  300  Some_Name  1 0 8  8 01 02 03 04 05 06 07 08  99 1\n"
    " 1.8 CANFD   2 Tx  301x  0 1 5 0 14000\n"
)
# The first line after a TRC header goes through the line parser (like python-can's).
USUAL_TRC = (
    V21 + " 1 1.500 DT 1 0100 Tx - 1 01\n 2 1.600 FB 2 01FF Rx - 9 01 02\n 3 1.700 RR 1 1 Rx - 3\n"
)


@pytest.mark.parametrize(
    ("reader", "name", "lines"),
    [
        (candump, "usual.log", USUAL_CANDUMP),
        (asc, "usual.asc", USUAL_ASC),
        (trc, "usual.trc", USUAL_TRC),
    ],
    ids=["candump", "asc", "trc"],
)
def test_bulk_path_reads_the_usual_lines(
    tmp_path: Path, line_parser_frames: list[int], reader: ModuleType, name: str, lines: str
) -> None:
    path = write_text(tmp_path / name, lines)
    expected = python_can(path)
    assert len(expected) == 4 - (reader is trc)
    assert fast(reader, path) == expected
    assert sum(line_parser_frames) == 0


def _outcome(messages: Iterator[can.Message]) -> tuple[list[Fields], str | None]:
    """The frames until the reader raises, and what it raised (None: nothing)."""
    got: list[Fields] = []
    try:
        for msg in messages:
            got.append(fields(msg))
    except Exception as exc:  # python-can lets some of its own errors out untranslated
        return got, str(exc)
    return got, None


@pytest.mark.parametrize(("reader", "suffix"), [(candump, ".log"), (asc, ".asc"), (trc, ".trc")])
def test_mangled_lines_read_as_python_can_reads_them(
    tmp_path: Path, reader: ModuleType, suffix: str
) -> None:
    """Characters dropped, added or changed here and there: the same frames, the same failures."""
    rng = random.Random(5)
    base = write_log(tmp_path / f"base{suffix}", sample_messages(40)).read_text().splitlines()
    noise = " \t0123456789ABCDEFabcdefxXRrTt#().;-:\x00\x85é"
    for attempt in range(40):
        lines = list(base)
        for _ in range(3):
            row = rng.randrange(len(lines))
            at = rng.randrange(len(lines[row]) + 1)
            cut = at + rng.randrange(2)
            lines[row] = lines[row][:at] + rng.choice(noise) + lines[row][cut:]
        path = write_text(tmp_path / f"mangled{attempt}{suffix}", "\n".join(lines) + "\n")
        chunks = reader.read(path, CHUNK)
        got, failure = _outcome(msg for chunk in chunks for msg in chunk.messages())
        expected, expected_failure = _outcome(read_messages(path))
        if failure and "does not fit the columns" in failure:
            continue  # an id beyond 32 bits: python-can keeps it, the columns cannot
        assert (got, failure is None) == (expected, expected_failure is None), path.read_text()
