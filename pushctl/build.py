"""From command-line arguments to a validated job (pure, no I/O but reading `--xml`).

The CLI builds the same JSON an operator would enqueue by hand and validates it with
`shared.jobs.parse_job`, the parser `send_push` uses, so a job the CLI accepts is a job the
service accepts, and a bad one is a usage error here rather than a failed job record there.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pushctl.errors import usage
from shared.errors import ValidationError
from shared.jobs import Job, Target, parse_job, parse_target

# Contract section 2: at most 64 of A-Z a-z 0-9 . _ - (also what `status`/`report` accept).
JOB_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
XML_TYPES = ("toast", "tile", "badge")


@dataclass(frozen=True)
class TargetArgs:
    all: bool = False
    users: Sequence[str] = ()
    devices: Sequence[str] = ()
    tags: str | None = None


@dataclass(frozen=True)
class NotificationArgs:
    toast: Sequence[str] = ()
    launch: str | None = None
    xml: str | None = None          # the --xml file ('-': stdin), read once the arguments agree
    xml_type: str | None = None     # --type
    raw: str | None = None
    ttl: int | None = None
    cache: bool | None = None
    tag: str | None = None
    priority: int | None = None
    request_status: bool = False


def target_doc(t: TargetArgs) -> dict[str, object]:
    """The job's `target`; refuses an empty or ambiguous one (nothing is broadcast by accident)."""
    narrowing = bool(t.users) or bool(t.devices) or t.tags is not None
    if t.all:
        if narrowing:
            raise usage("--all reaches every registration and cannot be combined with --user, --device or --tags")
        return {"all": True}
    if not narrowing:
        raise usage("give a target: --all, or any of --user, --device, --tags (they combine with AND)")
    doc: dict[str, object] = {}
    if t.users:
        doc["users"] = list(t.users)
    if t.devices:
        doc["devices"] = list(t.devices)
    if t.tags is not None:
        doc["tags"] = t.tags
    return doc


def notification_doc(n: NotificationArgs) -> dict[str, object]:
    """The job's `notification`: exactly one of --toast, --xml, --raw, plus the options."""
    given = [name for name, present in (("--toast", bool(n.toast)), ("--xml", n.xml is not None),
                                        ("--raw", n.raw is not None)) if present]
    if not given:
        raise usage("give the notification: --toast TEXT..., --xml FILE (with --type) or --raw TEXT")
    if len(given) > 1:
        raise usage(f"give only one of --toast, --xml, --raw (got {' and '.join(given)})")
    if n.launch is not None and not n.toast:
        raise usage("--launch goes with --toast (in your own XML, set the launch attribute)")
    if n.xml_type is not None and n.xml is None:
        raise usage("--type goes with --xml (--toast is a toast, --raw a raw notification)")
    doc: dict[str, object]
    if n.toast:
        doc = {"type": "toast", "text": list(n.toast)}
        if n.launch is not None:
            doc["launch"] = n.launch
    elif n.xml is not None:
        kind = n.xml_type or "toast"
        if kind not in XML_TYPES:
            raise usage(f"--type must be one of {', '.join(XML_TYPES)} (use --raw for raw notifications)")
        doc = {"type": kind, "payload": read_xml(n.xml)}
    else:
        doc = {"type": "raw", "payload": n.raw}
    for key, value in (("ttl", n.ttl), ("cache", n.cache), ("tag", n.tag), ("priority", n.priority)):
        if value is not None:
            doc[key] = value
    if n.request_status:
        doc["requestStatus"] = True
    return doc


def job_doc(job_id: str | None, target: TargetArgs, notification: NotificationArgs) -> dict[str, object]:
    doc: dict[str, object] = {}
    if job_id is not None:
        doc["jobId"] = job_id
    doc["target"] = target_doc(target)
    doc["notification"] = notification_doc(notification)
    return doc


def build_job(job_id: str | None, target: TargetArgs, notification: NotificationArgs) -> Job:
    """The validated job; without `job_id` the parser generates one (as the service would)."""
    doc = job_doc(job_id, target, notification)
    try:
        return parse_job(json.dumps(doc))
    except ValidationError as exc:
        raise usage(f"invalid job ({exc.code}): {exc.message}") from None


def listing_target(user: str | None, device: str | None, tags: str | None) -> Target:
    """The selection of `pushctl channels`: at most one filter, or every registration."""
    given = [t for t in (user, device, tags) if t is not None]
    if len(given) > 1:
        raise usage("give at most one of --user, --device, --tags")
    doc: dict[str, object] = {"all": True}
    if user is not None:
        doc = {"users": [user]}
    elif device is not None:
        doc = {"devices": [device]}
    elif tags is not None:
        doc = {"tags": tags}
    try:
        return parse_target(doc)
    except ValidationError as exc:
        raise usage(f"invalid filter ({exc.code}): {exc.message}") from None


def check_job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id):
        raise usage(f"{job_id!r} is not a job id (1 to 64 of A-Z a-z 0-9 . _ -)")
    return job_id


def read_xml(path: str) -> str:
    """The `--xml` file as text (`-` reads stdin); a byte-order mark and outer blanks dropped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise usage(f"cannot read --xml {path}: {exc}") from None
    return text.removeprefix("\ufeff").strip()


def expand_toast(args: Sequence[str]) -> list[str]:
    """`--toast TITLE LINE...` as repeated `--toast` options (click options take one value each).

    Lines run until the next token that starts with `-`; a line that itself starts with `-` can be
    given as `--toast=-text`. Nothing after a bare `--` is touched.
    """
    out: list[str] = []
    i, n = 0, len(args)
    while i < n:
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        out.append(arg)
        i += 1
        if arg == "--toast" and i < n:
            out.append(args[i])  # the first line, whatever it looks like (as click would take it)
            i += 1
        elif not arg.startswith("--toast="):
            continue
        while i < n and not args[i].startswith("-"):
            out.extend(["--toast", args[i]])
            i += 1
    return out


__all__ = [
    "JOB_ID",
    "NotificationArgs",
    "TargetArgs",
    "build_job",
    "check_job_id",
    "expand_toast",
    "job_doc",
    "listing_target",
    "notification_doc",
    "read_xml",
    "target_doc",
]
