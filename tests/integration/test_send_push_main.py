"""`send_push.main()` called as the Functions host calls it, with a real QueueMessage."""

from __future__ import annotations

import json

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage as TriggerMessage

import send_push
from shared import runtime, wns
from shared.errors import StorageUnavailable

DOWN = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + "A" * 88
        + ";TableEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;")


def message(body: str, dequeue_count: int = 1) -> func.QueueMessage:
    # The worker's own message type, as the host hands it over (with dequeue_count).
    return TriggerMessage(id="m-1", body=body.encode(), dequeue_count=dequeue_count)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"jobId": "j1", "target": {"all": True}, "notification": {"type": "raw", "payload": "x"}}),
        "not even json",  # a malformed job must be recorded as failed: with storage down, that waits too
        json.dumps({"kind": "batch", "jobId": "j1", "batchId": "b", "source": {"scan": [None, "0"]}}),
    ],
)
async def test_storage_down_raises_so_the_host_retries(clean_env: pytest.MonkeyPatch, body: str) -> None:
    """The host retries the message (then moves it to push-jobs-poison after maxDequeueCount):
    nothing is lost, and nothing is sent, while storage is unreachable."""
    clean_env.setenv("AzureWebJobsStorage", DOWN)
    await runtime.reset()
    await wns.close_client()
    try:
        with pytest.raises(StorageUnavailable):
            await send_push.main(message(body))
    finally:
        await runtime.reset()
        await wns.close_client()


async def test_a_malformed_job_is_consumed_and_recorded(clean_env: pytest.MonkeyPatch, azurite_conn: str,
                                                       unique: str) -> None:
    clean_env.setenv("AzureWebJobsStorage", azurite_conn)
    await runtime.reset()
    try:
        await send_push.main(message(json.dumps({"jobId": f"bad-{unique}", "target": {"all": False},
                                                 "notification": {"type": "raw", "payload": "x"}})))
        status = await runtime.job_store().status(f"bad-{unique}")
        assert status is not None and status["state"] == "failed" and "invalid_target" in status["error"]
    finally:
        await runtime.reset()
        await wns.close_client()
