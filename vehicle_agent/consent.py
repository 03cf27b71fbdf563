"""The owner's consent: for which purposes data may leave the car.

Every signal in a collection plan carries a :class:`Purpose`; a sample leaves the
car only while the current :class:`Consent` grants that purpose. Consent changes
take effect immediately (the collector applies them to the next sample).

Location is special (EDPB guidelines 01/2020 on connected vehicles): it is off
until the owner opts in, and it can be coarsened on the car with :func:`coarsen`
before it leaves.

Pure module: no transport, storage or bus library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DEFAULT_CONSENT", "Consent", "Purpose", "coarsen"]


class Purpose(StrEnum):
    """Why a signal is collected (the wire contract's ``Purpose`` without UNSPECIFIED).

    The translator from protobuf decides what an unspecified purpose means; the
    core only knows real purposes.
    """

    DIAGNOSTICS = "diagnostics"
    AFTER_SALES = "after_sales"
    LOCATION = "location"
    RECOMMENDATIONS = "recommendations"
    ANALYTICS = "analytics"


@dataclass(frozen=True, slots=True)
class Consent:
    """The purposes the owner granted, as of consent ``version``.

    Purposes not in ``granted`` are withdrawn (as in the wire contract's
    ``ConsentUpdate``).
    """

    version: int
    granted: frozenset[Purpose]

    def __post_init__(self) -> None:
        if self.version < 0:
            raise ValueError(f"consent version must not be negative, got {self.version}")
        # Accept any iterable of purposes from callers but keep the field hashable.
        object.__setattr__(self, "granted", frozenset(Purpose(p) for p in self.granted))

    def allows(self, purpose: Purpose) -> bool:
        """Tell whether data collected for ``purpose`` may leave the car."""
        return purpose in self.granted


#: What a car runs before the owner has said anything: every purpose except
#: location, which stays off until the owner opts in.
DEFAULT_CONSENT = Consent(0, frozenset(Purpose) - {Purpose.LOCATION})


def coarsen(value: float, quantum: float) -> float:
    """Round ``value`` to the nearest multiple of ``quantum`` (halves to even).

    A quantum of 0 (or less) leaves the value as it is, and so does a value that
    is not finite (NaN or infinity have no nearest multiple). For latitude and
    longitude in degrees, a quantum of 0.01 is about a kilometre.
    """
    if quantum <= 0.0 or not math.isfinite(value):
        return value
    return round(value / quantum) * quantum
