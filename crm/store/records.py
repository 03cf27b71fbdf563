"""Records: dealers and their service centres, customers, vehicles, who owns and uses
them (the ownership history), consents and grants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, select, update

from crm.errors import Conflict, InvalidInput
from crm.store.base import Page, Row, StoreBase, now_us
from crm.store.tables import (
    consents,
    customers,
    dealers,
    grants,
    service_centres,
    vehicle_parties,
    vehicles,
)

__all__ = ["RecordStore", "decode_set", "encode_set"]


def encode_set(values: Sequence[str] | frozenset[str]) -> str:
    """``{"b", "a"}`` as ``",a,b,"``: both dialects test membership with ``LIKE '%,a,%'``."""
    return "," + ",".join(sorted(set(values))) + ","


def decode_set(text: str) -> list[str]:
    return [value for value in text.split(",") if value]


def _grant(row: Row) -> Row:
    return {**row, "purposes": decode_set(row["purposes"]), "fields": decode_set(row["fields"])}


class RecordStore(StoreBase):
    """The CRM's records of one tenant."""

    # ------------------------------------------------------------------ dealers

    def create_dealer(self, code: str, name: str, centres: Sequence[Mapping[str, Any]]) -> Row:
        with self._tx("create dealer") as conn:
            dealer = self._insert(
                conn, dealers, {"code": code, "name": name, "created_us": now_us(), "version": 1}
            )
            dealer["service_centres"] = [
                self._insert(conn, service_centres, {**centre, "dealer_id": dealer["id"]})
                for centre in centres
            ]
            return dealer

    def dealer(self, dealer_id: int) -> Row:
        with self._tx("read dealer") as conn:
            dealer = self._one(conn, dealers, dealer_id, "dealer")
            dealer["service_centres"] = [
                dict(r._mapping)
                for r in conn.execute(
                    select(service_centres)
                    .where(service_centres.c.dealer_id == dealer_id)
                    .order_by(service_centres.c.id)
                )
            ]
            return dealer

    def dealers(self, *, after: int | None, limit: int, code: str | None = None) -> Page:
        where = [] if code is None else [dealers.c.code == code]
        with self._tx("list dealers") as conn:
            page = self._page(conn, dealers, where=where, after=after, limit=limit)
        for item in page.items:
            item["service_centres"] = []
        return page

    def update_dealer(self, dealer_id: int, version: int, values: Mapping[str, Any]) -> Row:
        with self._tx("update dealer") as conn:
            self._update_versioned(conn, dealers, dealer_id, version, values, "dealer")
        return self.dealer(dealer_id)

    # ------------------------------------------------------------------ customers

    def create_customer(self, values: Mapping[str, Any]) -> Row:
        with self._tx("create customer") as conn:
            return self._insert(conn, customers, {**values, "created_us": now_us(), "version": 1})

    def customer(self, customer_id: int) -> Row:
        with self._tx("read customer") as conn:
            return self._one(conn, customers, customer_id, "customer")

    def customers(self, *, after: int | None, limit: int, email: str | None = None) -> Page:
        where = [] if email is None else [customers.c.email == email]
        with self._tx("list customers") as conn:
            return self._page(conn, customers, where=where, after=after, limit=limit)

    def update_customer(self, customer_id: int, version: int, values: Mapping[str, Any]) -> Row:
        with self._tx("update customer") as conn:
            return self._update_versioned(conn, customers, customer_id, version, values, "customer")

    # ------------------------------------------------------------------ vehicles

    def create_vehicle(self, values: Mapping[str, Any]) -> Row:
        with self._tx("create vehicle") as conn:
            return self._insert(conn, vehicles, {**values, "created_us": now_us(), "version": 1})

    def vehicle(self, vehicle_id: int) -> Row:
        with self._tx("read vehicle") as conn:
            return self._one(conn, vehicles, vehicle_id, "vehicle")

    def vehicles(
        self,
        *,
        after: int | None,
        limit: int,
        vin: str | None = None,
        model: str | None = None,
        year: int | None = None,
    ) -> Page:
        where: list[ColumnElement[bool]] = []
        if vin is not None:
            where.append(vehicles.c.vin == vin)
        if model is not None:
            where.append(vehicles.c.model == model)
        if year is not None:
            where.append(vehicles.c.year == year)
        with self._tx("list vehicles") as conn:
            return self._page(conn, vehicles, where=where, after=after, limit=limit)

    def update_vehicle(self, vehicle_id: int, version: int, values: Mapping[str, Any]) -> Row:
        with self._tx("update vehicle") as conn:
            return self._update_versioned(conn, vehicles, vehicle_id, version, values, "vehicle")

    # ------------------------------------------------------------------ owners and users

    def add_party(self, vehicle_id: int, customer_id: int, role: str, valid_from_us: int) -> Row:
        """Make ``customer_id`` an owner or a user of the vehicle from ``valid_from_us``.

        A new owner ends the current owner's period at the same instant, so the
        ownership history never has two owners at once.
        """
        with self._tx("add owner or user") as conn:
            self._one(conn, vehicles, vehicle_id, "vehicle")
            self._one(conn, customers, customer_id, "customer")
            current = vehicle_parties.c
            if role == "owner":
                conn.execute(
                    update(vehicle_parties)
                    .where(
                        current.vehicle_id == vehicle_id,
                        current.role == "owner",
                        current.valid_to_us.is_(None),
                    )
                    .values(valid_to_us=valid_from_us)
                )
            return self._insert(
                conn,
                vehicle_parties,
                {
                    "vehicle_id": vehicle_id,
                    "customer_id": customer_id,
                    "role": role,
                    "valid_from_us": valid_from_us,
                    "valid_to_us": None,
                },
            )

    def parties(self, vehicle_id: int) -> list[Row]:
        """Every owner and user the vehicle had, oldest first."""
        with self._tx("read owners and users") as conn:
            self._one(conn, vehicles, vehicle_id, "vehicle")
            query = (
                select(vehicle_parties)
                .where(vehicle_parties.c.vehicle_id == vehicle_id)
                .order_by(vehicle_parties.c.valid_from_us, vehicle_parties.c.id)
            )
            return [dict(r._mapping) for r in conn.execute(query)]

    # ------------------------------------------------------------------ consents

    def create_consent(self, values: Mapping[str, Any]) -> Row:
        with self._tx("record consent") as conn:
            self._one(conn, vehicles, values["vehicle_id"], "vehicle")
            self._one(conn, customers, values["customer_id"], "customer")
            if values.get("dealer_id") is not None:
                self._one(conn, dealers, values["dealer_id"], "dealer")
            return self._insert(
                conn, consents, {**values, "withdrawn_at_us": None, "created_us": now_us()}
            )

    def withdraw_consent(self, consent_id: int) -> Row:
        """Withdraw the consent now; the next request of any dealer sees it withdrawn."""
        with self._tx("withdraw consent") as conn:
            row = self._one(conn, consents, consent_id, "consent")
            if row["withdrawn_at_us"] is not None:
                raise Conflict(f"consent {consent_id} is already withdrawn")
            conn.execute(
                update(consents).where(consents.c.id == consent_id).values(withdrawn_at_us=now_us())
            )
            return self._one(conn, consents, consent_id, "consent")

    def consents(
        self,
        *,
        after: int | None,
        limit: int,
        vehicle_id: int | None = None,
        purpose: str | None = None,
    ) -> Page:
        where: list[ColumnElement[bool]] = []
        if vehicle_id is not None:
            where.append(consents.c.vehicle_id == vehicle_id)
        if purpose is not None:
            where.append(consents.c.purpose == purpose)
        with self._tx("list consents") as conn:
            return self._page(conn, consents, where=where, after=after, limit=limit)

    # ------------------------------------------------------------------ grants

    def create_grant(self, values: Mapping[str, Any]) -> Row:
        if values["valid_to_us"] is not None and values["valid_to_us"] <= values["valid_from_us"]:
            raise InvalidInput("a grant must end after it starts")
        with self._tx("create grant") as conn:
            self._one(conn, dealers, values["dealer_id"], "dealer")
            self._one(conn, vehicles, values["vehicle_id"], "vehicle")
            row = self._insert(
                conn,
                grants,
                {
                    **values,
                    "purposes": encode_set(values["purposes"]),
                    "fields": encode_set(values["fields"]),
                    "created_us": now_us(),
                },
            )
            return _grant(row)

    def end_grant(self, grant_id: int) -> Row:
        """End the grant now (its history stays)."""
        stamp = now_us()
        with self._tx("end grant") as conn:
            row = self._one(conn, grants, grant_id, "grant")
            if row["valid_to_us"] is not None and row["valid_to_us"] <= stamp:
                raise Conflict(f"grant {grant_id} has already ended")
            conn.execute(update(grants).where(grants.c.id == grant_id).values(valid_to_us=stamp))
            return _grant(self._one(conn, grants, grant_id, "grant"))

    def grants(
        self,
        *,
        after: int | None,
        limit: int,
        dealer_id: int | None = None,
        vehicle_id: int | None = None,
    ) -> Page:
        where: list[ColumnElement[bool]] = []
        if dealer_id is not None:
            where.append(grants.c.dealer_id == dealer_id)
        if vehicle_id is not None:
            where.append(grants.c.vehicle_id == vehicle_id)
        with self._tx("list grants") as conn:
            page = self._page(conn, grants, where=where, after=after, limit=limit)
        page.items = [_grant(item) for item in page.items]
        return page
