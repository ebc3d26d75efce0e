"""Identity-based storage (what infra/ deploys): the clients are built from the service URIs and
one managed-identity credential, shared by every table and queue client and closed with them."""

from __future__ import annotations

from azure.identity.aio import DefaultAzureCredential

from shared import runtime
from shared.settings import load_settings


async def test_identity_settings_build_clients_on_one_credential() -> None:
    settings = load_settings({
        "AzureWebJobsStorage__accountName": "pushprod",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
    })
    await runtime.reset()
    try:
        store = runtime.channel_store(settings)
        jobs = runtime.job_store(settings)
        queue = runtime.queue(settings.push_jobs_queue, settings)
        cred = runtime._credential
        assert isinstance(cred, DefaultAzureCredential)
        assert store.channels._client.url.startswith("https://pushprod.table.core.windows.net")  # type: ignore[attr-defined]
        assert jobs.jobs._client.credential is cred  # type: ignore[attr-defined]
        assert queue.url.startswith("https://pushprod.queue.core.windows.net/push-jobs")
        assert queue.credential is cred
    finally:
        await runtime.reset()
    assert runtime._credential is None
