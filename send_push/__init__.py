"""Queue: operators' push jobs and the service's own batches (contract section 2).

Thin by design: the message goes to `shared.dispatch.Dispatcher`, which validates and records a
job, fans it out into batches, and sends each batch. A malformed job is recorded as failed and
consumed; only storage faults raise, so the host retries the message (then moves it to the
poison queue after `maxDequeueCount`).
"""

from __future__ import annotations

import azure.functions as func

from shared import runtime
from shared.settings import get_settings


async def main(msg: func.QueueMessage) -> None:
    dispatcher = await runtime.dispatcher(get_settings())
    await dispatcher.handle(msg.get_body(), msg.id or "", msg.dequeue_count or 1)
