"""The registration: one app install, its current channel, its user and its tags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.clock import iso


@dataclass(frozen=True)
class Registration:
    device_id: str
    channel_uri: str
    user_id: str | None
    tags: tuple[str, ...]
    registered_at: datetime
    expires_at: datetime
    # A fresh id per write: index entries carry it, so a reader or the prune can tell an
    # entry of the current write from a leftover of an earlier one.
    version: str

    def to_json(self) -> dict[str, object]:
        """The API shape (contract section 1)."""
        return {
            "deviceId": self.device_id,
            "userId": self.user_id,
            "channelUri": self.channel_uri,
            "tags": list(self.tags),
            "registeredAt": iso(self.registered_at),
            "expiresAt": iso(self.expires_at),
        }
