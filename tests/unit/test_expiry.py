"""The prune's pure core: when a registration is expired, which days are due, what a journal lists."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from shared.channels import tag_pk, user_pk
from shared.expiry import due_until, is_expired, journal_pks
from shared.tables import Row

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def test_expired_from_the_expires_at_instant_on() -> None:
    assert is_expired(NOW, NOW)  # exactly at the boundary: pruned
    assert is_expired(NOW - timedelta(milliseconds=1), NOW)
    assert not is_expired(NOW + timedelta(milliseconds=1), NOW)


def test_due_days_end_with_today_in_utc() -> None:
    assert due_until(NOW) == "x:2027-03-01"
    # 23:30 on 28 February in UTC-5 is already 1 March in UTC: expiry days are UTC days.
    assert due_until(datetime(2027, 2, 28, 23, 30, tzinfo=timezone(timedelta(hours=-5)))) == "x:2027-03-01"
    assert due_until(datetime(2027, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == "x:2027-02-28"


def _entry(user: str | None, tags: list[str]) -> Row:
    return Row({
        "PartitionKey": "x:2027-03-01", "RowKey": "device-0000000001", "channelUri": "https://x",
        "userId": user or "", "hasUser": user is not None, "tags": json.dumps(tags),
        "version": "v1", "expiresAt": "2027-03-01T12:00:00.000Z",
    }, 'W/"1"')


def test_a_journal_lists_the_user_and_tag_partitions_of_its_version() -> None:
    assert journal_pks(_entry("alice", ["news", "lang:fr"])) == [user_pk("alice"), tag_pk("news"), tag_pk("lang:fr")]
    assert journal_pks(_entry(None, [])) == []
    # An empty user id is a user (hasUser), not anonymous.
    assert journal_pks(_entry("", ["a"])) == [user_pk(""), tag_pk("a")]
