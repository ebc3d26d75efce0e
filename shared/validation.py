"""Pure validation of what apps send: channel URIs, install ids, tags (contract section 1).

The channel-URI check is a security boundary: the service sends its WNS bearer token to
whatever URI it stores, so only https URIs on an allowed host suffix (with a dot boundary),
with no user-info and the expected port, are accepted. Microsoft asks senders to do exactly this
(windows-dev-docs, push-request-response-headers / wns-overview).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from shared.errors import ValidationError

MAX_CHANNEL_URI = 2048
MAX_TAGS = 60
MAX_BODY_BYTES = 16 * 1024

_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TAG = re.compile(r"[A-Za-z0-9_@#.:-]{1,120}")
# RFC 3986 characters only: anything else (spaces, non-ASCII, controls) means the URI was
# mangled or is an attempt to confuse a parser, and WNS never issues such URIs.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def validate_device_id(device_id: object) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise ValidationError(
            "invalid_device_id",
            "deviceId must be 16 to 64 characters of A-Z a-z 0-9 - _ (a GUID fits)",
        )
    return device_id


def validate_tags(tags: object) -> tuple[str, ...]:
    """Tags as a sorted, de-duplicated tuple (order never matters to targeting)."""
    if tags is None:
        return ()
    if not isinstance(tags, list):
        raise ValidationError("invalid_tags", "tags must be a JSON array of strings")
    if len(tags) > MAX_TAGS:
        raise ValidationError("invalid_tags", f"at most {MAX_TAGS} tags are allowed, got {len(tags)}")
    for tag in tags:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise ValidationError(
                "invalid_tags",
                "each tag must be 1 to 120 characters of A-Z a-z 0-9 _ @ # . : -",
            )
    return tuple(sorted(set(tags)))


def validate_channel_uri(uri: object, allowed_hosts: Sequence[str]) -> str:
    """Return `uri` unchanged (byte for byte) if WNS-shaped and on an allowed host, else raise."""
    if not isinstance(uri, str) or not uri:
        raise ValidationError("invalid_channel_uri", "channelUri must be a non-empty string")
    if len(uri) > MAX_CHANNEL_URI:
        raise ValidationError(
            "invalid_channel_uri", f"channelUri must be at most {MAX_CHANNEL_URI} characters"
        )
    if not _URI_CHARS.fullmatch(uri):
        raise ValidationError(
            "invalid_channel_uri", "channelUri contains characters a WNS channel URI never has"
        )
    # Parsed by hand rather than with urllib.parse: its leniency (backslashes, odd ports,
    # missing slashes) is exactly what host-confusion attacks exploit.
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "https":
        raise ValidationError("invalid_channel_uri", "channelUri must be an https:// URL")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        raise ValidationError("invalid_channel_uri", "channelUri must not contain user info")
    host, port = _split_authority(authority)
    if not host or host.endswith(".") or not all(_HOST_LABEL.fullmatch(p) for p in host.split(".")):
        raise ValidationError("invalid_channel_uri", "channelUri has an invalid host name")
    if not host_allowed(host, port, allowed_hosts):
        raise ValidationError(
            "channel_host_not_allowed",
            "channelUri must point to an allowed WNS host (" + ", ".join(allowed_hosts) + ")",
        )
    return uri


def _split_authority(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        raise ValidationError("invalid_channel_uri", "channelUri must use a host name, not an IP literal")
    host, sep, port_text = authority.partition(":")
    if not sep:
        return host.lower(), None
    if not port_text.isdigit() or not port_text.isascii() or not 0 < int(port_text) < 65536:
        raise ValidationError("invalid_channel_uri", "channelUri has an invalid port")
    return host.lower(), int(port_text)


def host_allowed(host: str, port: int | None, allowed_hosts: Iterable[str]) -> bool:
    """Host equals or is a subdomain of an allowed suffix; the port is 443 unless the entry names one."""
    for entry in allowed_hosts:
        suffix, _, entry_port = entry.partition(":")
        wanted = int(entry_port) if entry_port else 443
        if (port if port is not None else 443) != wanted:
            continue
        if host == suffix or host.endswith("." + suffix):
            return True
    return False
