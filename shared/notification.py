"""What is sent to each channel: the notification of a job, its validation and its WNS headers.

Follows Microsoft's "Push notification service request and response headers" page
(learn.microsoft.com/windows/apps/develop/notifications/push-notifications/push-request-response-headers):
toast, tile and badge payloads are XML whose root names the type, raw payloads are opaque bytes,
and every payload is at most 5,000 bytes. The Windows Phone headers (`X-WNS-SuppressPopup`,
`X-WNS-Group`, `X-WNS-Match`) are never produced: on a Windows channel WNS drops the notification.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

# No stubs are published for defusedxml; its two names used here are checked by the tests.
import defusedxml  # type: ignore[import-untyped]
import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]

from shared.errors import ValidationError

NotificationType = Literal["toast", "tile", "badge", "raw"]
TYPES: tuple[NotificationType, ...] = ("toast", "tile", "badge", "raw")

MAX_PAYLOAD_BYTES = 5000
MAX_TOAST_LINES = 4
MAX_TTL = 2**31 - 1
MAX_WNS_TAG = 16

_FIELDS = frozenset({"type", "payload", "text", "launch", "ttl", "cache", "tag", "priority", "requestStatus"})
# Characters XML 1.0 cannot carry even escaped; refusing them here gives a clearer message
# than the parser's "not well-formed".
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# `X-WNS-Tag` travels as a header value: printable ASCII without spaces keeps it verbatim.
_WNS_TAG = re.compile(r"[!-~]{1,16}")
_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
_XML_ESCAPE = re.compile("[&<>\"']")


@dataclass(frozen=True)
class Notification:
    """A validated notification; `payload` is the exact body sent (UTF-8 for XML and raw text)."""

    type: NotificationType
    payload: bytes
    ttl: int | None = None
    cache: bool | None = None
    tag: str | None = None
    priority: int | None = None
    request_status: bool = False

    def to_json(self) -> dict[str, object]:
        """The job-message form; `parse_notification(n.to_json()) == n`."""
        out: dict[str, object] = {"type": self.type, "payload": self.payload.decode("utf-8")}
        if self.ttl is not None:
            out["ttl"] = self.ttl
        if self.cache is not None:
            out["cache"] = self.cache
        if self.tag is not None:
            out["tag"] = self.tag
        if self.priority is not None:
            out["priority"] = self.priority
        if self.request_status:
            out["requestStatus"] = True
        return out


def _invalid(message: str) -> ValidationError:
    return ValidationError("invalid_notification", message)


def xml_escape(text: str) -> str:
    """Escape for both element text and attribute values (all five XML specials)."""
    return _XML_ESCAPE.sub(lambda m: _XML_ESCAPES[m.group()], text)


def build_toast_xml(text: Sequence[str], launch: str | None = None) -> str:
    """The ToastGeneric toast for 1 to 4 lines (title first), every value escaped."""
    launch_attr = f' launch="{xml_escape(launch)}"' if launch is not None else ""
    lines = "".join(f"<text>{xml_escape(line)}</text>" for line in text)
    return (
        f'<toast{launch_attr}><visual><binding template="ToastGeneric">{lines}'
        "</binding></visual></toast>"
    )


def check_xml(payload: bytes, root: str) -> None:
    """Raise `invalid_xml` unless `payload` is well-formed XML whose root element is `root`.

    defusedxml refuses DTDs, entity declarations and external references, so a payload can
    neither expand (billion laughs) nor make the parser read files or URLs (XXE).
    """
    try:
        element = SafeET.fromstring(payload, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException:
        raise ValidationError(
            "invalid_xml", "the payload must not contain a DTD, entity declarations or external references"
        ) from None
    except SafeET.ParseError as exc:
        raise ValidationError("invalid_xml", f"the payload is not well-formed XML: {exc}") from None
    if element.tag != root:
        raise ValidationError(
            "invalid_xml", f"a {root} payload must have a <{root}> root element, not <{element.tag}>"
        )


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # JSON can carry lone surrogates ("\ud800"), which no UTF-8 body can.
        raise _invalid(f"{what} is not valid Unicode text") from None


def _optional_int(raw: Mapping[str, object], name: str, low: int, high: int) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    # bool is an int subclass in Python, but `true` is never a meaningful number of seconds.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _invalid(f"{name} must be a whole number from {low} to {high}")
    return value


def _optional_bool(raw: Mapping[str, object], name: str) -> bool | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _invalid(f"{name} must be true or false")
    return value


def parse_notification(raw: object) -> Notification:
    """Validate the `notification` object of a job (contract section 2)."""
    if not isinstance(raw, dict):
        raise _invalid("notification must be a JSON object")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise _invalid(f"unknown notification field {unknown[0]!r}")
    kind = raw.get("type")
    if kind not in TYPES:
        raise _invalid("notification.type must be one of toast, tile, badge, raw")
    ntype = cast(NotificationType, kind)

    if "text" in raw or "launch" in raw:
        if ntype != "toast":
            raise _invalid("text and launch are only for toast notifications")
        if "payload" in raw:
            raise _invalid("give either payload or text, not both")
        payload = _toast_from_text(raw.get("text"), raw.get("launch"))
    else:
        text = raw.get("payload")
        if not isinstance(text, str) or not text:
            raise _invalid("payload must be a non-empty string" + (" of XML" if ntype != "raw" else ""))
        payload = _utf8(text, "payload")

    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            "payload_too_large",
            f"the payload is {len(payload)} bytes in UTF-8; WNS accepts at most {MAX_PAYLOAD_BYTES}",
        )
    if ntype != "raw":
        check_xml(payload, ntype)

    cache = _optional_bool(raw, "cache")
    if cache is not None and ntype == "toast":
        raise _invalid("cache is not available for toast notifications (WNS ignores it there)")
    tag = raw.get("tag")
    if tag is not None:
        if ntype != "tile":
            raise _invalid("tag is only for tile notifications")
        if not isinstance(tag, str) or not _WNS_TAG.fullmatch(tag):
            raise _invalid(f"tag must be 1 to {MAX_WNS_TAG} printable ASCII characters without spaces")
    request_status = _optional_bool(raw, "requestStatus")
    return Notification(
        type=ntype,
        payload=payload,
        ttl=_optional_int(raw, "ttl", 1, MAX_TTL),
        cache=cache,
        tag=tag,
        priority=_optional_int(raw, "priority", 1, 4),
        request_status=bool(request_status),
    )


def _toast_from_text(text: object, launch: object) -> bytes:
    if (
        not isinstance(text, list)
        or not 1 <= len(text) <= MAX_TOAST_LINES
        or not all(isinstance(line, str) and line for line in text)
    ):
        raise _invalid(f"text must be a list of 1 to {MAX_TOAST_LINES} non-empty strings (title first)")
    if launch is not None and not isinstance(launch, str):
        raise _invalid("launch must be a string")
    for value in [*text, launch or ""]:
        if _XML_FORBIDDEN.search(value):
            raise _invalid("text and launch must not contain control characters")
    return _utf8(build_toast_xml(text, launch), "text")


_CONTENT_TYPES: dict[str, str] = {
    "toast": "text/xml",
    "tile": "text/xml",
    "badge": "text/xml",
    "raw": "application/octet-stream",
}


def wns_headers(notification: Notification) -> dict[str, str]:
    """The WNS request headers that describe `notification` (a new dict; callers may add to it).

    Authorization, Content-Length and MS-CV belong to each request and are added by the sender.
    """
    n = notification
    headers = {"X-WNS-Type": f"wns/{n.type}", "Content-Type": _CONTENT_TYPES[n.type]}
    if n.ttl is not None:
        headers["X-WNS-TTL"] = str(n.ttl)
    # The cache policy and the tag mean nothing on a toast; sending them anyway risks a 400.
    if n.cache is not None and n.type != "toast":
        headers["X-WNS-Cache-Policy"] = "cache" if n.cache else "no-cache"
    if n.tag is not None and n.type == "tile":
        headers["X-WNS-Tag"] = n.tag
    if n.priority is not None:
        headers["X-WNS-PRIORITY"] = str(n.priority)
    if n.request_status:
        headers["X-WNS-RequestForStatus"] = "true"
    return headers


__all__ = [
    "MAX_PAYLOAD_BYTES",
    "TYPES",
    "Notification",
    "NotificationType",
    "build_toast_xml",
    "check_xml",
    "parse_notification",
    "wns_headers",
    "xml_escape",
]
