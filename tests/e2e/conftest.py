"""End-to-end fixtures: a private Azurite per module, so `{"all": true}` sees only its own data."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.azurite import running_azurite


@pytest.fixture(scope="module")
def private_azurite() -> Iterator[str]:
    saved = os.environ.pop("AZURITE_CONNECTION", None)
    try:
        with running_azurite() as conn:
            yield conn
    finally:
        if saved is not None:
            os.environ["AZURITE_CONNECTION"] = saved
