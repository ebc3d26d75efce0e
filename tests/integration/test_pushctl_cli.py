"""pushctl against a real Azurite: status, report, channels, send (what lands on the queue),
dry runs, and the exit codes, in process and as `python -m pushctl` (error paths: no traceback).

Azurite is shared by the session, so every test uses its own ids, tags and queue name; the
tables are the app's own (`channels`, `pushjobs`, ...), seeded through the stores."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient
from typer.testing import CliRunner, Result

from pushctl import app
from shared.azure_tables import AzureTable, table_service
from shared.channels import ChannelStore
from shared.clock import SystemClock
from shared.jobs import parse_job
from shared.jobstore import JobStore, OutcomeRecord
from shared.settings import StorageSettings, azurite_connection_string
from tests.support.azurite import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "AwYAAABq%2Bfake%2Ftoken%3D"


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, unique: str) -> Iterator[str]:
    """An isolated environment (the CLI copies local.settings.json into it), and a private queue."""
    saved = dict(os.environ)
    queue = f"pushctl-{unique}"
    os.environ["PUSH_JOBS_QUEUE"] = queue
    try:
        yield queue
    finally:
        os.environ.clear()
        os.environ.update(saved)


def dev(unique: str, n: int) -> str:
    return f"{unique}-{n:04d}-0000-0000-000000000000"


def channel(n: int) -> str:
    return f"https://db5p.notify.windows.com/w/?token={TOKEN}{n}"


def seed(conn: str, *, registrations: Sequence[tuple[str, str | None, list[str]]] = (),
         jobs: Sequence[tuple[str, str, dict[str, int], list[OutcomeRecord]]] = (),
         job_rows: Sequence[dict[str, Any]] = ()) -> None:
    """Registrations (device, user, tags), job records (id, state, counts, outcomes), and job
    rows written as they are (for states no code path produces yet, such as `cancelled`)."""

    async def run() -> None:
        svc = table_service(StorageSettings(connection_string=conn))
        t = {n: AzureTable(svc.get_table_client(n)) for n in ("channels", "channelindex", "pushjobs", "pushoutcomes")}
        store = ChannelStore(t["channels"], t["channelindex"], SystemClock(), 30)
        for i, (device, user, tags) in enumerate(registrations):
            await store.put(device, channel(i), user, tags)
        js = JobStore(t["pushjobs"], t["pushoutcomes"], SystemClock())
        for job_id, state, counts, outcomes in jobs:
            fields = {"target": json.dumps({"users": ["alice"]}), "notification": "{}", "type": "toast"}
            if state == "failed":
                await js.record_failed(job_id, "invalid_target: target is empty", fields)
                continue
            await js.create(job_id, fields, ["b1"], "m1")
            await js.record_outcomes(job_id, "b1", outcomes)
            if state == "completed":
                await js.finish_batch(job_id, "b1", counts)
        for row in job_rows:
            await t["pushjobs"].upsert({"RowKey": "job", **row})
        for table in t.values():
            await table.close()
        await svc.close()

    asyncio.run(run())


def cli(conn: str, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--connection", conn])


def queued(conn: str, queue: str) -> list[str]:
    with QueueClient.from_connection_string(conn, queue) as q:
        try:
            return [m.content for m in q.peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []


def pushctl(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "pushctl", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


# ---- status and report -----------------------------------------------------------------------------


@pytest.fixture
def finished_job(azurite_conn: str, unique: str) -> str:
    job_id = f"job-{unique}"
    outcomes = [
        OutcomeRecord(dev(unique, 1), "delivered", 200, "received", "00000000000000A1", None, "alice"),
        OutcomeRecord(dev(unique, 2), "removed", 410, None, "00000000000000A2", "channel_gone", "alice"),
        OutcomeRecord(dev(unique, 3), "failed", 403, None, "00000000000000A3", "forbidden: bad token", None),
    ]
    seed(azurite_conn, jobs=[(job_id, "completed",
                              {"targeted": 3, "delivered": 1, "removed": 1, "failed": 1}, outcomes)])
    return job_id


def test_status_json_and_table(env: str, azurite_conn: str, finished_job: str) -> None:
    result = cli(azurite_conn, "status", finished_job, "--json")
    assert result.exit_code == 0, result.output
    st = json.loads(result.stdout)
    assert {k: st[k] for k in ("jobId", "state", "targeted", "delivered", "removed", "failed")} == {
        "jobId": finished_job, "state": "completed", "targeted": 3, "delivered": 1, "removed": 1, "failed": 1}
    assert st["target"] == {"users": ["alice"]} and st["pendingBatches"] == 0
    table = cli(azurite_conn, "status", finished_job)
    assert table.exit_code == 0
    rows = {line.split()[0]: line.split()[-1] for line in table.stdout.splitlines() if line.strip()}
    assert rows["state"] == "completed" and rows["removed"] == "1" and rows["failed"] == "1"


def test_report_lists_every_recipient_and_filters_by_outcome(env: str, azurite_conn: str, unique: str,
                                                              finished_job: str) -> None:
    result = cli(azurite_conn, "report", finished_job, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert sorted(r["outcome"] for r in rows) == ["delivered", "failed", "removed"]
    removed = cli(azurite_conn, "report", finished_job, "--outcome", "removed", "--json")
    [row] = json.loads(removed.stdout)
    assert row["deviceId"] == dev(unique, 2) and row["status"] == 410 and row["userId"] == "alice"
    assert row["msgId"] == "00000000000000A2" and row["error"] == "channel_gone"
    table = cli(azurite_conn, "report", finished_job, "--outcome", "failed")
    assert table.exit_code == 0
    assert dev(unique, 3) in table.stdout and "403" in table.stdout and "forbidden: bad token" in table.stdout
    assert dev(unique, 1) not in table.stdout and "1 recipient failed" in table.stdout


def test_unknown_job_exits_4(env: str, azurite_conn: str, unique: str) -> None:
    for command in ("status", "report"):
        result = cli(azurite_conn, command, f"nope-{unique}")
        assert result.exit_code == 4, result.output
        assert f"no job 'nope-{unique}'" in result.stderr and result.stdout == ""


def test_a_known_job_without_outcomes_reports_nothing(env: str, azurite_conn: str, unique: str) -> None:
    seed(azurite_conn, jobs=[(f"bad-{unique}", "failed", {}, [])])
    result = cli(azurite_conn, "report", f"bad-{unique}", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    st = json.loads(cli(azurite_conn, "status", f"bad-{unique}", "--json").stdout)
    assert st["state"] == "failed" and "invalid_target" in st["error"]


# ---- channels --------------------------------------------------------------------------------------


@pytest.fixture
def population(azurite_conn: str, unique: str) -> dict[int, tuple[str, str | None, list[str]]]:
    regs = {
        1: (dev(unique, 1), f"alice-{unique}", [f"news-{unique}", "lang:en"]),
        2: (dev(unique, 2), f"alice-{unique}", [f"news-{unique}", "lang:fr", "muted"]),
        3: (dev(unique, 3), f"bob-{unique}", [f"news-{unique}", "lang:fr"]),
        4: (dev(unique, 4), None, [f"sport-{unique}"]),
    }
    seed(azurite_conn, registrations=list(regs.values()))
    return regs


def listed(conn: str, *args: str) -> set[str]:
    result = cli(conn, "channels", *args, "--json")
    assert result.exit_code == 0, result.output
    return {r["deviceId"] for r in json.loads(result.stdout)}


def test_channels_filters_select_like_a_send(env: str, azurite_conn: str, unique: str,
                                             population: dict[int, Any]) -> None:
    d = {n: population[n][0] for n in population}
    assert listed(azurite_conn, "--user", f"alice-{unique}") == {d[1], d[2]}
    assert listed(azurite_conn, "--device", d[3]) == {d[3]}
    assert listed(azurite_conn, "--tags", f"news-{unique} && !muted") == {d[1], d[3]}
    assert listed(azurite_conn, "--tags", f"news-{unique} && lang:fr || sport-{unique}") == {d[2], d[3], d[4]}
    assert set(d.values()) <= listed(azurite_conn)
    assert listed(azurite_conn, "--user", f"nobody-{unique}") == set()


def test_channels_json_has_the_registration_and_the_table_hides_the_uri(
        env: str, azurite_conn: str, unique: str, population: dict[int, Any]) -> None:
    result = cli(azurite_conn, "channels", "--user", f"bob-{unique}", "--json")
    [reg] = json.loads(result.stdout)
    assert reg["deviceId"] == dev(unique, 3) and reg["userId"] == f"bob-{unique}"
    assert reg["channelUri"].startswith("https://db5p.notify.windows.com/w/?token=")
    assert sorted(reg["tags"]) == sorted([f"news-{unique}", "lang:fr"]) and reg["expiresAt"] > reg["registeredAt"]
    table = cli(azurite_conn, "channels", "--user", f"alice-{unique}")
    assert table.exit_code == 0
    assert dev(unique, 1) in table.stdout and dev(unique, 2) in table.stdout
    assert "db5p.notify.windows.com/..." in table.stdout and TOKEN not in table.stdout
    assert "2 registrations" in table.stdout


# ---- send --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "target", "notification"),
    [
        (["--all", "--toast", "Sale", "40% off <today>"], {"all": True},
         {"type": "toast", "text": ["Sale", "40% off <today>"]}),
        (["--user", "alice", "--user", "bob", "--toast", "Hi", "--launch", "open=1"],
         {"users": ["alice", "bob"]}, {"type": "toast", "text": ["Hi"], "launch": "open=1"}),
        (["--device", "0f8fad5b-d9cb-469f-a165-70867728950e", "--tags", "news && !muted", "--raw", "sync",
          "--ttl", "60", "--priority", "1", "--no-cache", "--request-status"],
         {"devices": ["0f8fad5b-d9cb-469f-a165-70867728950e"], "tags": "news && !muted"},
         {"type": "raw", "payload": "sync", "ttl": 60, "priority": 1, "cache": False, "requestStatus": True}),
    ],
)
def test_send_enqueues_the_validated_job_as_plain_json(env: str, azurite_conn: str, unique: str,
                                                       args: list[str], target: dict[str, Any],
                                                       notification: dict[str, Any]) -> None:
    result = cli(azurite_conn, "send", *args)
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    [message] = queued(azurite_conn, env)
    doc = json.loads(message)  # plain UTF-8 JSON, not base64 (messageEncoding none)
    assert doc["jobId"] == job_id and doc["target"] == target
    expected = parse_job(json.dumps({"jobId": job_id, "target": target, "notification": notification}))
    assert parse_job(message) == expected


def test_send_json_and_the_tile_xml_file(env: str, azurite_conn: str, unique: str, tmp_path: Path) -> None:
    xml = tmp_path / "tile.xml"
    xml.write_text("<tile><visual><binding template='TileMedium'><text>5</text></binding></visual></tile>",
                   encoding="utf-8")
    result = cli(azurite_conn, "send", "--user", "alice", "--xml", str(xml), "--type", "tile", "--tag", "score",
                 "--cache", "--job-id", f"tile-{unique}", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"jobId": f"tile-{unique}"}
    [message] = queued(azurite_conn, env)
    n = parse_job(message).notification
    assert (n.type, n.tag, n.cache) == ("tile", "score", True) and n.payload == xml.read_bytes()


def test_a_taken_job_id_is_not_enqueued_again(env: str, azurite_conn: str, finished_job: str) -> None:
    result = cli(azurite_conn, "send", "--all", "--toast", "again", "--job-id", finished_job, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"jobId": finished_job, "alreadyAccepted": True}
    assert "already exists (completed)" in result.stderr
    assert queued(azurite_conn, env) == []


def test_a_rejected_job_frees_its_id(env: str, azurite_conn: str, unique: str) -> None:
    job_id = f"fixme-{unique}"
    seed(azurite_conn, jobs=[(job_id, "failed", {}, [])])  # as send_push records a malformed job
    dry = cli(azurite_conn, "send", "--all", "--toast", "x", "--job-id", job_id, "--dry-run", "--json")
    assert json.loads(dry.stdout)["jobIdTaken"] is False
    result = cli(azurite_conn, "send", "--all", "--toast", "corrected", "--job-id", job_id)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == job_id and "was rejected before: invalid_target" in result.stderr
    [message] = queued(azurite_conn, env)
    assert parse_job(message).job_id == job_id


def test_wait_ends_with_the_job_state(env: str, azurite_conn: str, unique: str, finished_job: str) -> None:
    done = cli(azurite_conn, "send", "--all", "--toast", "x", "--job-id", finished_job, "--wait", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["delivered"] == 1
    assert queued(azurite_conn, env) == []
    cancelled = f"cancelled-{unique}"
    seed(azurite_conn, job_rows=[{"PartitionKey": cancelled, "state": "cancelled", "createdAt": "2027-01-15T12:00:00Z",
                                  "target": json.dumps({"all": True}), "type": "toast"}])
    ended = cli(azurite_conn, "send", "--all", "--toast", "x", "--job-id", cancelled, "--wait")
    assert ended.exit_code == 1, ended.output
    assert ended.stdout.splitlines()[0] == cancelled
    assert f"job {cancelled} cancelled: 0 targeted" in ended.stderr
    assert queued(azurite_conn, env) == []


def test_dry_run_counts_the_audience_and_enqueues_nothing(env: str, azurite_conn: str, unique: str,
                                                          population: dict[int, Any]) -> None:
    result = cli(azurite_conn, "send", "--tags", f"news-{unique} && !muted", "--toast", "hi", "--dry-run",
                 "--job-id", f"dry-{unique}", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dryRun"] is True and doc["targeted"] == 2 and doc["jobIdTaken"] is False
    assert {s["deviceId"] for s in doc["sample"]} == {dev(unique, 1), dev(unique, 3)}
    assert all(s["channelHost"] == "db5p.notify.windows.com" for s in doc["sample"])
    assert TOKEN not in result.stdout
    human = cli(azurite_conn, "send", "--user", f"alice-{unique}", "--toast", "hi", "--dry-run")
    assert human.exit_code == 0 and "would reach 2 registrations" in human.stdout and TOKEN not in human.stdout
    assert queued(azurite_conn, env) == []
    assert cli(azurite_conn, "status", f"dry-{unique}").exit_code == 4


# ---- as a process: exit codes and no tracebacks ---------------------------------------------------


def test_storage_down_exits_3_with_one_line(env: str, unique: str) -> None:
    port = free_port()  # nothing listens there
    down = azurite_connection_string(table_port=port, queue_port=port, blob_port=port)
    for args in (["status", "j1"], ["report", "j1"], ["channels"], ["send", "--all", "--toast", "hi"],
                 ["send", "--all", "--toast", "hi", "--dry-run"]):
        result = pushctl(*args, "--connection", down)
        assert result.returncode == 3, (args, result.stderr)
        assert result.stderr.startswith("pushctl: cannot use storage at http://127.0.0.1:") and \
            result.stderr.count("\n") == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr and "AccountKey" not in result.stderr and result.stdout == ""


def test_process_exit_codes_for_bad_input_and_unknown_job(env: str, azurite_conn: str, unique: str) -> None:
    bad = pushctl("send", "--all", "--device", "x" * 16, "--toast", "hi", "--connection", azurite_conn)
    assert bad.returncode == 2 and "cannot be combined" in bad.stderr and "Traceback" not in bad.stderr
    missing = pushctl("status", f"missing-{unique}", "--connection", azurite_conn)
    assert missing.returncode == 4 and "no job" in missing.stderr and "Traceback" not in missing.stderr


# ---- cancel --------------------------------------------------------------------------------------


def test_cancel_stops_a_running_job_and_leaves_an_ended_one(env: str, azurite_conn: str, unique: str) -> None:
    running, done = f"run-{unique}", f"done-{unique}"
    seed(azurite_conn, jobs=[(running, "running", {}, []),
                             (done, "completed", {"targeted": 1, "delivered": 1}, [])])
    result = cli(azurite_conn, "cancel", running, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "cancelled"
    assert json.loads(cli(azurite_conn, "status", running, "--json").stdout)["state"] == "cancelled"
    result = cli(azurite_conn, "cancel", done, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["state"] == "completed"
    assert cli(azurite_conn, "cancel", f"nope-{unique}").exit_code == 4
