"""Opening hours: a small, strict subset of the OpenStreetMap ``opening_hours`` syntax.

Accepted: ``24/7``, or rules separated by ``;`` of the form
``<days> <HH:MM>-<HH:MM>[,<HH:MM>-<HH:MM>...]`` where days are ``Mo Tu We Th
Fr Sa Su``, ranges (``Mo-Fr``) and lists (``Sa,Su``); ``off`` closes the
days. An interval may cross midnight (``22:00-06:00``: open until 06:00 the
next day). Anything else is rejected with the reason, never guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

__all__ = ["ALWAYS_OPEN", "OpeningHours", "parse_hours"]

_DAYS = ("mo", "tu", "we", "th", "fr", "sa", "su")
_MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY
_TIME = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Open intervals as (start, end) minutes of the week from Monday 00:00, end exclusive."""

    intervals: tuple[tuple[int, int], ...]
    text: str

    @property
    def always(self) -> bool:
        return self.intervals == ((0, _MINUTES_PER_WEEK),)

    def is_open(self, when: datetime) -> bool:
        """Whether open at ``when`` (its own local wall-clock time)."""
        minute = when.weekday() * _MINUTES_PER_DAY + when.hour * 60 + when.minute
        # An interval crossing Sunday midnight is stored past the week's end.
        return any(
            start <= m < end
            for start, end in self.intervals
            for m in (minute, minute + _MINUTES_PER_WEEK)
        )


ALWAYS_OPEN = OpeningHours(((0, _MINUTES_PER_WEEK),), "24/7")


def parse_hours(text: str) -> OpeningHours:
    """Parse ``text``; raises ``ValueError`` naming the rule that is wrong."""
    cleaned = text.strip()
    if cleaned == "24/7":
        return ALWAYS_OPEN
    if not cleaned:
        raise ValueError("opening hours are empty (write 24/7 for always open)")
    open_by_day: dict[int, list[tuple[int, int]]] = {}
    for rule in (part.strip() for part in cleaned.split(";")):
        if not rule:
            continue
        days_text, _, times_text = rule.partition(" ")
        days = _days(days_text, rule)
        times_text = times_text.strip()
        if times_text == "off":
            for day in days:
                open_by_day[day] = []
            continue
        spans = [_span(piece.strip(), rule) for piece in times_text.split(",")]
        for day in days:
            # A later rule for the same day replaces the earlier one, as in OSM.
            open_by_day[day] = spans
    intervals = sorted(
        (day * _MINUTES_PER_DAY + start, day * _MINUTES_PER_DAY + end)
        for day, spans in open_by_day.items()
        for start, end in spans
    )
    return OpeningHours(tuple(intervals), cleaned)


def _days(text: str, rule: str) -> list[int]:
    days: list[int] = []
    for piece in text.lower().split(","):
        first, dash, last = piece.partition("-")
        if first not in _DAYS or (dash and last not in _DAYS):
            raise ValueError(f"{rule!r}: days must be like Mo-Fr or Sa,Su, got {text!r}")
        a = _DAYS.index(first)
        b = _DAYS.index(last) if dash else a
        days.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return days


def _span(text: str, rule: str) -> tuple[int, int]:
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{rule!r}: times must be like 07:00-22:00, got {text!r}")
    h1, m1, h2, m2 = (int(group) for group in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{rule!r}: {text!r} is not a time of day")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end == start:
        raise ValueError(f"{rule!r}: {text!r} opens and closes at the same time")
    # Past midnight: the interval runs into the next day.
    return (start, end if end > start else end + _MINUTES_PER_DAY)
