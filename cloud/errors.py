"""Exceptions raised by the cloud package, grouped by what the caller can do.

::

    CloudError
    ├── AuthError            bad, missing, expired or foreign credential
    ├── NotPermitted         authenticated, but acting as another vehicle
    ├── UnknownTenant        a tenant that is not configured
    ├── UnknownVehicle       a vehicle not enrolled in its tenant's store
    ├── ProtocolError        messages out of order (a batch before the hello, ...)
    ├── MalformedMessage     bytes on the stream that are not a VehicleMessage
    ├── InvalidHello         a hello whose catalog cannot be used
    ├── InvalidBatch         a batch that fails validation (carries its sequence)
    │   └── BatchTooLarge    more samples than the gateway accepts
    ├── InvalidReport        a fault-code report, health report or plan status that
    │                        fails validation
    ├── InvalidPlan          a collection-plan document (or consent) an operator wrote
    │                        that cannot be accepted; nothing was stored
    ├── UnknownBatch         a batch (vehicle, sequence) the tenant's store does not hold
    ├── UnknownSignal        a signal (bus, message, name) the tenant's store does not know
    ├── StoreError           the tenant's database failed; nothing was committed
    ├── ListenError          the gateway cannot bind its address
    └── EventBusError        the event bus failed (cloud.events)
        ├── BusUnavailable   the bus cannot be reached or did not answer in time; retry
        ├── BusFull          a stream or subscription holds as many unacknowledged
        │                    messages as it may; retry once consumers caught up
        ├── InvalidSubject   a tenant, subject, event kind or consumer name that
        │                    cannot be used on the bus (a programming or config error)
        └── MalformedEvent   bytes on the bus that are not an event this cloud knows

Foreign exceptions are translated where they enter: ``SQLAlchemyError`` in the
store, PyJWT errors in ``cloud.auth``, nats-py errors in ``cloud.events.jetstream``.
The gateway maps this tree to gRPC status codes in one helper.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BatchTooLarge",
    "BusFull",
    "BusUnavailable",
    "CloudError",
    "EventBusError",
    "InvalidBatch",
    "InvalidHello",
    "InvalidPlan",
    "InvalidReport",
    "InvalidSubject",
    "ListenError",
    "MalformedEvent",
    "MalformedMessage",
    "NotPermitted",
    "ProtocolError",
    "StoreError",
    "UnknownBatch",
    "UnknownSignal",
    "UnknownTenant",
    "UnknownVehicle",
]


class CloudError(Exception):
    """Root of every error the cloud package raises on purpose."""


class AuthError(CloudError):
    """The credential is missing, malformed, forged, expired or of an unknown tenant."""


class NotPermitted(CloudError):
    """The credential is valid but does not allow what was asked."""


class UnknownTenant(CloudError):
    """The tenant is not configured in this deployment."""


class UnknownVehicle(CloudError):
    """The vehicle is not enrolled in its tenant's store."""


class ProtocolError(CloudError):
    """The peer sent messages in an order the protocol does not allow."""


class MalformedMessage(CloudError):
    """A message on the stream could not be parsed as the contract's type."""


class InvalidHello(CloudError):
    """The hello cannot be accepted, e.g. its signal catalog repeats an index."""


class InvalidBatch(CloudError):
    """A telemetry batch failed validation; nothing of it was stored."""

    def __init__(self, reason: str, *, sequence: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sequence = sequence


class BatchTooLarge(InvalidBatch):
    """A batch holds more samples than the gateway accepts."""


class InvalidReport(CloudError):
    """A fault-code report, health report or plan status failed validation; nothing was stored."""


class InvalidPlan(CloudError):
    """A collection plan or consent change cannot be accepted; the message lists every reason."""


class UnknownBatch(CloudError):
    """The tenant's store holds no batch of that sequence for the vehicle."""


class UnknownSignal(CloudError):
    """The tenant's store knows no signal of that bus, message and name."""


class StoreError(CloudError):
    """The tenant's database failed; the operation was rolled back and may be retried."""


class ListenError(CloudError):
    """The gateway cannot listen on the configured address."""


class EventBusError(CloudError):
    """The event bus failed; see the subclasses for what the caller can do."""


class BusUnavailable(EventBusError):
    """The bus cannot be reached, or it did not answer in time; the call may be retried."""


class BusFull(EventBusError):
    """The stream or subscription is at its bound of unacknowledged messages; nothing was added."""


class InvalidSubject(EventBusError):
    """A tenant, subject, event kind or consumer name the bus cannot carry safely."""


class MalformedEvent(EventBusError):
    """Bytes taken from the bus are not an event of a kind and version this cloud knows."""
