"""Precompiled exact decoders for simple DBC messages.

:func:`compile_message` turns a cantools message into a function that returns
exactly what ``message.decode(data, decode_choices=False, scaling=True)`` returns:
the same keys in the same order, the same values of the same types, and a
:class:`~cantools.database.errors.DecodeError` for a payload shorter than the
message (a longer one is cut to the message length, as cantools does).

Per frame the function reads the payload once as an integer
(``int.from_bytes``, little and/or big endian) and extracts each signal with a
shift and a mask, sign-extends it, reinterprets IEEE floats with :mod:`struct`,
then applies the conversion's own scale and offset objects with the expression
cantools uses (``raw * scale + offset``), so rounding and types are identical.

Only layouts cantools decodes with a consistent bit layout are compiled: no
multiplexing, no containers, at most 8 bytes, every signal inside the message,
no overlapping signals of one byte order, float signals of 32 or 64 bits, and
the conversions cantools' factory creates. Anything else gives ``None``: the
caller keeps cantools.

Pure module: cantools only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from cantools.database.can import Message, Signal
from cantools.database.conversion import (
    IdentityConversion,
    LinearConversion,
    LinearIntegerConversion,
    NamedSignalConversion,
)
from cantools.database.errors import DecodeError

__all__ = ["DecodeFunction", "compile_message"]

#: A compiled decoder: payload bytes to {signal name: physical value}.
DecodeFunction = Callable[[bytes], dict[str, int | float]]

_MAX_LENGTH = 8
_FLOAT_STRUCTS = {32: struct.Struct(">f").unpack, 64: struct.Struct(">d").unpack}


def _network_start(signal: Signal) -> int:
    """Bit position of a big-endian signal's first bit, counted from the payload's MSB."""
    start: int = signal.start
    return 8 * (start // 8) + (7 - start % 8)


def _linear(conversion: object) -> tuple[Any, Any] | None:
    """(scale, offset) applied as ``raw * scale + offset``; ((), ()) for identity.

    None for a conversion this module does not reproduce exactly.
    """
    if type(conversion) is NamedSignalConversion:
        # decode_choices=False: cantools delegates to the inner numeric conversion.
        return _linear(conversion._conversion)
    if type(conversion) is IdentityConversion:
        return ((), ())
    if type(conversion) is LinearIntegerConversion or type(conversion) is LinearConversion:
        scale, offset = conversion.scale, conversion.offset
        if type(scale) not in (int, float) or type(offset) not in (int, float):
            return None
        return (scale, offset)
    return None


def _layout_ok(signals: list[Signal], length: int) -> bool:
    """Whether cantools' bitstruct formats place every signal where the DBC says.

    Mirrors how cantools builds its formats (little-endian signals walked in
    reverse codec order, big-endian ones sorted by network bit): a negative
    padding (overlap, unsorted order) or a signal past the end makes cantools'
    layout differ from the DBC's, or fail; such messages are not compiled.
    """
    total = 8 * length
    end = total
    for signal in reversed(signals):
        if signal.byte_order != "little_endian":
            continue
        if signal.start < 0 or end - (signal.start + signal.length) < 0:
            return False
        end = signal.start
    position = 0
    big = [s for s in signals if s.byte_order == "big_endian"]
    for signal in sorted(big, key=_network_start):
        first = _network_start(signal)
        if signal.start < 0 or first - position < 0:
            return False
        position = first + signal.length
    return position <= total


def compile_message(message: Message) -> DecodeFunction | None:
    """An exact fast decoder for ``message``, or None when cantools must decode it."""
    if message.is_container or message.is_multiplexed():
        return None
    length = message.length
    if type(length) is not int or not 0 <= length <= _MAX_LENGTH:
        return None
    codecs = message._codecs
    if codecs is None or codecs["multiplexers"]:
        return None
    signals: list[Signal] = list(codecs["signals"])
    if [s.name for s in signals] != [s.name for s in message.signals]:
        return None
    if len({s.name for s in signals}) != len(signals):
        return None
    for signal in signals:
        if signal.byte_order not in ("little_endian", "big_endian"):
            return None
        if type(signal.start) is not int or type(signal.length) is not int:
            return None
        if signal.length < 1 or signal.length > 8 * _MAX_LENGTH:
            return None
        if signal.conversion.is_float and signal.length not in _FLOAT_STRUCTS:
            return None
        if signal.multiplexer_ids is not None or signal.is_multiplexer:
            return None
        if _linear(signal.conversion) is None:
            return None
    if not _layout_ok(signals, length):
        return None
    return _build(message.name, length, signals)


def _build(name: str, length: int, signals: list[Signal]) -> DecodeFunction:
    total = 8 * length
    namespace: dict[str, Any] = {
        "_DecodeError": DecodeError,
        "_from_bytes": int.from_bytes,
        "_f32": _FLOAT_STRUCTS[32],
        "_f64": _FLOAT_STRUCTS[64],
    }
    error = f"Wrong data size: {{}} instead of {length} bytes"
    namespace["_error"] = error
    body = [
        "def decode(data):",
        f"    if len(data) != {length}:",
        f"        if len(data) < {length}:",
        "            raise _DecodeError(_error.format(len(data)))",
        f"        data = data[:{length}]",
    ]
    if any(s.byte_order == "little_endian" for s in signals):
        body.append('    little = _from_bytes(data, "little")')
    if any(s.byte_order == "big_endian" for s in signals):
        body.append('    big = _from_bytes(data, "big")')
    items: list[str] = []
    for number, signal in enumerate(signals):
        bits = signal.length
        mask = (1 << bits) - 1
        if signal.byte_order == "little_endian":
            source, shift = "little", signal.start
        else:
            source, shift = "big", total - _network_start(signal) - bits
        raw = f"(({source} >> {shift}) & {mask})" if shift else f"({source} & {mask})"
        if signal.conversion.is_float:
            size = 4 if bits == 32 else 8
            raw = f"_f{bits}({raw}.to_bytes({size}, 'big'))[0]"
        elif signal.is_signed:
            sign = 1 << (bits - 1)
            raw = f"(({raw} ^ {sign}) - {sign})"
        linear = _linear(signal.conversion)
        assert linear is not None  # checked by compile_message
        scale, offset = linear
        if scale == () and offset == ():
            value = raw
        else:
            namespace[f"_s{number}"] = scale
            namespace[f"_o{number}"] = offset
            value = f"{raw} * _s{number} + _o{number}"
        namespace[f"_n{number}"] = signal.name
        items.append(f"_n{number}: {value}")
    body.append("    return {" + ", ".join(items) + "}")
    source_text = "\n".join(body) + "\n"
    code = compile(source_text, f"<fastdecode {name}>", "exec")
    exec(code, namespace)  # noqa: S102 - generated from numbers only; names are bound, not inlined
    function: DecodeFunction = namespace["decode"]
    return function
