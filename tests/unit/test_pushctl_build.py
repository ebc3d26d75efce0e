"""pushctl: command-line arguments to jobs (pure), and the usage errors that stop a bad one
before storage is touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pushctl import app
from pushctl.build import (
    NotificationArgs,
    TargetArgs,
    build_job,
    check_job_id,
    expand_toast,
    job_doc,
    listing_target,
)
from pushctl.errors import USAGE, CliError
from shared.jobs import Target, parse_job
from shared.notification import build_toast_xml

DEV1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
DEV2 = "7c9e6679-7425-40de-944e-e07fc1f90ae7"
TOAST = NotificationArgs(toast=("Title", "Body"))


def usage_error(fn: object, *args: object) -> str:
    with pytest.raises(CliError) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.code == USAGE
    return info.value.message


# ---- targets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (TargetArgs(all=True), {"all": True}),
        (TargetArgs(users=("alice",)), {"users": ["alice"]}),
        (TargetArgs(users=("alice", "bob")), {"users": ["alice", "bob"]}),
        (TargetArgs(devices=(DEV1, DEV2)), {"devices": [DEV1, DEV2]}),
        (TargetArgs(tags="news && (lang:en || lang:fr) && !muted"),
         {"tags": "news && (lang:en || lang:fr) && !muted"}),
        (TargetArgs(users=("alice",), devices=(DEV1,), tags="news"),
         {"users": ["alice"], "devices": [DEV1], "tags": "news"}),
    ],
)
def test_every_target_form_becomes_the_documented_json(args: TargetArgs, expected: dict[str, object]) -> None:
    job = build_job("j-1", args, TOAST)
    assert job.to_json()["target"] == expected
    assert job_doc("j-1", args, TOAST)["target"] == expected


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (TargetArgs(all=True, users=("x",)), "cannot be combined"),
        (TargetArgs(all=True, devices=(DEV1,)), "cannot be combined"),
        (TargetArgs(all=True, tags="news"), "cannot be combined"),
        (TargetArgs(), "give a target"),
        (TargetArgs(devices=("short",)), "invalid_target"),
        (TargetArgs(users=("",)), "invalid_target"),
        (TargetArgs(tags="news &&"), "invalid_tag_expression"),
        (TargetArgs(tags="a & b"), "invalid_tag_expression"),
    ],
)
def test_ambiguous_empty_or_invalid_targets_are_usage_errors(args: TargetArgs, fragment: str) -> None:
    assert fragment in usage_error(build_job, None, args, TOAST)


# ---- notifications ---------------------------------------------------------------------------------


def test_toast_lines_and_launch_build_the_service_toast() -> None:
    job = build_job(None, TargetArgs(all=True), NotificationArgs(toast=("Hi <you>", "a & b"), launch="x=1&y=2"))
    assert job.notification.type == "toast"
    assert job.notification.payload == build_toast_xml(["Hi <you>", "a & b"], "x=1&y=2").encode()
    assert b"Hi &lt;you&gt;" in job.notification.payload


@pytest.mark.parametrize("lines", [("one",), ("a", "b", "c", "d")])
def test_one_to_four_toast_lines(lines: tuple[str, ...]) -> None:
    assert build_job(None, TargetArgs(all=True), NotificationArgs(toast=lines)).notification.type == "toast"


def test_five_toast_lines_are_refused() -> None:
    assert "1 to 4" in usage_error(build_job, None, TargetArgs(all=True), NotificationArgs(toast=tuple("abcde")))


@pytest.mark.parametrize(
    ("kind", "xml"),
    [
        (None, "<toast><visual><binding template='ToastGeneric'><text>x</text></binding></visual></toast>"),
        ("toast", "<toast><visual><binding template='ToastGeneric'><text>x</text></binding></visual></toast>"),
        ("tile", "<tile><visual/></tile>"),
        ("badge", "<badge value='3'/>"),
    ],
)
def test_xml_file_with_its_type(tmp_path: Path, kind: str | None, xml: str) -> None:
    f = tmp_path / "n.xml"
    f.write_text("\ufeff" + xml + "\n", encoding="utf-8")
    job = build_job(None, TargetArgs(all=True), NotificationArgs(xml=str(f), xml_type=kind))
    assert job.notification.type == (kind or "toast")
    assert job.notification.payload == xml.encode()


def test_xml_of_the_wrong_type_or_malformed_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "n.xml"
    f.write_text("<tile><visual/></tile>", encoding="utf-8")
    assert "invalid_xml" in usage_error(build_job, None, TargetArgs(all=True), NotificationArgs(xml=str(f)))
    f.write_text("<badge value='3'>", encoding="utf-8")
    msg = usage_error(build_job, None, TargetArgs(all=True), NotificationArgs(xml=str(f), xml_type="badge"))
    assert "not well-formed" in msg
    assert "--type must be one of" in usage_error(
        build_job, None, TargetArgs(all=True), NotificationArgs(xml=str(f), xml_type="raw"))
    assert "cannot read --xml" in usage_error(
        build_job, None, TargetArgs(all=True), NotificationArgs(xml=str(tmp_path / "missing.xml")))


def test_raw_text_is_the_payload() -> None:
    job = build_job(None, TargetArgs(users=("u",)), NotificationArgs(raw='{"sync": true}'))
    assert job.notification.type == "raw" and job.notification.payload == b'{"sync": true}'


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (NotificationArgs(), "give the notification"),
        (NotificationArgs(raw="x", xml="file.xml"), "only one of --toast, --xml, --raw"),
        (NotificationArgs(raw="x", toast=("t",)), "only one of"),
        (NotificationArgs(toast=("t",), xml="file.xml"), "only one of"),
        (NotificationArgs(raw="x", launch="a"), "--launch goes with --toast"),
        (NotificationArgs(toast=("t",), xml_type="tile"), "--type goes with --xml"),
        (NotificationArgs(raw="x", xml_type="badge"), "--type goes with --xml"),
        (NotificationArgs(toast=("t",), cache=True), "cache is not available for toast"),
        (NotificationArgs(toast=("t",), tag="score"), "tag is only for tile"),
        (NotificationArgs(raw="x", priority=5), "priority must be"),
        (NotificationArgs(raw="x", ttl=0), "ttl must be"),
        (NotificationArgs(raw=""), "payload must be a non-empty string"),
        (NotificationArgs(raw="x" * 5001), "payload_too_large"),
    ],
)
def test_conflicting_or_invalid_notifications_are_usage_errors(args: NotificationArgs, fragment: str) -> None:
    assert fragment in usage_error(build_job, None, TargetArgs(all=True), args)


def test_every_notification_option_reaches_the_job(tmp_path: Path) -> None:
    f = tmp_path / "tile.xml"
    f.write_text("<tile><visual/></tile>", encoding="utf-8")
    args = NotificationArgs(xml=str(f), xml_type="tile", ttl=3600, cache=False, tag="score", priority=2,
                            request_status=True)
    doc = job_doc("spring-sale", TargetArgs(users=("alice",)), args)
    assert doc == {
        "jobId": "spring-sale",
        "target": {"users": ["alice"]},
        "notification": {"type": "tile", "payload": "<tile><visual/></tile>", "ttl": 3600, "cache": False,
                         "tag": "score", "priority": 2, "requestStatus": True},
    }
    job = build_job("spring-sale", TargetArgs(users=("alice",)), args)
    n = job.notification
    assert (n.ttl, n.cache, n.tag, n.priority, n.request_status) == (3600, False, "score", 2, True)
    # What is enqueued is what was validated: the service parses it back to the same job.
    assert parse_job(job.to_message()) == job


# ---- job ids ---------------------------------------------------------------------------------------


def test_job_id_given_kept_or_generated() -> None:
    assert build_job("spring-sale.2027_v1", TargetArgs(all=True), TOAST).job_id == "spring-sale.2027_v1"
    a, b = (build_job(None, TargetArgs(all=True), TOAST).job_id for _ in range(2))
    assert a != b and check_job_id(a) == a


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 65, "spaced id", "ünïcode"])
def test_invalid_job_ids_are_refused(bad: str) -> None:
    assert "invalid_job_id" in usage_error(build_job, bad, TargetArgs(all=True), TOAST)
    assert "not a job id" in usage_error(check_job_id, bad)


# ---- channels filters ------------------------------------------------------------------------------


def test_listing_targets() -> None:
    assert listing_target(None, None, None) == Target(all=True)
    assert listing_target("alice", None, None) == Target(users=("alice",))
    assert listing_target(None, DEV1, None) == Target(devices=(DEV1,))
    assert listing_target(None, None, "news && !muted").tags == "news && !muted"
    assert "at most one" in usage_error(listing_target, "alice", DEV1, None)
    assert "invalid_target" in usage_error(listing_target, None, "nope", None)
    assert "invalid_tag_expression" in usage_error(listing_target, None, None, "(news")


# ---- --toast TEXT... --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["send", "--toast", "T", "B", "--all"], ["send", "--toast", "T", "--toast", "B", "--all"]),
        (["send", "--all", "--toast", "T"], ["send", "--all", "--toast", "T"]),
        (["send", "--toast", "T", "--toast", "B"], ["send", "--toast", "T", "--toast", "B"]),
        (["send", "--toast", "-5 degrees", "B"], ["send", "--toast", "-5 degrees", "--toast", "B"]),
        (["send", "--toast", "T", "-", "x"], ["send", "--toast", "T", "-", "x"]),
        (["send", "--raw", "x", "--", "--toast", "a", "b"], ["send", "--raw", "x", "--", "--toast", "a", "b"]),
        (["send", "--toast"], ["send", "--toast"]),
        (["send", "--toast=-5 degrees", "cold", "--all"], ["send", "--toast=-5 degrees", "--toast", "cold", "--all"]),
        (["send", "--raw", "x", "stray"], ["send", "--raw", "x", "stray"]),
    ],
)
def test_expand_toast(argv: list[str], expected: list[str]) -> None:
    assert expand_toast(argv) == expected


# ---- through the command line, before any storage -----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["send", "--all", "--user", "x", "--toast", "hi"], "cannot be combined"),
        (["send", "--user", "x", "--raw", "r", "--xml", "f.xml"], "only one of --toast, --xml, --raw"),
        (["send", "--toast", "hi"], "give a target"),
        (["send", "--user", "x"], "give the notification"),
        (["send", "--user", "x", "--toast", "a", "b", "c", "d", "e"], "1 to 4"),
        (["send", "--user", "x", "--toast", "hi", "--job-id", "a b"], "invalid_job_id"),
        (["send", "--user", "x", "--toast", "hi", "--dry-run", "--wait"], "nothing to --wait for"),
        (["send", "--tags", "news &&", "--toast", "hi"], "invalid_tag_expression"),
        (["status", "not/a/job"], "not a job id"),
        (["report", "x" * 65], "not a job id"),
        (["channels", "--user", "a", "--tags", "b"], "at most one"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(argv: list[str], fragment: str) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("pushctl: ")
    assert "Traceback" not in result.output and result.stdout == ""


def test_typer_usage_errors_are_also_2() -> None:
    result = CliRunner().invoke(app, ["send", "--priority", "high", "--all", "--toast", "x"])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["report", "j", "--outcome", "lost"])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["send", "--user", "x", "stray"])
    assert result.exit_code == 2 and "stray" in result.output


def test_help_lists_every_exit_code() -> None:
    for argv in ([], ["send"], ["status"], ["report"], ["channels"]):
        result = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        text = " ".join(result.stdout.split())
        for code in ("0 success", "1 `send --wait`", "2 invalid input", "3 storage unreachable", "4 no such job",
                     "130 interrupted"):
            assert code in text, (argv, code)


def test_a_built_job_message_is_plain_json() -> None:
    job = build_job("j", TargetArgs(tags="news"), NotificationArgs(toast=("Été", "ça")))
    message = job.to_message()
    assert json.loads(message)["jobId"] == "j" and "Été" in message  # UTF-8 text, not base64 or escapes
