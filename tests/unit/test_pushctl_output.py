"""pushctl: what operators see (tables never show a channel URI, JSON shapes), and which storage
the command line selects."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from rich.console import Console
from rich.table import Table

from pushctl import connect, render
from pushctl.errors import STORAGE, USAGE, CliError
from shared.channels import Recipient
from shared.errors import StorageUnavailable
from shared.models import Registration
from shared.settings import azurite_connection_string

TOKEN = "AwYAAABq%2Bfake%2Ftoken%3D"
URI = f"https://db5p.notify.windows.com/w/?token={TOKEN}"
DEV = "0f8fad5b-d9cb-469f-a165-70867728950e"


def text_of(table: Table) -> str:
    out = Console(file=io.StringIO(), width=250, color_system=None)
    out.print(table)
    assert isinstance(out.file, io.StringIO)
    return out.file.getvalue()


# ---- channel URIs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "host", "shown"),
    [
        (URI, "db5p.notify.windows.com", "db5p.notify.windows.com/..."),
        ("https://localhost:8443/ch/c1?token=abc", "localhost:8443", "localhost:8443/..."),
        ("not a uri", "(invalid)", "(invalid)"),
        ("https://[::1", "(invalid)", "(invalid)"),
    ],
)
def test_channel_uris_are_reduced_to_their_host(uri: str, host: str, shown: str) -> None:
    assert render.channel_host(uri) == host
    assert render.redact_channel(uri) == shown


def test_sample_and_channels_tables_never_show_the_uri() -> None:
    r = Recipient(DEV, URI, "alice", ("news", "lang:fr"), "v1")
    now = datetime(2027, 1, 15, 12, tzinfo=UTC)
    reg = Registration(DEV, URI, None, ("sport",), now, now + timedelta(days=30), "v1")
    sample, listing = text_of(render.sample_table([r])), text_of(render.channels_table([reg]))
    for text in (sample, listing):
        assert DEV in text and "db5p.notify.windows.com/..." in text
        assert TOKEN not in text and "token" not in text
    assert "alice" in sample and "lang:fr" in sample
    assert "2027-02-14T12:00:00.000Z" in listing
    assert render.registration_json(reg)["channelUri"] == URI  # --json is for scripts: in full
    sample_json = render.recipient_json(r)
    assert sample_json == {"deviceId": DEV, "userId": "alice", "tags": ["news", "lang:fr"],
                           "channelHost": "db5p.notify.windows.com"}


def test_dry_run_json_shape_has_no_channel_uri() -> None:
    job = {"jobId": "j1", "target": {"tags": "news"}, "notification": {"type": "toast", "payload": "<toast/>"}}
    rs = [Recipient(f"{i:02d}" * 8, URI, None, ("news",), "v") for i in range(3)]
    doc = render.dry_run_json(job, 42, rs, None, job_id_given=False)
    assert doc["dryRun"] is True and doc["jobId"] is None and doc["targeted"] == 42
    assert doc["target"] == {"tags": "news"} and doc["type"] == "toast" and doc["jobIdTaken"] is False
    assert len(doc["sample"]) == 3 and TOKEN not in json.dumps(doc)
    assert render.dry_run_json(job, 1, [], {"state": "completed"})["jobId"] == "j1"


# ---- status and report ---------------------------------------------------------------------------


STATUS: dict[str, Any] = {
    "jobId": "spring", "state": "completed", "targeted": 5, "delivered": 2, "removed": 2, "failed": 1,
    "pendingBatches": 0, "createdAt": "2027-01-15T12:00:00.000Z", "updatedAt": "2027-01-15T12:00:03.000Z",
    "error": None, "target": {"all": True}, "type": "toast",
}


def test_status_table_and_summary() -> None:
    text = text_of(render.status_table(STATUS))
    lines = {line.split()[0]: line.split()[-1] for line in text.splitlines() if line.strip()}
    assert lines["job"] == "spring" and lines["state"] == "completed"
    assert (lines["targeted"], lines["delivered"], lines["removed"], lines["failed"]) == ("5", "2", "2", "1")
    assert '{"all": true}' in text and "error" not in text
    failed = text_of(render.status_table({**STATUS, "state": "failed", "error": "invalid_target: [red]x[/]"}))
    assert "invalid_target: [red]x[/]" in failed  # data is never read as markup
    assert render.summary_line(STATUS) == "job spring completed: 5 targeted, 2 delivered, 2 removed, 1 failed"


def test_report_table_columns_and_values() -> None:
    rows = [
        {"deviceId": DEV, "userId": "bob", "outcome": "removed", "status": 410, "wnsStatus": None,
         "msgId": "1A2B", "error": "channel_gone"},
        {"deviceId": "d" * 16, "userId": None, "outcome": "delivered", "status": 200, "wnsStatus": "received",
         "msgId": "3C4D", "error": None},
    ]
    text = text_of(render.report_table(rows))
    header = text.splitlines()[1]
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == list(render.REPORT_COLUMNS)
    removed = next(line for line in text.splitlines() if DEV in line)
    assert all(v in removed for v in ("bob", "removed", "410", "1A2B", "channel_gone"))


@pytest.mark.parametrize("n", [0, 1, 3])
def test_json_array_writer_streams_one_valid_document(n: int) -> None:
    out = io.StringIO()
    writer = render.JsonArrayWriter(out)
    for i in range(n):
        writer.add({"i": i, "text": "é"})
    writer.close()
    assert json.loads(out.getvalue()) == [{"i": i, "text": "é"} for i in range(n)]
    assert out.getvalue().count("\n") == (1 if n == 0 else n + 2)


# ---- storage selection -----------------------------------------------------------------------------


def test_connection_flag_wins_and_azurite_shorthand_expands() -> None:
    env = {"AzureWebJobsStorage": "AccountName=fromenv;AccountKey=a2V5"}
    s = connect.settings_from(env, connection="UseDevelopmentStorage=true")
    assert s.storage.connection_string == azurite_connection_string()
    assert connect.settings_from(env).storage.connection_string == env["AzureWebJobsStorage"]


def test_account_name_is_identity_based() -> None:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AzureWebJobsStorage__clientId": "mi-id",
           "AzureWebJobsStorage__tableServiceUri": "https://other.table.core.windows.net"}
    s = connect.settings_from(env, account="contosopush")
    assert s.storage.uses_identity and s.storage.client_id == "mi-id"
    assert s.storage.table_service_uri == "https://contosopush.table.core.windows.net"
    assert s.storage.queue_service_uri == "https://contosopush.queue.core.windows.net"


@pytest.mark.parametrize(
    ("url", "table", "queue"),
    [
        ("https://contoso.table.core.windows.net", "https://contoso.table.core.windows.net",
         "https://contoso.queue.core.windows.net"),
        ("https://contoso.queue.core.windows.net/", "https://contoso.table.core.windows.net",
         "https://contoso.queue.core.windows.net"),
        ("https://contoso.blob.core.chinacloudapi.cn", "https://contoso.table.core.chinacloudapi.cn",
         "https://contoso.queue.core.chinacloudapi.cn"),
    ],
)
def test_account_url_gives_both_endpoints(url: str, table: str, queue: str) -> None:
    s = connect.settings_from({}, account_url=url)
    assert (s.storage.table_service_uri, s.storage.queue_service_uri) == (table, queue)


def usage_message(**kwargs: Any) -> str:
    env = kwargs.pop("env", {})
    with pytest.raises(CliError) as info:
        connect.settings_from(env, **kwargs)
    assert info.value.code == USAGE
    return info.value.message


def test_storage_mistakes_are_usage_errors_naming_the_option() -> None:
    assert "only one of --connection, --account, --account-url" in usage_message(connection="a=b", account="x")
    assert "--account-url must look like" in usage_message(account_url="http://contoso.table.core.windows.net")
    assert "--account-url must look like" in usage_message(account_url="https://example.com")
    assert usage_message(account="Not_Valid").startswith("--account must be 3-24 lowercase")
    assert usage_message(connection="nonsense").startswith("--connection is not a connection string")
    assert "no storage given: pass --connection" in usage_message()
    assert "PUSH_JOBS_QUEUE" in usage_message(env={"PUSH_JOBS_QUEUE": "Bad_Queue"}, connection="a=b")


def test_storage_errors_name_the_endpoint_never_the_key() -> None:
    s = connect.settings_from({}, connection=azurite_connection_string(table_port=1234))
    err = connect.storage_error(s.storage, StorageUnavailable("read pushjobs: storage unreachable (X)"))
    assert err.code == STORAGE and "http://127.0.0.1:1234/devstoreaccount1" in err.message
    assert "AccountKey" not in err.message and "Eby8" not in err.message
    cause = ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token.\nAttempted: ...")
    wrapped = StorageUnavailable("read pushjobs")
    wrapped.__cause__ = cause
    ident = connect.settings_from({}, account="contoso")
    msg = connect.storage_error(ident.storage, wrapped).message
    assert "https://contoso.table.core.windows.net" in msg and "sign-in failed" in msg and "az login" in msg
    assert "\n" not in msg
