"""Who may read what: API keys, the audit log, the terms of grants and consents, and the
dealer's vehicle-health list (the access rule evaluated in SQL).

The health list is the CRM's hottest read, so it is one query: the rule of
``crm.domain.decide_access`` for the ``health`` field, as two ``EXISTS``
clauses evaluated at the request's own time. A withdrawn consent or an ended
grant therefore drops a vehicle from the very next page served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    insert,
    literal,
    or_,
    select,
    update,
)

from cloud.store.models import HealthRow, Vehicle
from crm.domain import FIELD_PURPOSE, ConsentTerm, GrantTerm
from crm.errors import NotFound
from crm.store.base import Page, Row, StoreBase, now_us, page_of
from crm.store.records import decode_set
from crm.store.tables import api_keys, audit_log, consents, grants, vehicles

__all__ = ["ADMIN_HEALTH", "DEALER_HEALTH", "AccessStore", "HealthPageAsk", "visible_to_dealer"]


def _constant(value: str) -> BindParameter[str]:
    # Rendered into the SQL text rather than bound: with the patterns and the purpose
    # in sight, PostgreSQL's generic plan of the prepared statement walks the page in
    # id order (~0.5 ms); bound, it estimated one row and sorted every grant (~30 ms).
    return literal(value, literal_execute=True)


def _grant_in_force(field: str) -> ColumnElement[bool]:
    g = grants.c
    return exists().where(
        g.vehicle_id == vehicles.c.id,
        # Redundant with the outer query's bound, but it lets PostgreSQL start its
        # merge join at the page instead of scanning the dealer's grants from the first.
        g.vehicle_id > bindparam("after"),
        g.dealer_id == bindparam("dealer_id"),
        g.valid_from_us <= bindparam("at"),
        or_(g.valid_to_us.is_(None), g.valid_to_us > bindparam("at")),
        g.fields.like(_constant(f"%,{field},%")),
        g.purposes.like(_constant(f"%,{FIELD_PURPOSE[field]},%")),
    )


def _consent_in_force(purpose: str) -> ColumnElement[bool]:
    c = consents.c
    return exists().where(
        c.vehicle_id == vehicles.c.id,
        c.vehicle_id > bindparam("after"),
        c.purpose == _constant(purpose),
        or_(c.dealer_id.is_(None), c.dealer_id == bindparam("dealer_id")),
        c.withdrawn_at_us.is_(None),
        c.valid_from_us <= bindparam("at"),
        or_(c.valid_to_us.is_(None), c.valid_to_us > bindparam("at")),
    )


def _health_list() -> Select[Any]:
    v = vehicles.c
    return (
        select(
            v.id, v.vin, v.model, v.year, v.mileage_km,
            HealthRow.score, HealthRow.reasons, HealthRow.as_of_us,
        )
        .select_from(vehicles)
        .outerjoin(Vehicle, Vehicle.vehicle_id == v.telemetry_id)
        .outerjoin(HealthRow, HealthRow.vehicle_id == Vehicle.id)
        .where(v.id > bindparam("after"))
        .order_by(v.id)
        .limit(bindparam("limit"))
    )  # fmt: skip


def visible_to_dealer(field: str) -> ColumnElement[bool]:
    """``crm.domain.decide_access`` for one field, in SQL, over ``crm_vehicles``.

    Binds ``dealer_id``, ``at`` (now, in µs) and ``after`` (the page's lower id bound).
    """
    return and_(_grant_in_force(field), _consent_in_force(FIELD_PURPOSE[field]))


# Built once: the list is the hottest read, and building the statement per request
# cost as much CPU as running it.
#: Bind ``after`` and ``limit`` (one more than the page, to tell whether another follows).
ADMIN_HEALTH = _health_list()
#: Binds also ``dealer_id`` and ``at``.
DEALER_HEALTH = _health_list().where(visible_to_dealer("health"))


@dataclass(frozen=True, slots=True)
class HealthPageAsk:
    """One page of the health list as a caller asks it, with the audit row of the ask."""

    #: ``None``: the automaker's administrator, who sees every vehicle.
    dealer_id: int | None
    after: int | None
    limit: int
    #: The instant the grants and consents are evaluated at (µs).
    at_us: int
    #: ``crm_audit_log``'s columns but its id; committed with the read.
    audit: Mapping[str, Any]


class AccessStore(StoreBase):
    """API keys, audit rows, access terms and the health list of one tenant."""

    # ------------------------------------------------------------------ API keys

    def add_api_key(
        self, key_id: str, secret_sha256: str, *, role: str, dealer_id: int | None, label: str
    ) -> Row:
        with self._tx("create API key") as conn:
            return self._insert(
                conn,
                api_keys,
                {
                    "key_id": key_id,
                    "secret_sha256": secret_sha256,
                    "role": role,
                    "dealer_id": dealer_id,
                    "label": label,
                    "created_us": now_us(),
                    "revoked_at_us": None,
                },
            )

    def api_key(self, key_id: str) -> Row | None:
        with self._tx("read API key") as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
            return None if row is None else dict(row._mapping)

    def revoke_api_key(self, key_id: str) -> None:
        with self._tx("revoke API key") as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at_us.is_(None))
                .values(revoked_at_us=now_us())
            )
            if done.rowcount == 0:
                raise NotFound(f"no live API key {key_id!r}")

    # ------------------------------------------------------------------ audit

    def write_audit_rows(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Insert audit rows in one transaction."""
        with self._tx("write audit rows") as conn:
            conn.execute(insert(audit_log), [dict(entry) for entry in entries])

    def audit(
        self,
        *,
        after: int | None,
        limit: int,
        principal: str | None = None,
        dealer_id: int | None = None,
        result: str | None = None,
        since_us: int | None = None,
    ) -> Page:
        where: list[ColumnElement[bool]] = []
        if principal is not None:
            where.append(audit_log.c.principal == principal)
        if dealer_id is not None:
            where.append(audit_log.c.dealer_id == dealer_id)
        if result is not None:
            where.append(audit_log.c.result == result)
        if since_us is not None:
            where.append(audit_log.c.at_us >= since_us)
        with self._tx("read audit log") as conn:
            return self._page(conn, audit_log, where=where, after=after, limit=limit)

    # ------------------------------------------------------------------ access terms

    def access_terms(self, vehicle_id: int) -> tuple[list[GrantTerm], list[ConsentTerm]]:
        """Every grant and consent of the vehicle, for ``crm.domain.decide_access``."""
        with self._tx("read grants and consents") as conn:
            grant_rows = conn.execute(select(grants).where(grants.c.vehicle_id == vehicle_id))
            terms = [
                GrantTerm(
                    r.dealer_id,
                    frozenset(decode_set(r.purposes)),
                    frozenset(decode_set(r.fields)),
                    r.valid_from_us,
                    r.valid_to_us,
                )
                for r in grant_rows
            ]
            consent_rows = conn.execute(select(consents).where(consents.c.vehicle_id == vehicle_id))
            consent_terms = [
                ConsentTerm(
                    r.purpose, r.dealer_id, r.valid_from_us, r.valid_to_us, r.withdrawn_at_us
                )
                for r in consent_rows
            ]
        return terms, consent_terms

    # ------------------------------------------------------------------ health list

    def health_page(
        self,
        dealer_id: int | None,
        *,
        after: int | None,
        limit: int,
        audit: Mapping[str, Any] | None = None,
        at_us: int | None = None,
    ) -> Page:
        """Vehicles with their health score; a dealer's only those it may see at ``at_us``
        (default: now). With ``audit``, that audit row commits with the read, in one
        transaction."""
        params: dict[str, Any] = {"after": after or 0, "limit": limit + 1}
        if dealer_id is None:
            query = ADMIN_HEALTH
        else:
            query = DEALER_HEALTH
            params.update(dealer_id=dealer_id, at=now_us() if at_us is None else at_us)
        with self._tx("list vehicle health") as conn:
            if audit is not None:
                conn.execute(insert(audit_log), [dict(audit)])
            rows = [dict(r._mapping) for r in conn.execute(query, params)]
        return page_of(rows, limit)
