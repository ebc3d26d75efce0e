"""End-to-end fixtures: a private Azurite per module (so `{"all": true}` sees only its own data)
and `stack`: devhost in-process on it, with the app's WNS traffic going over TLS to a fake WNS
whose throw-away CA the app trusts through `SSL_CERT_FILE`, as the contract says."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from azure.data.tables.aio import TableServiceClient

from devhost import DevHost
from devhost.fakewns import FakeWns
from shared import runtime, wns
from shared.settings import reset_settings
from tests.support.azurite import running_azurite
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("channels", "channelindex", "pushjobs", "pushoutcomes")


@pytest.fixture(scope="module")
def private_azurite() -> Iterator[str]:
    saved = os.environ.pop("AZURITE_CONNECTION", None)
    try:
        with running_azurite() as conn:
            yield conn
    finally:
        if saved is not None:
            os.environ["AZURITE_CONNECTION"] = saved


@pytest.fixture
async def stack(clean_env: pytest.MonkeyPatch, private_azurite: str) -> AsyncIterator[Stack]:
    async with TableServiceClient.from_connection_string(private_azurite) as svc:
        for t in TABLES:
            await svc.delete_table(t)
    fake = FakeWns()
    await fake.start()
    for name, value in {
        "AzureWebJobsStorage": private_azurite, "WNS_TOKEN_URL": fake.token_url,
        "WNS_CHANNEL_HOSTS": fake.host_entry, "WNS_TENANT_ID": "local", "WNS_CLIENT_ID": "client",
        "WNS_CLIENT_SECRET": "secret", "PUSH_JOBS_QUEUE": "push-jobs", "EXPIRE_SCHEDULE": "0 30 3 * * *",
        "PUSH_AUTH": "platform", "SSL_CERT_FILE": fake.ca_path, "REQUESTS_CA_BUNDLE": fake.ca_path,
    }.items():
        clean_env.setenv(name, value)
    reset_settings()
    await runtime.reset()
    await wns.close_client()
    host = DevHost(ROOT, port=0)
    await host.start()
    async with aiohttp.ClientSession() as http:
        yield Stack(host, fake, private_azurite, http)
    await host.stop()
    await wns.close_client()
    await runtime.reset()
    await fake.stop()
