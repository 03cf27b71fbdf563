"""Comparing decoded values the way the decoding tests need to."""

from __future__ import annotations

import math


def same_value(a: object, b: object) -> bool:
    """Equal and of the same type; NaN equals NaN (a float signal may decode to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
