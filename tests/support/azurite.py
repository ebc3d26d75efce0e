"""Start a real Azurite for the tests (from `node_modules`, installed by `npm ci`), or reuse one.

`AZURITE_CONNECTION` names a running one (CI and `bin/test` start it once for the whole run);
otherwise a private in-memory Azurite is started on free ports and stopped at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.settings import azurite_connection_string

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextmanager
def running_azurite() -> Iterator[str]:
    """Yield a connection string to a running Azurite (blob, queue and table)."""
    existing = os.environ.get("AZURITE_CONNECTION")
    if existing:
        yield existing
        return
    if not AZURITE_BIN.exists():
        raise RuntimeError("Azurite is not installed: run `npm ci` in the repository root")
    blob, queue, table = free_port(), free_port(), free_port()
    # In memory, with its debug/extent files in a throw-away folder (the cwd otherwise).
    workdir = tempfile.mkdtemp(prefix="azurite-")
    proc = subprocess.Popen(
        [
            str(AZURITE_BIN), "--inMemoryPersistence", "--silent", "--skipApiVersionCheck", "--loose",
            "--disableTelemetry",
            "--blobPort", str(blob), "--queuePort", str(queue), "--tablePort", str(table),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for port in (blob, queue, table):
            wait_for_port(port)
        yield azurite_connection_string(table_port=table, queue_port=queue, blob_port=blob)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
