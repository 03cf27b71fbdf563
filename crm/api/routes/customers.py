"""Customers (owners and users): personal data, for the automaker's administrators only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from crm.api.deps import AuditDep, PageDep, PrincipalDep, StoreDep, VersionDep, etag, require_admin
from crm.api.errors import ERROR_RESPONSES
from crm.api.schemas import (
    MAX_ID,
    CustomerCreate,
    CustomerPublic,
    CustomerUpdate,
    Email,
    PageOf,
    changes,
)

router = APIRouter(prefix="/v1/customers", tags=["customers"], responses=ERROR_RESPONSES)
CustomerId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a customer")
def create_customer(
    body: CustomerCreate,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> CustomerPublic:
    require_admin(principal)
    row = store.create_customer(body.model_dump())
    response.headers["ETag"] = etag(row["version"])
    return CustomerPublic.model_validate(row)


@router.get("", summary="List customers, optionally by e-mail")
def list_customers(
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    page: PageDep,
    email: Annotated[Email | None, Query()] = None,
) -> PageOf[CustomerPublic]:
    require_admin(principal)
    result = store.customers(after=page.after, limit=page.limit, email=email)
    return PageOf[CustomerPublic](
        items=[CustomerPublic.model_validate(i) for i in result.items],
        next_after=result.next_after,
    )


@router.get("/{customer_id}", summary="Read a customer")
def get_customer(
    customer_id: CustomerId,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> CustomerPublic:
    require_admin(principal)
    row = store.customer(customer_id)
    response.headers["ETag"] = etag(row["version"])
    return CustomerPublic.model_validate(row)


@router.patch("/{customer_id}", summary="Update a customer (If-Match: its ETag)")
def update_customer(
    customer_id: CustomerId,
    body: CustomerUpdate,
    version: VersionDep,
    principal: PrincipalDep,
    store: StoreDep,
    audit: AuditDep,
    response: Response,
) -> CustomerPublic:
    require_admin(principal)
    row = store.update_customer(customer_id, version, changes(body, nullable=("phone",)))
    response.headers["ETag"] = etag(row["version"])
    return CustomerPublic.model_validate(row)
