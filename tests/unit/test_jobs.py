"""Job parsing and validation (contract section 2): every rejection path, and round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import ValidationError
from shared.jobs import MAX_JOB_BYTES, Job, Target, parse_job, parse_target, peek_job_id
from shared.notification import Notification
from shared.tagexpr import Tag

TOAST = {"type": "toast", "payload": "<toast><visual><binding template='ToastGeneric'/></visual></toast>"}
DEVICE = "0f8fad5b-d9cb-469f-a165-70867728950e"


def job(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"jobId": "j-1", "target": {"users": ["alice"]}, "notification": TOAST}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not _DROP}


_DROP = object()


def rejected(raw: bytes | str | dict[str, Any], code: str) -> ValidationError:
    text = json.dumps(raw) if isinstance(raw, dict) else raw
    with pytest.raises(ValidationError) as info:
        parse_job(text)
    assert info.value.code == code, info.value.message
    assert info.value.message
    return info.value


class TestAccepted:
    def test_contract_example(self) -> None:
        parsed = parse_job(json.dumps({
            "jobId": "spring-sale-2027",
            "target": {"users": ["alice", "bob"]},
            "notification": {"type": "toast", "payload": "<toast>hi</toast>", "ttl": 3600},
        }).encode())
        assert parsed.job_id == "spring-sale-2027"
        assert parsed.target == Target(users=("alice", "bob"))
        assert parsed.notification.ttl == 3600
        assert parsed.notification.payload == b"<toast>hi</toast>"

    def test_job_id_generated_when_absent(self) -> None:
        a = parse_job(json.dumps(job(jobId=_DROP)))
        b = parse_job(json.dumps(job(jobId=_DROP)))
        assert len(a.job_id) == 32 and a.job_id != b.job_id

    def test_all(self) -> None:
        assert parse_job(json.dumps(job(target={"all": True}))).target == Target(all=True)

    def test_selectors_combine(self) -> None:
        t = parse_job(json.dumps(job(target={"users": ["a", "a", "b"], "devices": [DEVICE], "tags": "x && !y"})))
        assert t.target.users == ("a", "b")  # duplicates dropped, order kept
        assert t.target.devices == (DEVICE,)
        assert t.target.tags == "x && !y"
        assert t.target.expression is not None and t.target.expression.matches({"x"})

    def test_expression_built_when_constructed_directly(self) -> None:
        assert Target(tags="news").expression == Tag("news")

    def test_bytes_with_bom(self) -> None:
        assert parse_job(b"\xef\xbb\xbf" + json.dumps(job()).encode()).job_id == "j-1"

    @pytest.mark.parametrize(
        "target",
        [{"all": True}, {"users": ["u1"]}, {"devices": [DEVICE]}, {"tags": "a || b"},
         {"users": ["u"], "tags": "!muted"}],
    )
    def test_round_trip(self, target: dict[str, Any]) -> None:
        original = parse_job(json.dumps(job(target=target, notification={
            "type": "tile", "payload": "<tile><visual/></tile>", "ttl": 60, "cache": False, "tag": "t1",
            "priority": 2, "requestStatus": True,
        })))
        assert parse_job(json.dumps(original.to_json())) == original
        assert parse_job(original.to_message()) == original

    def test_round_trip_of_built_toast(self) -> None:
        original = parse_job(json.dumps(job(notification={"type": "toast", "text": ["Hi & <bye>"], "launch": "a=1"})))
        again = parse_job(original.to_message())
        assert again == original
        assert isinstance(again.notification, Notification)

    def test_job_is_frozen(self) -> None:
        parsed = parse_job(json.dumps(job()))
        assert isinstance(parsed, Job)
        with pytest.raises(AttributeError):
            parsed.job_id = "x"  # type: ignore[misc]


class TestRejectedInput:
    @pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe{}", "[1,", '{"a": NaN}', "{\"a\": Infinity}"])
    def test_not_json(self, raw: bytes | str) -> None:
        rejected(raw, "invalid_json")

    @pytest.mark.parametrize("raw", ["[]", "42", '"job"', "null"])
    def test_not_an_object(self, raw: str) -> None:
        rejected(raw, "invalid_json")

    def test_deep_nesting_is_not_a_crash(self) -> None:
        rejected("[" * 50000 + "]" * 50000, "job_too_large")
        rejected('{"jobId": ' + "[" * 20000 + "]" * 20000 + "}", "invalid_json")

    def test_too_large(self) -> None:
        rejected(json.dumps(job(target={"users": ["u" * 200] * 400})), "job_too_large")
        assert MAX_JOB_BYTES == 65536

    def test_duplicate_keys_never_silently_broaden(self) -> None:
        text = '{"target": {"users": ["alice"]}, "target": {"all": true}, "notification": {}}'
        assert "twice" in rejected(text, "invalid_json").message

    def test_unknown_field(self) -> None:
        rejected(job(ttl=5), "invalid_job")

    @pytest.mark.parametrize("job_id", ["", "a" * 65, "has space", "slash/", "ü", 7, None, True])
    def test_job_id(self, job_id: object) -> None:
        rejected(job(jobId=job_id), "invalid_job_id")

    def test_job_id_limits(self) -> None:
        assert parse_job(json.dumps(job(jobId="A-z_0.9" + "x" * 57))).job_id.endswith("x")

    def test_missing_target(self) -> None:
        rejected(job(target=_DROP), "invalid_target")

    def test_missing_notification(self) -> None:
        rejected(job(notification=_DROP), "invalid_notification")


class TestNothingBroadcastByAccident:
    @pytest.mark.parametrize(
        "target",
        [
            {},
            {"all": False},
            {"all": "true"},
            {"all": 1},
            {"all": None},
            {"all": True, "users": ["alice"]},
            {"all": False, "users": ["alice"]},
            {"all": True, "tags": "news"},
            {"everyone": True},
            {"user": ["alice"]},
            {"users": ["alice"], "region": "eu"},
            {"users": []},
            {"users": None},
            {"users": "alice"},
            {"users": [""]},
            {"users": ["a" * 257]},
            {"users": [1]},
            {"users": ["\ud800"]},
            {"devices": []},
            {"devices": ["short"]},
            {"devices": [DEVICE + "!"]},
            {"devices": "x" * 20},
            [],
            "all",
            None,
        ],
    )
    def test_rejected(self, target: object) -> None:
        rejected(job(target=target), "invalid_target")

    def test_user_id_limit(self) -> None:
        assert parse_target({"users": ["a" * 256]}).users == ("a" * 256,)

    @pytest.mark.parametrize("tags", ["", "a &&", 5, ["news"], None, "!(", "a b"])
    def test_bad_tag_expression(self, tags: object) -> None:
        rejected(job(target={"tags": tags}), "invalid_tag_expression")


class TestPeekJobId:
    def test_valid_job(self) -> None:
        assert peek_job_id(json.dumps(job())) == "j-1"

    def test_malformed_rest(self) -> None:
        assert peek_job_id(json.dumps(job(target={"all": False}))) == "j-1"
        assert peek_job_id(b'{"jobId": "sale-1", "target": {"all": tru') == "sale-1"
        assert peek_job_id('{"jobId":"x.y_z-1", oops') == "x.y_z-1"

    @pytest.mark.parametrize(
        "raw",
        [b"", b"\xff\xfe", "[]", '{"jobId": 5}', '{"jobId": "bad id"}', '{"target": {}}', "null", "nothing"],
    )
    def test_none_when_absent_or_invalid(self, raw: bytes | str) -> None:
        assert peek_job_id(raw) is None

    def test_never_raises(self) -> None:
        assert peek_job_id("[" * 100000) is None
        assert peek_job_id(None) is None  # type: ignore[arg-type]
