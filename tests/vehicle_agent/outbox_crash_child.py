"""Put batches into an outbox until killed; the crash test in test_outbox runs this.

Prints ``put <sequence> <position>`` after each put returns and ``ack <sequence>``
after each ack returns, flushing each line, so the parent knows what the outbox
promised before the kill. Batch contents are a function of the position alone.
"""

from __future__ import annotations

import asyncio
import sys
from array import array
from pathlib import Path

from vehicle_agent.batching import Batch
from vehicle_agent.outbox import Outbox


def batch_for(position: int) -> Batch:
    n = 50 + position % 50
    return Batch(
        catalog_id=3,
        signal_index=array("I", [(position + i) % 17 for i in range(n)]),
        timestamp_us=array("q", [position * 1_000 + i for i in range(n)]),
        value=array("d", [position + i / 8 for i in range(n)]),
        priority=position % 3,
        position=position,
    )


async def run(path: Path) -> None:
    with Outbox(path, max_bytes=1 << 30) as outbox:
        position = outbox.resume_position() + 1
        while True:
            sequence = await outbox.put(batch_for(position))
            print(f"put {sequence} {position}", flush=True)
            if position % 3 == 0:
                await outbox.ack(sequence)
                print(f"ack {sequence}", flush=True)
            position += 1


if __name__ == "__main__":
    asyncio.run(run(Path(sys.argv[1])))
