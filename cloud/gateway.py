"""The gRPC servicer of ``telehub.v1.TelemetryGateway``: one stream per vehicle.

A stream is authenticated from its ``authorization: Bearer <token>`` metadata,
must start with a Hello naming the token's vehicle, then carries batches. Each
batch is validated and committed to the tenant's store before its Ack is sent,
so an acknowledged batch is never lost; a resent batch is acknowledged as a
duplicate and not stored twice.

Every failure ends the stream with a gRPC status that says why; failures after
authentication first send an ``Error`` message (with the batch's sequence when
one batch is at fault). ``grpc_status`` is the one place that maps the
``CloudError`` tree to status codes. Unexpected exceptions are logged and end
the stream with INTERNAL; they never reach the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from cloud.auth import TokenVerifier
from cloud.domain import CatalogMap, IngestResult, SignalDef, VehicleIdentity
from cloud.errors import (
    AuthError,
    BatchTooLarge,
    CloudError,
    InvalidBatch,
    InvalidHello,
    MalformedMessage,
    NotPermitted,
    ProtocolError,
    StoreError,
    UnknownTenant,
    UnknownVehicle,
)
from cloud.store import TenantRegistry, TenantStore
from cloud.wire import catalog_from_hello, decode_batch
from telehub.v1 import telemetry_pb2, telemetry_pb2_grpc

__all__ = ["TelemetryGatewayServicer", "grpc_status"]

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[telemetry_pb2.VehicleMessage, telemetry_pb2.CloudMessage]

# Most specific first: the first matching class decides.
_STATUS: tuple[tuple[type[CloudError], grpc.StatusCode], ...] = (
    (AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (NotPermitted, grpc.StatusCode.PERMISSION_DENIED),
    (UnknownTenant, grpc.StatusCode.NOT_FOUND),
    (UnknownVehicle, grpc.StatusCode.NOT_FOUND),
    (ProtocolError, grpc.StatusCode.FAILED_PRECONDITION),
    (MalformedMessage, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidHello, grpc.StatusCode.INVALID_ARGUMENT),
    (BatchTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidBatch, grpc.StatusCode.INVALID_ARGUMENT),
    # Nothing was acknowledged: the agent keeps the batch and retries.
    (StoreError, grpc.StatusCode.UNAVAILABLE),
)

_STORE_UNAVAILABLE = "the tenant store is unavailable; retry later"


def grpc_status(error: CloudError) -> tuple[grpc.StatusCode, str]:
    """The status code and the reason sent to the vehicle for ``error``."""
    for kind, code in _STATUS:
        if isinstance(error, kind):
            # The database's own message stays in the server log.
            reason = _STORE_UNAVAILABLE if isinstance(error, StoreError) else str(error)
            return code, reason
    return grpc.StatusCode.INTERNAL, "internal error"


@dataclass
class _StreamState:
    """What the error handler of a stream needs to know about it."""

    #: Sequence of the batch being validated or stored, 0 between batches.
    in_flight: int = 0


class TelemetryGatewayServicer(telemetry_pb2_grpc.TelemetryGatewayServicer):
    """Authenticates vehicles, validates their batches and stores them in their tenant."""

    def __init__(
        self, registry: TenantRegistry, verifier: TokenVerifier, *, max_batch_samples: int
    ) -> None:
        self._registry = registry
        self._verifier = verifier
        self._max_batch_samples = max_batch_samples

    async def Connect(
        self,
        request_iterator: AsyncIterator[telemetry_pb2.VehicleMessage],
        context: Context,
    ) -> AsyncIterator[telemetry_pb2.CloudMessage]:
        try:
            identity = self._authenticate(context)
        except AuthError as exc:
            code, reason = grpc_status(exc)
            await context.abort(code, reason)
        stream = _StreamState()
        try:
            async for reply in self._session(identity, _parsed(request_iterator), stream):
                yield reply
        except CloudError as exc:
            code, reason = grpc_status(exc)
            # A store failure while a batch was in flight is about that batch too.
            failed = exc.sequence if isinstance(exc, InvalidBatch) else stream.in_flight
            if isinstance(exc, StoreError):
                logger.warning("%s/%s: %s", identity.tenant, identity.vehicle_id, exc)
            else:
                logger.info("%s/%s rejected: %s", identity.tenant, identity.vehicle_id, reason)
            yield _error(code, reason, failed)
            await context.abort(code, reason)
        except Exception:
            logger.exception(
                "stream of %s/%s failed (batch in flight: %d)",
                identity.tenant,
                identity.vehicle_id,
                stream.in_flight,
            )
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    def _authenticate(self, context: Context) -> VehicleIdentity:
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    raise AuthError("authorization metadata must be 'Bearer <token>'")
                token = token.strip()
        if token is None:
            raise AuthError("missing authorization metadata ('Bearer <token>')")
        return self._verifier.verify(token)

    async def _session(
        self,
        identity: VehicleIdentity,
        requests: AsyncIterator[telemetry_pb2.VehicleMessage],
        stream: _StreamState,
    ) -> AsyncIterator[telemetry_pb2.CloudMessage]:
        first = await anext(aiter(requests), None)
        if first is None:
            return  # the vehicle closed its side before saying anything
        if first.WhichOneof("body") != "hello":
            raise ProtocolError(
                f"the first message must be a hello, got {first.WhichOneof('body') or 'nothing'}"
            )
        hello = first.hello
        if hello.vehicle_id != identity.vehicle_id:
            raise NotPermitted(
                f"the token is for vehicle {identity.vehicle_id!r} "
                f"but the hello names {hello.vehicle_id!r}"
            )
        signals = catalog_from_hello(hello)
        store = await asyncio.to_thread(self._registry.store, identity.tenant)
        catalog, last_stored = await asyncio.to_thread(
            _open_session, store, identity, hello.agent_version, hello.catalog_id, signals
        )
        if hello.last_acked_sequence > last_stored:
            # The agent believes more was acknowledged than is stored: worth an
            # operator's look (a restored database, or a second deployment).
            logger.warning(
                "%s/%s says sequence %d was acknowledged but the store ends at %d",
                identity.tenant,
                identity.vehicle_id,
                hello.last_acked_sequence,
                last_stored,
            )
        yield telemetry_pb2.CloudMessage(
            welcome=telemetry_pb2.Welcome(
                tenant=identity.tenant,
                last_stored_sequence=last_stored,
                max_batch_samples=self._max_batch_samples,
            )
        )

        async for message in requests:
            kind = message.WhichOneof("body")
            if kind == "batch":
                stream.in_flight = message.batch.sequence
                result = await asyncio.to_thread(
                    self._store_batch, store, identity, hello.catalog_id, catalog, message.batch
                )
                yield telemetry_pb2.CloudMessage(
                    ack=telemetry_pb2.Ack(
                        sequence=stream.in_flight,
                        samples_stored=result.stored,
                        duplicate=result.duplicate,
                    )
                )
                stream.in_flight = 0
            elif kind == "hello":
                raise ProtocolError("a stream carries one hello; reconnect to send another")
            else:
                # A newer agent's kind of message (a planned oneof arm) this gateway
                # does not know yet: skipping it keeps old gateways compatible.
                logger.debug("%s: skipped a message of unknown kind", identity.vehicle_id)

    def _store_batch(
        self,
        store: TenantStore,
        identity: VehicleIdentity,
        catalog_id: int,
        catalog: CatalogMap,
        batch: telemetry_pb2.TelemetryBatch,
    ) -> IngestResult:
        # Runs in a worker thread: decoding a large batch is CPU work the event
        # loop should not wait for either.
        columns = decode_batch(
            batch,
            catalog_id=catalog_id,
            signal_ids=catalog.signal_ids,
            max_samples=self._max_batch_samples,
        )
        return store.ingest(identity.vehicle_id, batch.sequence, columns)


async def _parsed(
    requests: AsyncIterator[telemetry_pb2.VehicleMessage],
) -> AsyncIterator[telemetry_pb2.VehicleMessage]:
    """The stream's messages; bytes that do not parse become ``MalformedMessage``."""
    iterator = aiter(requests)
    while True:
        try:
            message = await anext(iterator)
        except StopAsyncIteration:
            return
        except DecodeError as exc:
            # grpc parses lazily, as the servicer reads: this is where garbage enters.
            raise MalformedMessage(f"malformed message on the stream: {exc}") from exc
        yield message


def _open_session(
    store: TenantStore,
    identity: VehicleIdentity,
    agent_version: str,
    catalog_id: int,
    signals: Sequence[SignalDef],
) -> tuple[CatalogMap, int]:
    """Everything a hello needs from the store, in one worker-thread hop."""
    if not store.is_enrolled(identity.vehicle_id):
        raise UnknownVehicle(
            f"vehicle {identity.vehicle_id!r} is not enrolled in tenant {identity.tenant!r}"
        )
    catalog = store.register_catalog(identity.vehicle_id, agent_version, catalog_id, signals)
    return catalog, store.last_sequence(identity.vehicle_id)


def _error(code: grpc.StatusCode, reason: str, sequence: int) -> telemetry_pb2.CloudMessage:
    # StatusCode values are (int, name) pairs; the int is the google.rpc.Code.
    number: int = code.value[0]
    return telemetry_pb2.CloudMessage(
        error=telemetry_pb2.Error(code=number, reason=reason, sequence=sequence)
    )
