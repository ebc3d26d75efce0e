"""Push jobs (contract section 2): parsing and validating the queue message, with no I/O.

A job is UTF-8 JSON:

    {"jobId": "spring-sale", "target": {"users": ["alice"]}, "notification": {"type": "toast", ...}}

The target is where mistakes are expensive, so it is read strictly: `{"all": true}` is the only
way to reach everyone and must stand alone; anything empty, unknown, duplicated or ambiguous is
refused, so nothing is ever broadcast by accident.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared import tagexpr
from shared.errors import ValidationError
from shared.notification import Notification, parse_notification

# Azure queue messages are at most 64 KiB; anything larger did not come from the queue.
MAX_JOB_BYTES = 64 * 1024
MAX_USER_ID = 256

_JOB_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_JOB_FIELDS = frozenset({"jobId", "target", "notification"})
_TARGET_FIELDS = frozenset({"all", "users", "devices", "tags"})
# For `peek_job_id` on text that is not even JSON.
_JOB_ID_IN_TEXT = re.compile(r'"jobId"\s*:\s*"([A-Za-z0-9._-]{1,64})"')


@dataclass(frozen=True)
class Target:
    """Which registrations a job reaches; every given selector must match (AND)."""

    all: bool = False
    users: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    tags: str | None = None
    # The parsed `tags`, derived (so not compared): built once here and reused for every match.
    expression: tagexpr.Expr | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.tags is not None and self.expression is None:
            object.__setattr__(self, "expression", tagexpr.parse(self.tags))

    def to_json(self) -> dict[str, object]:
        if self.all:
            return {"all": True}
        out: dict[str, object] = {}
        if self.users is not None:
            out["users"] = list(self.users)
        if self.devices is not None:
            out["devices"] = list(self.devices)
        if self.tags is not None:
            out["tags"] = self.tags
        return out


@dataclass(frozen=True)
class Job:
    job_id: str
    target: Target
    notification: Notification

    def to_json(self) -> dict[str, object]:
        """The message form: `parse_job(json.dumps(job.to_json())) == job`."""
        return {
            "jobId": self.job_id,
            "target": self.target.to_json(),
            "notification": self.notification.to_json(),
        }

    def to_message(self) -> str:
        """Compact JSON text, ready for the queue."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; with `target` that could turn a narrow job into
    # a broadcast that the operator never saw, so duplicates are an error.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValidationError("invalid_json", f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValidationError("invalid_json", f"{name} is not valid JSON")


def _loads(raw: bytes | str) -> Any:
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        if len(data) > MAX_JOB_BYTES:
            raise ValidationError("job_too_large", f"a job must be at most {MAX_JOB_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError("invalid_json", f"the job is not UTF-8 (byte {exc.start})") from None
    elif isinstance(raw, str):
        text = raw
        if len(text) > MAX_JOB_BYTES:
            raise ValidationError("job_too_large", f"a job must be at most {MAX_JOB_BYTES} bytes")
    else:
        raise ValidationError("invalid_json", "the job must be JSON text")
    text = text.removeprefix("\ufeff")  # some tools write a byte-order mark
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            "invalid_json", f"the job is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        # Deeply nested arrays exhaust json's recursion; that is malformed input, not a crash.
        raise ValidationError("invalid_json", "the job nests too deeply") from None


def parse_job(raw: bytes | str) -> Job:
    """Parse and validate a job message, or raise `ValidationError` with a stable code."""
    doc = _loads(raw)
    if not isinstance(doc, dict):
        raise ValidationError("invalid_json", "a job must be a JSON object")
    unknown = sorted(set(doc) - _JOB_FIELDS)
    if unknown:
        raise ValidationError(
            "invalid_job", f"unknown job field {unknown[0]!r} (expected jobId, target, notification)"
        )
    job_id = _job_id(doc.get("jobId"), "jobId" in doc)
    if "target" not in doc:
        raise ValidationError("invalid_target", "target is required; use {\"all\": true} to reach everyone")
    target = parse_target(doc["target"])
    if "notification" not in doc:
        raise ValidationError("invalid_notification", "notification is required")
    notification = parse_notification(doc["notification"])
    return Job(job_id=job_id, target=target, notification=notification)


def _job_id(value: object, given: bool) -> str:
    if not given:
        return uuid.uuid4().hex
    if not isinstance(value, str) or not _JOB_ID.fullmatch(value):
        raise ValidationError("invalid_job_id", "jobId must be 1 to 64 characters of A-Z a-z 0-9 . _ -")
    return value


def _bad_target(message: str) -> ValidationError:
    return ValidationError("invalid_target", message)


def parse_target(raw: object) -> Target:
    """Validate a job's `target` object (contract section 2)."""
    if not isinstance(raw, dict):
        raise _bad_target("target must be a JSON object")
    if not raw:
        raise _bad_target('target is empty; give users, devices or tags, or {"all": true} to reach everyone')
    unknown = sorted(set(raw) - _TARGET_FIELDS)
    if unknown:
        raise _bad_target(f"unknown target field {unknown[0]!r} (expected all, users, devices, tags)")
    if "all" in raw:
        if raw["all"] is not True:
            raise _bad_target('"all" may only be true; to select fewer registrations give users, devices or tags')
        if len(raw) > 1:
            raise _bad_target('{"all": true} reaches everyone and must be the only field of the target')
        return Target(all=True)
    users = _users(raw["users"]) if "users" in raw else None
    devices = _devices(raw["devices"]) if "devices" in raw else None
    tags = None
    expression = None
    if "tags" in raw:
        tags = raw["tags"]
        if not isinstance(tags, str):
            raise ValidationError("invalid_tag_expression", "tags must be a string such as \"news && !muted\"")
        expression = tagexpr.parse(tags)
    return Target(users=users, devices=devices, tags=tags, expression=expression)


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _users(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _bad_target("users must be a non-empty list of user ids")
    for user in value:
        if not isinstance(user, str) or not 1 <= len(user) <= MAX_USER_ID:
            raise _bad_target(f"each user id must be a string of 1 to {MAX_USER_ID} characters")
        try:
            user.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_target("a user id is not valid Unicode text") from None
    return _unique(value)


def _devices(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _bad_target("devices must be a non-empty list of deviceIds")
    for device in value:
        if not isinstance(device, str) or not _DEVICE_ID.fullmatch(device):
            raise _bad_target("each deviceId must be 16 to 64 characters of A-Z a-z 0-9 - _")
    return _unique(value)


def peek_job_id(raw: bytes | str) -> str | None:
    """The job's id if one can be made out, however malformed the rest is; never raises.

    Lets the caller record a rejected job under the id the operator chose (and will ask about).
    """
    try:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        text = text[:MAX_JOB_BYTES]
        try:
            doc = json.loads(text.removeprefix("\ufeff"))
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            value = doc.get("jobId")
            return value if isinstance(value, str) and _JOB_ID.fullmatch(value) else None
        if doc is None:
            match = _JOB_ID_IN_TEXT.search(text)
            return match.group(1) if match else None
        return None
    except Exception:  # a best-effort helper for error paths must not raise itself
        return None


__all__ = ["MAX_JOB_BYTES", "Job", "Target", "parse_job", "parse_target", "peek_job_id"]
