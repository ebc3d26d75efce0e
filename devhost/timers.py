"""Timer trigger: runs a function on its NCRONTAB schedule (UTC, as in Azure by default).

Like the host, a timer never overlaps itself, computes the next occurrence from the end of the last
run, and flags `past_due` when it fires noticeably late (the machine slept, the loop was blocked).

https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest

from devhost.invoke import InvocationResult, Invoker, LoadedFunction
from devhost.ncrontab import CronSchedule

log = logging.getLogger("devhost")

PAST_DUE_AFTER = timedelta(seconds=5)
# Sleep in slices so a wall-clock jump (suspend, clock change) is noticed within this long.
_MAX_SLEEP_SECONDS = 30.0


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


class TimerRunner:
    def __init__(self, fn: LoadedFunction, invoker: Invoker,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.fn = fn
        trigger = fn.spec.trigger
        self.schedule = CronSchedule.parse(trigger.get_str("schedule"))
        self.run_on_startup = trigger.props.get("runOnStartup") is True
        self._invoker = invoker
        self._clock = clock
        self._lock = asyncio.Lock()  # the host's singleton lock: one run of a timer at a time
        self._last: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"timer-{self.fn.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run_now(self, *, past_due: bool = False, detail: str = "") -> InvocationResult:
        async with self._lock:
            now = self._clock()
            request = TimerRequest(
                past_due=past_due,
                schedule_status={
                    "Last": _iso(self._last),
                    "Next": _iso(self.schedule.next_after(now)),
                    "LastUpdated": _iso(now),
                },
                schedule={"AdjustForDST": True},
            )
            result = await self._invoker.invoke(self.fn, request, detail=detail)
            self._last = now
            return result

    async def _loop(self) -> None:
        if self.run_on_startup:
            await self.run_now(detail="reason=runOnStartup")
        anchor = self._clock()
        while True:
            due = self.schedule.next_after(anchor)
            while True:
                remaining = (due - self._clock()).total_seconds()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(remaining, _MAX_SLEEP_SECONDS))
            late = self._clock() - due
            await self.run_now(past_due=late > PAST_DUE_AFTER, detail=f"scheduled={due.isoformat()}")
            # max(): never fire twice for one occurrence, even if the clock stepped back.
            anchor = max(due, self._clock())


__all__ = ["PAST_DUE_AFTER", "TimerRunner"]
