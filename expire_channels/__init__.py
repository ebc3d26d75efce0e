"""Timer: delete registrations not refreshed for CHANNEL_TTL_DAYS (contract section 3).

Runs on `%EXPIRE_SCHEDULE%` (NCRONTAB, daily by default). Thin by design: the prune, its work
bound and its log line live in `shared.expiry`. Storage faults propagate: the host records the
failed run, and the next scheduled run continues where this one stopped (every step is
idempotent).
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import expiry, runtime
from shared.settings import get_settings

log = logging.getLogger(__name__)


async def main(timer: func.TimerRequest) -> None:
    if timer.past_due:
        # The host missed the scheduled time (app stopped or scaled to zero); running late is
        # harmless since the prune takes every day that is due, not just today's.
        log.info("expire_channels: the timer is past due; pruning now")
    settings = get_settings()
    await expiry.prune(runtime.channel_store(settings), now=runtime.clock().now())
