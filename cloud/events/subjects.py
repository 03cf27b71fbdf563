"""Subjects of the event bus: every one of them belongs to exactly one tenant.

::

    telehub.<tenant>.batches          a telemetry batch was committed (BatchCommitted)
    telehub.<tenant>.faults           a fault-code report was committed (FaultsCommitted)
    telehub.<tenant>.events.<kind>    an event the rules derived (fault set, trip end, ...)

A tenant's subjects make one stream (``stream_name``) on JetStream, so one
automaker's messages never share a stream, a limit or a consumer with another's.
Names are checked here because a ``.``, ``*`` or ``>`` inside a tenant name or
kind would silently widen what a subscriber receives; the tenant rule is the
one ``cloud.config`` applies to tenant names.
"""

from __future__ import annotations

import re

from cloud.errors import InvalidSubject

__all__ = [
    "ROOT",
    "batches",
    "check_durable",
    "events",
    "faults",
    "matches",
    "stream_name",
    "tenant_of",
    "tenant_subjects",
]

ROOT = "telehub"

_TENANT = re.compile(r"[a-z0-9_-]{1,63}")
_KIND = re.compile(r"[a-z0-9_-]{1,63}")
#: JetStream durable names: no dots, wildcards or whitespace.
_DURABLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: One token of a subject or filter: a literal without wildcards, ``*`` or a final ``>``.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,63}|\*|>")


def _tenant(tenant: str) -> str:
    if _TENANT.fullmatch(tenant) is None:
        raise InvalidSubject(
            f"tenant {tenant!r} must be 1-63 characters of lowercase a-z, 0-9, _ or -"
        )
    return tenant


def batches(tenant: str) -> str:
    """Where ``BatchCommitted`` notifications of ``tenant`` go."""
    return f"{ROOT}.{_tenant(tenant)}.batches"


def faults(tenant: str) -> str:
    """Where ``FaultsCommitted`` notifications of ``tenant`` go."""
    return f"{ROOT}.{_tenant(tenant)}.faults"


def events(tenant: str, kind: str) -> str:
    """Where derived events of ``kind`` (e.g. ``fault_set``, ``trip_end``) of ``tenant`` go."""
    if _KIND.fullmatch(kind) is None:
        raise InvalidSubject(f"event kind {kind!r} must be 1-63 characters of a-z, 0-9, _ or -")
    return f"{ROOT}.{_tenant(tenant)}.events.{kind}"


def tenant_subjects(tenant: str) -> str:
    """The filter of every subject of ``tenant`` (its stream's subjects)."""
    return f"{ROOT}.{_tenant(tenant)}.>"


def stream_name(tenant: str) -> str:
    """The JetStream stream holding ``tenant``'s subjects."""
    return f"telehub_{_tenant(tenant)}"


def tenant_of(subject: str, *, wildcards: bool = False) -> str:
    """The tenant a subject (or, with ``wildcards``, a filter) belongs to.

    Raises ``InvalidSubject`` for anything outside ``telehub.<tenant>.…``, an
    empty token, and for wildcards unless allowed; the tenant token itself is
    never a wildcard: a consumer serves one tenant's stream.
    """
    tokens = subject.split(".")
    if len(tokens) < 3 or tokens[0] != ROOT:
        raise InvalidSubject(f"subject {subject!r} is not of the form {ROOT}.<tenant>.<name>")
    for position, part in enumerate(tokens):
        if _TOKEN.fullmatch(part) is None:
            raise InvalidSubject(f"subject {subject!r} has an invalid token {part!r}")
        if part in ("*", ">"):
            if not wildcards or position == 1:
                raise InvalidSubject(f"subject {subject!r} may not have a wildcard there")
            if part == ">" and position != len(tokens) - 1:
                raise InvalidSubject(f"subject {subject!r}: '>' must be the last token")
    return _tenant(tokens[1])


def check_durable(name: str) -> str:
    """``name`` if it can name a durable consumer."""
    if _DURABLE.fullmatch(name) is None:
        raise InvalidSubject(
            f"consumer name {name!r} must be 1-64 characters of A-Z, a-z, 0-9, _ or -"
        )
    return name


def matches(subject_filter: str, subject: str) -> bool:
    """Whether ``subject`` falls under ``subject_filter`` (NATS wildcard rules)."""
    wanted = subject_filter.split(".")
    tokens = subject.split(".")
    for position, part in enumerate(wanted):
        if part == ">":
            return len(tokens) > position
        if position >= len(tokens) or part not in ("*", tokens[position]):
            return False
    return len(tokens) == len(wanted)
