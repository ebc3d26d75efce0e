"""How results look: rich tables for people, JSON for scripts (pure; the caller prints).

Human output never shows a full channel URI, only its host (`redact_channel`): a channel URI is
an address WNS delivers to, and tables end up in tickets and screenshots. `channels --json` does
include it, for scripts; anyone who can run it can read the same value from storage anyway.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import IO, Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.channels import Recipient
from shared.models import Registration

# Piped output is not wrapped to 80 columns: a table in a file or a pager keeps one row a line.
_PIPE_WIDTH = 500


def console(file: IO[str] | None = None, *, stderr: bool = False) -> Console:
    target = file if file is not None else (sys.stderr if stderr else sys.stdout)
    probe = Console(file=target)
    width = None if probe.is_terminal else _PIPE_WIDTH
    return Console(file=target, width=width, highlight=False, soft_wrap=False)


def channel_host(uri: str) -> str:
    """The host (and a port other than 443) of a channel URI: where it points, not the address."""
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "(invalid)"
    if not host:
        return "(invalid)"
    return f"{host}:{port}" if port else host


def redact_channel(uri: str) -> str:
    """`https://db5p.notify.windows.com/w/?token=...` -> `db5p.notify.windows.com/...`."""
    host = channel_host(uri)
    return host if host == "(invalid)" else f"{host}/..."


def _cell(value: object) -> Text:
    # Text, not a str: user data (tags, errors) must never be read as rich markup.
    if value is None or value == "":
        return Text("-", style="dim")
    if isinstance(value, list | tuple):
        return Text(", ".join(str(v) for v in value)) if value else Text("-", style="dim")
    return Text(str(value))


# ---- send --dry-run -------------------------------------------------------------------------------


def recipient_json(r: Recipient) -> dict[str, Any]:
    """A dry run's sample entry: who, never the channel URI itself."""
    return {"deviceId": r.device_id, "userId": r.user_id, "tags": list(r.tags),
            "channelHost": channel_host(r.channel_uri)}


def dry_run_json(job: dict[str, Any], targeted: int, sample: Iterable[Recipient],
                 existing: dict[str, Any] | None, job_id_given: bool = True) -> dict[str, Any]:
    """`send --dry-run --json`; `jobId` is null unless given (a real send would draw a new one)."""
    return {
        "dryRun": True,
        "jobId": job["jobId"] if job_id_given else None,
        "target": job["target"],
        "type": job["notification"]["type"],
        "targeted": targeted,
        "sample": [recipient_json(r) for r in sample],
        "jobIdTaken": existing is not None,
    }


def sample_table(sample: Iterable[Recipient]) -> Table:
    table = Table("deviceId", "userId", "tags", "channel", title="sample", title_justify="left")
    for r in sample:
        table.add_row(_cell(r.device_id), _cell(r.user_id), _cell(r.tags), _cell(redact_channel(r.channel_uri)))
    return table


# ---- status ---------------------------------------------------------------------------------------


def summary_line(status: dict[str, Any]) -> str:
    return (f"job {status['jobId']} {status['state']}: {status['targeted']} targeted, "
            f"{status['delivered']} delivered, {status['removed']} removed, {status['failed']} failed")


def status_table(status: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    target = status.get("target")
    rows: list[tuple[str, object]] = [
        ("job", status.get("jobId")),
        ("state", status.get("state")),
        ("type", status.get("type")),
        ("target", json.dumps(target, ensure_ascii=False) if target is not None else None),
        ("targeted", status.get("targeted")),
        ("delivered", status.get("delivered")),
        ("removed", status.get("removed")),
        ("failed", status.get("failed")),
        ("pending batches", status.get("pendingBatches")),
        ("created", status.get("createdAt")),
        ("updated", status.get("updatedAt")),
    ]
    if status.get("error"):
        rows.append(("error", status["error"]))
    for name, value in rows:
        table.add_row(name, _cell(value))
    return table


# ---- report ---------------------------------------------------------------------------------------

REPORT_COLUMNS = ("deviceId", "userId", "outcome", "status", "wnsStatus", "msgId", "error")


def report_table(rows: Iterable[dict[str, Any]]) -> Table:
    table = Table(*REPORT_COLUMNS)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in REPORT_COLUMNS))
    return table


# ---- channels -------------------------------------------------------------------------------------


def registration_json(reg: Registration) -> dict[str, Any]:
    """The API's registration shape (`GET /api/channels/{deviceId}`), channel URI included."""
    return reg.to_json()


def channels_table(regs: Iterable[Registration]) -> Table:
    table = Table("deviceId", "userId", "tags", "channel", "registeredAt", "expiresAt")
    for reg in regs:
        table.add_row(_cell(reg.device_id), _cell(reg.user_id), _cell(reg.tags),
                      _cell(redact_channel(reg.channel_uri)), _cell(reg.to_json()["registeredAt"]),
                      _cell(reg.to_json()["expiresAt"]))
    return table


# ---- JSON -----------------------------------------------------------------------------------------


def dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


class JsonArrayWriter:
    """A JSON array written one element per line as results arrive, so a large report or
    listing streams (and stays one valid JSON document for `jq`)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0

    def add(self, obj: object) -> None:
        self.out.write(("[\n" if self.count == 0 else ",\n") + dumps(obj))
        self.count += 1

    def close(self) -> None:
        self.out.write("[]\n" if self.count == 0 else "\n]\n")
        self.out.flush()


__all__ = [
    "REPORT_COLUMNS",
    "JsonArrayWriter",
    "channel_host",
    "channels_table",
    "console",
    "dry_run_json",
    "dumps",
    "recipient_json",
    "redact_channel",
    "registration_json",
    "report_table",
    "sample_table",
    "status_table",
    "summary_line",
]
