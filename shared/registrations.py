"""The registration API's rules (contract section 1), independent of the HTTP binding.

`register_channel/__init__.py` turns the request into these calls and their results into
responses; everything that decides anything is here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.channels import ChannelStore, Owner, PutResult
from shared.errors import ValidationError
from shared.models import Registration
from shared.settings import Settings
from shared.validation import MAX_BODY_BYTES, validate_channel_uri, validate_tags

PRINCIPAL_HEADER = "x-ms-client-principal-id"
_MAX_PRINCIPAL = 256


def caller_from_headers(headers: Mapping[str, str], settings: Settings) -> Owner:
    """The signed-in user, only ever from the platform's header, and only under PUSH_AUTH=platform.

    App Service Authentication strips any client-sent `X-MS-CLIENT-PRINCIPAL-*` header and sets
    its own, so under `platform` the header is trustworthy; under `none` nothing guarantees
    that, so identity headers are ignored and every caller is anonymous."""
    user: str | None = None
    if settings.push_auth == "platform":
        raw = next((v for k, v in headers.items() if k.lower() == PRINCIPAL_HEADER), "").strip()
        if raw:
            if len(raw) > _MAX_PRINCIPAL or not raw.isprintable():
                raise ValidationError("invalid_principal", "the platform's principal id is not usable", 401)
            user = raw
    if user is None and settings.push_require_user:
        raise ValidationError(
            "authentication_required", "sign in first: this service accepts registrations of signed-in users only",
            401,
        )
    return Owner(user)


def parse_put_body(body: bytes, settings: Settings) -> tuple[str, tuple[str, ...]]:
    if len(body) > MAX_BODY_BYTES:
        raise ValidationError("body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes", 413)
    try:
        data: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting exhausts the parser
        raise ValidationError(
            "invalid_json", 'the body must be a JSON object like {"channelUri": "https://...", "tags": []}'
        ) from None
    if not isinstance(data, dict):
        raise ValidationError("invalid_json", "the body must be a JSON object")
    if "userId" in data:
        raise ValidationError(
            "user_in_body", "userId comes from the signed-in user, never from the body: remove it"
        )
    if "channelUri" not in data:
        raise ValidationError("missing_channel_uri", "channelUri is required")
    uri = validate_channel_uri(data["channelUri"], settings.wns_channel_hosts)
    tags = validate_tags(data.get("tags"))
    return uri, tags


async def register(store: ChannelStore, device_id: str, caller: Owner, body: bytes,
                   settings: Settings) -> PutResult:
    uri, tags = parse_put_body(body, settings)
    # One install, one registration: the caller's identity replaces the previous user's.
    return await store.put(device_id, uri, caller.user_id, tags)


async def lookup(store: ChannelStore, device_id: str, caller: Owner) -> Registration:
    reg = await store.get(device_id)
    if reg is None or not caller.may_access(reg):
        # Another user's install answers exactly like a missing one: ids are not disclosed.
        raise ValidationError("not_found", "no registration for this deviceId", 404)
    return reg


async def unregister(store: ChannelStore, device_id: str, caller: Owner) -> None:
    # Sign-out must be safe to repeat, so nothing to delete is success too; another user's
    # install is left alone and answered the same way.
    await store.delete(device_id, caller)
