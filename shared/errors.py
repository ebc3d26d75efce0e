"""The package's exception tree, in one place (the shape httpx and azure-core use).

Storage adapters map service errors to these once, so callers never see SDK exceptions.
"""

from __future__ import annotations


class PushError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(PushError):
    """A setting is missing or invalid; names the setting so the operator knows what to fix."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"setting {setting} {problem}")
        self.setting = setting


class ValidationError(PushError):
    """Input from a caller is invalid; `code` is stable and snake_case, `message` says what to fix,
    `status` is the HTTP status an API answers with (always a 4xx)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class StorageError(PushError):
    """Base of storage failures."""


class StorageUnavailable(StorageError):
    """Storage could not be reached or answered with a server fault: retry later."""


class ConcurrencyConflict(StorageError):
    """An optimistic-concurrency write lost a race (ETag mismatch or entity already exists)."""
