"""Pure validation: channel URIs (a security boundary), install ids, tags, key encoding."""

from __future__ import annotations

import pytest

from shared.errors import ValidationError
from shared.keys import encode_key
from shared.validation import validate_channel_uri, validate_device_id, validate_tags

HOSTS = ("notify.windows.com",)
GOOD = "https://wns2-by3p.notify.windows.com/?token=AwYAAAB%2bXyz%3d%3d"


@pytest.mark.parametrize(
    "uri",
    [
        GOOD,
        "https://notify.windows.com/?token=abc",
        "https://cloud.notify.windows.com:443/?token=abc",
        "HTTPS://DM3P.NOTIFY.WINDOWS.COM/?token=abc",
    ],
)
def test_wns_uris_are_accepted_and_kept_byte_for_byte(uri: str) -> None:
    assert validate_channel_uri(uri, HOSTS) == uri


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("http://cloud.notify.windows.com/?token=a", "invalid_channel_uri"),
        ("https://evil.com/?token=a", "channel_host_not_allowed"),
        ("https://notify.windows.com.evil.com/?token=a", "channel_host_not_allowed"),
        ("https://evilnotify.windows.com/?token=a", "channel_host_not_allowed"),
        ("https://user@x.notify.windows.com/?token=a", "invalid_channel_uri"),
        ("https://user:pw@x.notify.windows.com/?token=a", "invalid_channel_uri"),
        ("https://evil.com@x.notify.windows.com/", "invalid_channel_uri"),
        ("https://x.notify.windows.com:8443/?token=a", "channel_host_not_allowed"),
        ("https://x.notify.windows.com:0/", "invalid_channel_uri"),
        ("https://x.notify.windows.com:99999/", "invalid_channel_uri"),
        ("https://x.notify.windows.com:/", "invalid_channel_uri"),
        ("https://x.notify.windows.com:４４３/", "invalid_channel_uri"),
        ("https://x.notify.windows.com/?token=" + "a" * 2048, "invalid_channel_uri"),
        ("https://x.notify.windows.com./?token=a", "invalid_channel_uri"),
        ("https://x.notify.windows.com\\@evil.com/", "invalid_channel_uri"),
        ("https://evil.com\\.notify.windows.com/", "invalid_channel_uri"),
        ("https://x.notіfy.windows.com/", "invalid_channel_uri"),  # Cyrillic i
        ("https://xn--x.notify.windows.com\u200b/", "invalid_channel_uri"),
        ("https://x.notify.windows.com/?token=a b", "invalid_channel_uri"),
        ("https://x.notify.windows.com/\r\nHost: evil.com", "invalid_channel_uri"),
        ("https://[::1]/?token=a", "invalid_channel_uri"),
        ("https://127.0.0.1/?token=a", "channel_host_not_allowed"),
        ("https:///?token=a", "invalid_channel_uri"),
        ("https:x.notify.windows.com/", "invalid_channel_uri"),
        ("//x.notify.windows.com/", "invalid_channel_uri"),
        ("ftp://x.notify.windows.com/", "invalid_channel_uri"),
        ("https://x..notify.windows.com/", "invalid_channel_uri"),
        ("https://-x.notify.windows.com/", "invalid_channel_uri"),
        ("", "invalid_channel_uri"),
    ],
)
def test_hostile_channel_uris_are_rejected(uri: str, code: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_channel_uri(uri, HOSTS)
    assert err.value.code == code


@pytest.mark.parametrize("value", [None, 42, ["https://x.notify.windows.com/"], {"a": 1}])
def test_non_string_channel_uri(value: object) -> None:
    with pytest.raises(ValidationError):
        validate_channel_uri(value, HOSTS)


def test_max_length_is_inclusive() -> None:
    base = "https://x.notify.windows.com/?token="
    uri = base + "a" * (2048 - len(base))
    assert validate_channel_uri(uri, HOSTS) == uri
    with pytest.raises(ValidationError):
        validate_channel_uri(uri + "a", HOSTS)


def test_an_entry_with_a_port_accepts_only_that_port() -> None:
    hosts = ("localhost:8443", "notify.windows.com")
    assert validate_channel_uri("https://localhost:8443/ch/1?token=a", hosts)
    for bad in ("https://localhost/ch/1", "https://localhost:443/ch/1", "https://localhost:8444/ch/1"):
        with pytest.raises(ValidationError):
            validate_channel_uri(bad, hosts)
    with pytest.raises(ValidationError):  # the port entry does not open other ports elsewhere
        validate_channel_uri("https://x.notify.windows.com:8443/", hosts)


@pytest.mark.parametrize("device", ["0f8fad5b-d9cb-469f-a165-70867728950e", "a" * 16, "A_b-" * 16])
def test_device_ids_accepted(device: str) -> None:
    assert validate_device_id(device) == device


@pytest.mark.parametrize(
    "device", ["short", "a" * 65, "0f8fad5b d9cb 469f", "../../etc/passwd00", "abcdefghijklmnop\n", None, 12]
)
def test_device_ids_rejected(device: object) -> None:
    with pytest.raises(ValidationError) as err:
        validate_device_id(device)
    assert err.value.code == "invalid_device_id"


def test_tags_are_sorted_and_deduplicated() -> None:
    assert validate_tags(["news", "lang:fr", "news", "#x@y.z-_"]) == ("#x@y.z-_", "lang:fr", "news")
    assert validate_tags(None) == ()
    assert validate_tags(["t"] * 60)


@pytest.mark.parametrize(
    "tags", ["news", [""], ["a" * 121], ["has space"], ["é"], [1], [f"t{i}" for i in range(61)], {"a": 1}]
)
def test_tags_rejected(tags: object) -> None:
    with pytest.raises(ValidationError) as err:
        validate_tags(tags)
    assert err.value.code == "invalid_tags"


@pytest.mark.parametrize("value", ["alice", "a/b\\c#d?e", "é漢字", "~7E", "x" * 1000, "\x00\x1f\x7f", "'%"])
def test_key_encoding_is_safe_and_injective(value: str) -> None:
    encoded = encode_key(value)
    assert len(encoded) <= 400 + 2
    assert not any(ch in encoded for ch in "/\\#?'%") and encoded.isprintable()


def test_key_encoding_is_injective_on_tricky_inputs() -> None:
    values = ["alice", "a/b\\c#d?e", "é漢字", "~7E", "~", "x" * 1000, "x" * 1001, "\x00", "'%", "~H", "a~2Fb", "a/b"]
    assert len({encode_key(v) for v in values}) == len(values)


def test_key_encoding_distinguishes_escape_lookalikes() -> None:
    assert encode_key("~2F") != encode_key("/")
    assert encode_key("a" * 401) != encode_key("a" * 402)
