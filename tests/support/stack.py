"""The running stack an end-to-end test drives: devhost, its Azurite and the fake WNS."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from azure.storage.queue.aio import QueueClient

from devhost import DevHost
from devhost.fakewns import FakeWns
from shared import runtime

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@dataclass
class Stack:
    host: DevHost
    fake: FakeWns
    conn: str
    http: aiohttp.ClientSession

    async def put(self, device: str, channel: str, tags: list[str], user: str | None = None) -> int:
        headers = {"X-MS-CLIENT-PRINCIPAL-ID": user} if user else {}
        body = {"channelUri": self.fake.channel_uri(channel), "tags": tags}
        async with self.http.put(f"{self.host.url}/api/channels/{device}", json=body, headers=headers) as r:
            return r.status

    async def enqueue(self, job: dict[str, object]) -> None:
        async with QueueClient.from_connection_string(self.conn, "push-jobs") as q:
            await q.send_message(json.dumps(job))

    async def status(self, job_id: str, wait_s: float = 30) -> dict[str, Any]:
        store = runtime.job_store()
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            st = await store.status(job_id)
            if st is not None and st["state"] in ("completed", "failed"):
                return st
            assert asyncio.get_running_loop().time() < deadline, f"job {job_id} not done: {st}"
            await asyncio.sleep(0.1)

    def got(self) -> dict[str, int]:
        """Notifications WNS accepted, per channel."""
        out: dict[str, int] = {}
        for r in self.fake.received:
            if r.status == 200:
                out[r.channel_id] = out.get(r.channel_id, 0) + 1
        return out

    async def pushctl(self, *args: str, env: dict[str, str] | None = None) -> Run:
        """`python -m pushctl ...` as an operator runs it, without blocking the loop devhost serves on."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pushctl", *args, "--connection", self.conn, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise AssertionError(f"pushctl {args} did not finish: {err.decode()}") from None
        assert proc.returncode is not None
        return Run(proc.returncode, out.decode(), err.decode())
