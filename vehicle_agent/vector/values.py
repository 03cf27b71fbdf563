"""A signal's values as cantools gives them: their dtype, exact scaling, choice labels.

The rules that make vectorised values *equal* to cantools' (see
:mod:`vehicle_agent.vector.decoder`): :func:`output_dtype` picks the numpy dtype that holds
every value a signal can take, :func:`make_scaler` computes
``raw * scale + offset`` as Python does (modulo 2**64 in that dtype when the
result is an integer, float64 with Python's rounding otherwise, Python itself
where no fixed-width dtype is exact), :func:`choice_labels` and
:func:`label_lookup` turn raw values into label codes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from cantools.database.can import Signal
from cantools.database.conversion import IdentityConversion, NamedSignalConversion

from vehicle_agent.vector.model import AnyArray

__all__ = [
    "Scaler",
    "choice_labels",
    "conversion_of",
    "float_exact",
    "label_lookup",
    "make_scaler",
    "output_dtype",
]


_U64 = np.dtype(np.uint64)
_I64 = np.dtype(np.int64)
_F64 = np.dtype(np.float64)
_OBJECT = np.dtype(object)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1


def conversion_of(signal: Signal) -> Any:
    conversion = signal.conversion
    if type(conversion) is NamedSignalConversion:
        return conversion._conversion
    return conversion


def _raw_range(signal: Signal) -> tuple[int, int]:
    bits = max(int(signal.length), 1)
    if signal.is_signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _int_dtype(low: int, high: int) -> np.dtype[Any]:
    if low >= _INT64_MIN and high <= _INT64_MAX:
        return _I64
    if low >= 0 and high <= _UINT64_MAX:
        return _U64
    return _OBJECT


def output_dtype(signal: Signal, scaling: bool) -> np.dtype[Any]:
    """The dtype that holds every value cantools can give for *signal*, exactly.

    Integer results are those of Python's int arithmetic on an integer raw value
    (identity conversions, or integer scale and offset); anything else is float.
    """
    if signal.conversion.is_float:
        return _F64
    low, high = _raw_range(signal)
    conversion = conversion_of(signal)
    if not scaling or type(conversion) is IdentityConversion:
        return _int_dtype(low, high)
    scale, offset = conversion.scale, conversion.offset
    if type(scale) is int and type(offset) is int:
        ends = (low * scale + offset, high * scale + offset)
        return _int_dtype(min(ends), max(ends))
    return _F64


def float_exact(signal: Signal, scaling: bool) -> bool:
    """Whether every value of *signal* converts to float64 exactly."""
    if output_dtype(signal, scaling).kind == "f":
        return True
    low, high = _raw_range(signal)
    conversion = conversion_of(signal)
    if scaling and type(conversion) is not IdentityConversion:
        ends = (
            low * conversion.scale + conversion.offset,
            high * conversion.scale + conversion.offset,
        )
        low, high = min(ends), max(ends)
    return low >= -(1 << 53) and high <= 1 << 53


Scaler = Callable[[AnyArray], AnyArray]


def make_scaler(signal: Signal, scaling: bool, dtype: np.dtype[Any]) -> Scaler:
    """``raw -> raw * scale + offset`` as Python computes it, vectorised where exact."""
    conversion = conversion_of(signal)
    if not scaling or type(conversion) is IdentityConversion:
        # Identity returns the raw value itself (a float -0.0 stays -0.0).
        if dtype == _OBJECT:
            return lambda raw: np.array(raw.tolist(), dtype=object)
        return lambda raw: raw
    scale, offset = conversion.scale, conversion.offset
    is_float = bool(signal.conversion.is_float)

    def python(raw: AnyArray) -> AnyArray:
        # cantools' own expression on Python numbers: the exact reference.
        return np.array([value * scale + offset for value in raw.tolist()], dtype=dtype)

    if is_float or type(scale) is float:
        # float(raw) * scale + float(offset): Python converts ints to float first
        # (correctly rounded, as numpy's int64/uint64 -> float64 cast is).
        scale_f, offset_f = np.float64(float(scale)), np.float64(float(offset))
        return lambda raw: _plus(np.multiply(raw, scale_f, dtype=np.float64), offset_f)
    low, high = _raw_range(signal)
    if type(offset) is int:
        # Integer result; arithmetic modulo 2**64 in the output dtype is exact
        # because that dtype holds every result.
        if dtype == _OBJECT:
            return python
        scale_m = dtype.type(scale % (1 << 64) if dtype == _U64 else _wrap64(scale))
        offset_m = dtype.type(offset % (1 << 64) if dtype == _U64 else _wrap64(offset))
        return lambda raw: _plus(np.multiply(raw, scale_m, dtype=dtype, casting="unsafe"), offset_m)
    # Integer scale, float offset: the exact integer product, then one rounding.
    ends = (low * scale, high * scale)
    if min(ends) >= _INT64_MIN and max(ends) <= _INT64_MAX and high <= _INT64_MAX:
        scale_i, offset_f = np.int64(scale), np.float64(offset)
        return lambda raw: _plus((raw.astype(np.int64) * scale_i).astype(np.float64), offset_f)
    return python


def _plus(values: AnyArray, offset: Any) -> AnyArray:
    """*values* + *offset*, in place (*values* is a scaler's own new array)."""
    values += offset
    return values


def _wrap64(value: int) -> int:
    """*value* modulo 2**64 as a signed 64-bit integer."""
    return ((value + (1 << 63)) % (1 << 64)) - (1 << 63)


def choice_labels(signal: Signal) -> tuple[str, ...]:
    choices: Mapping[int, object] = signal.conversion.choices or {}
    texts: list[str] = []
    for value in choices.values():
        text = str(value)
        if text not in texts:
            texts.append(text)
    return tuple(texts)


def label_lookup(
    signal: Signal, labels: tuple[str, ...], unsigned64: bool
) -> tuple[AnyArray, npt.NDArray[np.int32]]:
    """Sorted raw keys and their label codes; keys a raw value can never equal are dropped."""
    choices: Mapping[int, object] = signal.conversion.choices or {}
    low, high = (0, _UINT64_MAX) if unsigned64 else (_INT64_MIN, _INT64_MAX)
    index = {text: i for i, text in enumerate(labels)}
    pairs = sorted(
        (int(key), index[str(value)]) for key, value in choices.items() if low <= int(key) <= high
    )
    keys = np.array([k for k, _ in pairs], dtype=np.uint64 if unsigned64 else np.int64)
    codes = np.array([c for _, c in pairs], dtype=np.int32)
    return keys, codes
