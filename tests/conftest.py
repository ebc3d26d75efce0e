"""Fixtures shared by every test level.

- `azurite_conn`: a connection string to a real Azurite (one per test session).
- `clean_env`: an environment with only the settings a test gives, and the settings cache reset.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared import settings as settings_mod  # noqa: E402
from tests.support.azurite import running_azurite  # noqa: E402

_SETTING_NAMES = (
    "AzureWebJobsStorage", "WNS_AUTH", "WNS_TENANT_ID", "WNS_CLIENT_ID", "WNS_CLIENT_SECRET",
    "WNS_TOKEN_URL", "WNS_CHANNEL_HOSTS", "CHANNEL_TTL_DAYS", "PUSH_AUTH", "PUSH_REQUIRE_USER",
    "PUSH_JOBS_QUEUE", "EXPIRE_SCHEDULE",
)


@pytest.fixture(scope="session")
def azurite_conn() -> Iterator[str]:
    with running_azurite() as conn:
        yield conn


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in list(os.environ):
        if name in _SETTING_NAMES or name.startswith("AzureWebJobsStorage__"):
            monkeypatch.delenv(name, raising=False)
    settings_mod.reset_settings()
    yield monkeypatch
    settings_mod.reset_settings()


@pytest.fixture
def unique() -> str:
    """A short unique suffix, so tests sharing one Azurite never see each other's data."""
    return uuid.uuid4().hex[:10]
