"""Idempotent consumers: drop a message whose id was handled already.

The bus delivers at least once, so a handler may see a message again: its
ack was lost, its process died after the work, or the publisher retried
after the duplicate window. ``Idempotent`` remembers the ids of the last
``capacity`` messages it handled (least recently seen forgotten first, so
memory stays bounded) and drops a repeat, counting it. An id is remembered
only after the handler succeeded, so a failed attempt is retried.

The memory is this process's: work shared between processes needs the
handler's own check as well (a unique key in the database it writes).
"""

from __future__ import annotations

from collections import OrderedDict

from cloud.events.bus import Delivery, Handler

__all__ = ["Idempotent"]


class Idempotent:
    """A handler wrapper that handles each (subject, message id) once."""

    def __init__(self, handler: Handler, *, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._handler = handler
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        #: Deliveries dropped because their id was handled before.
        self.duplicates = 0
        #: Ids forgotten to keep within ``capacity`` (a repeat of one is handled again).
        self.forgotten = 0

    async def __call__(self, delivery: Delivery) -> None:
        if not delivery.msg_id:
            # Nothing to recognise it by (published without an id): handle it.
            await self._handler(delivery)
            return
        key = (delivery.subject, delivery.msg_id)
        if key in self._seen:
            self._seen.move_to_end(key)
            self.duplicates += 1
            return
        await self._handler(delivery)
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
            self.forgotten += 1
