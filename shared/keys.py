"""Encoding arbitrary strings into Azure Table PartitionKey/RowKey values.

Table keys forbid `/ \\ # ?` and control characters, and `%` and `'` are known to break some
operations and URL forms (learn.microsoft.com: "Understanding the Table service data model").
User ids come from identity providers and may hold any of them, and tags may hold `#`. So every
character outside a conservative safe set is written as `~XX` (UTF-8 bytes in hex); the encoding
is injective (`~` itself is escaped), keeps ASCII ids readable, and sorts prefixes together.
Very long values are replaced by a hash so a key never exceeds the 1 KiB limit.
"""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"[A-Za-z0-9_.:@-]")
_MAX_ENCODED = 400


def encode_key(value: str) -> str:
    out = []
    for ch in value:
        if _SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.append("".join(f"~{b:02X}" for b in ch.encode("utf-8")))
    encoded = "".join(out)
    if len(encoded) > _MAX_ENCODED:
        # `~H` cannot come out of the escaping above (escapes are `~` + two hex digits).
        return "~H" + hashlib.sha256(value.encode("utf-8")).hexdigest()
    return encoded
