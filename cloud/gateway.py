"""The gRPC servicer of ``telehub.v1.TelemetryGateway``: one stream per vehicle.

A stream is authenticated from its ``authorization: Bearer <token>`` metadata,
must start with a Hello naming the token's vehicle, then carries batches,
fault-code reports, health and plan status (see ``cloud.session``). Each
batch is validated and committed to the tenant's store before its Ack is
sent, so an acknowledged batch is never lost; a resent batch is acknowledged
as a duplicate and not stored twice. With a ``CommitNotifier``, each commit is
announced on the event bus before its Ack goes out (see ``cloud.session``).
The cloud pushes the vehicle's plan and consent on the same stream.

The session runs as its own task and hands its replies to the response
stream through a small bounded queue, so reading the vehicle and pushing
control messages go on concurrently while the vehicle's pace bounds both.

Every failure ends the stream with a gRPC status that says why; failures after
authentication first send an ``Error`` message (with the batch's sequence when
one batch is at fault). ``grpc_status`` is the one place that maps the
``CloudError`` tree to status codes. Unexpected exceptions are logged and end
the stream with INTERNAL; they never reach the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from cloud.auth import TokenVerifier
from cloud.control import ControlHub
from cloud.domain import VehicleIdentity
from cloud.errors import (
    AuthError,
    BatchTooLarge,
    CloudError,
    InvalidBatch,
    InvalidHello,
    InvalidReport,
    MalformedMessage,
    NotPermitted,
    ProtocolError,
    StoreError,
    UnknownTenant,
    UnknownVehicle,
)
from cloud.events import CommitNotifier
from cloud.session import VehicleSession
from cloud.store import TenantRegistry
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
    (InvalidReport, grpc.StatusCode.INVALID_ARGUMENT),
    # Nothing was acknowledged: the agent keeps the batch and retries.
    (StoreError, grpc.StatusCode.UNAVAILABLE),
)

_STORE_UNAVAILABLE = "the tenant store is unavailable; retry later"

#: Replies waiting for the vehicle to read them (acks, plans, ...). Small: when
#: the vehicle reads slowly, the session waits instead of piling replies up.
_REPLY_QUEUE = 16


def grpc_status(error: CloudError) -> tuple[grpc.StatusCode, str]:
    """The status code and the reason sent to the vehicle for ``error``."""
    for kind, code in _STATUS:
        if isinstance(error, kind):
            # The database's own message stays in the server log.
            reason = _STORE_UNAVAILABLE if isinstance(error, StoreError) else str(error)
            return code, reason
    return grpc.StatusCode.INTERNAL, "internal error"


@dataclass(frozen=True, slots=True)
class _Ended:
    """The last item of the reply queue: the session is over, with this error or none."""

    error: BaseException | None


class TelemetryGatewayServicer(telemetry_pb2_grpc.TelemetryGatewayServicer):
    """Authenticates vehicles and serves their sessions in their tenant's store."""

    def __init__(
        self,
        registry: TenantRegistry,
        verifier: TokenVerifier,
        *,
        max_batch_samples: int,
        hub: ControlHub | None = None,
        control_poll_seconds: float = 5.0,
        notifier: CommitNotifier | None = None,
    ) -> None:
        self._registry = registry
        self._notifier = notifier
        #: Streams opened on this servicer (authenticated or not).
        self.streams = 0
        self._verifier = verifier
        self._max_batch_samples = max_batch_samples
        self._hub = hub
        self._control_poll_seconds = control_poll_seconds

    async def Connect(
        self,
        request_iterator: AsyncIterator[telemetry_pb2.VehicleMessage],
        context: Context,
    ) -> AsyncIterator[telemetry_pb2.CloudMessage]:
        self.streams += 1
        try:
            identity = self._authenticate(context)
        except AuthError as exc:
            code, reason = grpc_status(exc)
            await context.abort(code, reason)
        replies: asyncio.Queue[telemetry_pb2.CloudMessage | _Ended] = asyncio.Queue(_REPLY_QUEUE)
        session = VehicleSession(
            identity,
            self._registry,
            replies.put,
            hub=self._hub,
            max_batch_samples=self._max_batch_samples,
            control_poll_seconds=self._control_poll_seconds,
            notifier=self._notifier,
        )
        task = asyncio.create_task(
            _run(session, _parsed(request_iterator), replies),
            name=f"session {identity.tenant}/{identity.vehicle_id}",
        )
        try:
            try:
                while not isinstance(item := await replies.get(), _Ended):
                    yield item
            finally:
                # However the call ends (the vehicle vanished, the server stops, the
                # session failed), the session task ends with it.
                task.cancel()
                await asyncio.wait([task])
            if item.error is not None:
                raise item.error
        except asyncio.CancelledError:
            # The vehicle cancelled the call or the server is stopping: the call is
            # over either way and the session task has been stopped above. Ending
            # quietly keeps gRPC from logging the cancellation as an unhandled error.
            return
        except CloudError as exc:
            code, reason = grpc_status(exc)
            # A store failure while a batch was in flight is about that batch too.
            failed = exc.sequence if isinstance(exc, InvalidBatch) else session.in_flight
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
                session.in_flight,
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


async def _run(
    session: VehicleSession,
    requests: AsyncIterator[telemetry_pb2.VehicleMessage],
    replies: asyncio.Queue[telemetry_pb2.CloudMessage | _Ended],
) -> None:
    """Run the session and always end the reply queue with how it ended."""
    error: BaseException | None = None
    try:
        await session.run(requests)
    except Exception as exc:  # handed to Connect, which maps and logs it
        error = exc
    await replies.put(_Ended(error))


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


def _error(code: grpc.StatusCode, reason: str, sequence: int) -> telemetry_pb2.CloudMessage:
    # StatusCode values are (int, name) pairs; the int is the google.rpc.Code.
    number: int = code.value[0]
    return telemetry_pb2.CloudMessage(
        error=telemetry_pb2.Error(code=number, reason=reason, sequence=sequence)
    )
