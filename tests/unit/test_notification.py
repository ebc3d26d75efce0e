"""Notification validation, the toast builder and the WNS headers (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from defusedxml import ElementTree as SafeET  # type: ignore[import-untyped]

from shared.errors import ValidationError
from shared.notification import (
    MAX_PAYLOAD_BYTES,
    Notification,
    build_toast_xml,
    parse_notification,
    wns_headers,
)

TOAST = "<toast><visual><binding template='ToastGeneric'><text>Hi</text></binding></visual></toast>"


def rejected(raw: Any, code: str = "invalid_notification") -> str:
    with pytest.raises(ValidationError) as info:
        parse_notification(raw)
    assert info.value.code == code, info.value.message
    return info.value.message


class TestPayloads:
    @pytest.mark.parametrize(
        ("kind", "payload"),
        [
            ("toast", TOAST),
            ("tile", "<tile><visual><binding template='TileMedium'><text>1</text></binding></visual></tile>"),
            ("badge", '<badge value="7"/>'),
            ("raw", "any text, even <not xml> & such"),
        ],
    )
    def test_each_type(self, kind: str, payload: str) -> None:
        n = parse_notification({"type": kind, "payload": payload})
        assert n == Notification(type=kind, payload=payload.encode())  # type: ignore[arg-type]

    def test_xml_declaration_and_unicode(self) -> None:
        payload = '<?xml version="1.0" encoding="utf-8"?><badge value="alert"/>'
        assert parse_notification({"type": "badge", "payload": payload}).payload == payload.encode()
        text = "<toast><visual><binding template='ToastGeneric'><text>Grüße 🎉</text></binding></visual></toast>"
        assert parse_notification({"type": "toast", "payload": text}).payload == text.encode("utf-8")

    @pytest.mark.parametrize(
        ("kind", "payload"),
        [("toast", "<tile/>"), ("tile", "<toast/>"), ("badge", "<Badge/>"), ("toast", "<x:toast xmlns:x='u'/>")],
    )
    def test_root_must_match_type(self, kind: str, payload: str) -> None:
        assert "root element" in rejected({"type": kind, "payload": payload}, "invalid_xml")

    @pytest.mark.parametrize(
        "payload", ["<toast>", "<toast></tile>", "just text", "<toast/><toast/>", "<toast a='1' a='2'/>"]
    )
    def test_not_well_formed(self, payload: str) -> None:
        rejected({"type": "toast", "payload": payload}, "invalid_xml")

    def test_xxe_rejected(self) -> None:
        payload = (
            '<?xml version="1.0"?><!DOCTYPE toast [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            "<toast><visual><binding template='ToastGeneric'><text>&xxe;</text></binding></visual></toast>"
        )
        assert "DTD" in rejected({"type": "toast", "payload": payload}, "invalid_xml")

    def test_billion_laughs_rejected(self) -> None:
        payload = (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
            '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
            "<badge value='&lol3;'/>"
        )
        rejected({"type": "badge", "payload": payload}, "invalid_xml")

    def test_plain_doctype_rejected(self) -> None:
        rejected({"type": "badge", "payload": "<!DOCTYPE badge><badge value='1'/>"}, "invalid_xml")

    def test_size_limit_in_utf8_bytes(self) -> None:
        ok = "x" * MAX_PAYLOAD_BYTES
        assert len(parse_notification({"type": "raw", "payload": ok}).payload) == MAX_PAYLOAD_BYTES
        rejected({"type": "raw", "payload": ok + "x"}, "payload_too_large")
        # 2,500 characters, 5,000 bytes + the tags: counted in bytes, not characters.
        rejected({"type": "toast", "payload": "<toast>" + "é" * 2500 + "</toast>"}, "payload_too_large")

    def test_oversized_xml_rejected_before_parsing(self) -> None:
        msg = rejected({"type": "toast", "payload": "<toast>" * 3000}, "payload_too_large")
        assert "5000" in msg

    @pytest.mark.parametrize("payload", [None, "", 5, ["<toast/>"], {"a": 1}])
    def test_payload_must_be_text(self, payload: object) -> None:
        rejected({"type": "raw", "payload": payload})

    def test_lone_surrogate(self) -> None:
        rejected({"type": "raw", "payload": "\ud800"})


class TestToastBuilder:
    def test_structure(self) -> None:
        xml = build_toast_xml(["Title", "Body"], launch="page=1")
        root = SafeET.fromstring(xml)
        assert root.tag == "toast" and root.get("launch") == "page=1"
        binding = root.find("visual/binding")
        assert binding is not None and binding.get("template") == "ToastGeneric"
        assert [t.text for t in binding.findall("text")] == ["Title", "Body"]

    def test_escaping(self) -> None:
        nasty = """<&"'>"""
        n = parse_notification({"type": "toast", "text": [nasty, "</text></binding>"], "launch": nasty})
        text = n.payload.decode()
        assert "&lt;&amp;&quot;&apos;&gt;" in text
        root = SafeET.fromstring(n.payload)
        assert root.get("launch") == nasty
        assert [t.text for t in root.iter("text")] == [nasty, "</text></binding>"]

    def test_no_launch(self) -> None:
        assert SafeET.fromstring(parse_notification({"type": "toast", "text": ["a"]}).payload).get("launch") is None

    @pytest.mark.parametrize(
        "raw",
        [
            {"type": "toast", "text": []},
            {"type": "toast", "text": ["1", "2", "3", "4", "5"]},
            {"type": "toast", "text": "Title"},
            {"type": "toast", "text": ["ok", ""]},
            {"type": "toast", "text": ["ok", 3]},
            {"type": "toast", "text": ["bell\x07"]},
            {"type": "toast", "text": ["ok"], "launch": 5},
            {"type": "toast", "text": ["ok"], "launch": "a\x00"},
            {"type": "toast", "launch": "x"},
            {"type": "toast", "text": ["a"], "payload": TOAST},
            {"type": "tile", "text": ["a"]},
        ],
    )
    def test_rejected(self, raw: dict[str, Any]) -> None:
        rejected(raw)

    def test_four_lines_allowed_and_size_still_checked(self) -> None:
        assert parse_notification({"type": "toast", "text": ["a", "b", "c", "d"]}).type == "toast"
        rejected({"type": "toast", "text": ["&" * 1000]}, "payload_too_large")


class TestOptions:
    @pytest.mark.parametrize(
        "raw",
        [
            {"type": "push"},
            {"type": None},
            {"payload": TOAST},
            {"type": "toast", "payload": TOAST, "ttl": 0},
            {"type": "toast", "payload": TOAST, "ttl": -5},
            {"type": "toast", "payload": TOAST, "ttl": "60"},
            {"type": "toast", "payload": TOAST, "ttl": 1.5},
            {"type": "toast", "payload": TOAST, "ttl": True},
            {"type": "toast", "payload": TOAST, "ttl": 2**31},
            {"type": "toast", "payload": TOAST, "cache": True},
            {"type": "raw", "payload": "x", "cache": "yes"},
            {"type": "raw", "payload": "x", "tag": "t"},
            {"type": "tile", "payload": "<tile/>", "tag": "x" * 17},
            {"type": "tile", "payload": "<tile/>", "tag": ""},
            {"type": "tile", "payload": "<tile/>", "tag": "a b"},
            {"type": "tile", "payload": "<tile/>", "tag": "a\r\nX-Evil: 1"},
            {"type": "raw", "payload": "x", "priority": 0},
            {"type": "raw", "payload": "x", "priority": 5},
            {"type": "raw", "payload": "x", "priority": "1"},
            {"type": "raw", "payload": "x", "requestStatus": "true"},
            {"type": "raw", "payload": "x", "suppressPopup": True},
            "toast",
            None,
        ],
    )
    def test_rejected(self, raw: Any) -> None:
        rejected(raw)

    def test_all_options(self) -> None:
        n = parse_notification({
            "type": "tile", "payload": "<tile/>", "ttl": 600, "cache": True, "tag": "x" * 16,
            "priority": 4, "requestStatus": True,
        })
        assert (n.ttl, n.cache, n.tag, n.priority, n.request_status) == (600, True, "x" * 16, 4, True)
        assert parse_notification(n.to_json()) == n


class TestHeaders:
    def test_minimal(self) -> None:
        for kind, ctype in [("toast", "text/xml"), ("tile", "text/xml"), ("badge", "text/xml"),
                            ("raw", "application/octet-stream")]:
            n = Notification(type=kind, payload=b"x")  # type: ignore[arg-type]
            assert wns_headers(n) == {"X-WNS-Type": f"wns/{kind}", "Content-Type": ctype}

    def test_every_option(self) -> None:
        n = Notification(type="tile", payload=b"<tile/>", ttl=60, cache=False, tag="score", priority=1,
                         request_status=True)
        assert wns_headers(n) == {
            "X-WNS-Type": "wns/tile",
            "Content-Type": "text/xml",
            "X-WNS-TTL": "60",
            "X-WNS-Cache-Policy": "no-cache",
            "X-WNS-Tag": "score",
            "X-WNS-PRIORITY": "1",
            "X-WNS-RequestForStatus": "true",
        }

    def test_cache_policy_and_tag_only_where_they_apply(self) -> None:
        toast = Notification(type="toast", payload=b"<toast/>", cache=True, tag="t")
        assert "X-WNS-Cache-Policy" not in wns_headers(toast)
        assert "X-WNS-Tag" not in wns_headers(toast)
        raw = Notification(type="raw", payload=b"x", cache=True, tag="t")
        assert wns_headers(raw)["X-WNS-Cache-Policy"] == "cache"
        assert "X-WNS-Tag" not in wns_headers(raw)

    def test_never_windows_phone_headers(self) -> None:
        n = parse_notification({"type": "toast", "text": ["a"], "ttl": 5, "priority": 2, "requestStatus": True})
        names = {h.lower() for h in wns_headers(n)}
        assert not names & {"x-wns-suppresspopup", "x-wns-group", "x-wns-match"}

    def test_new_dict_each_time(self) -> None:
        n = Notification(type="raw", payload=b"x")
        wns_headers(n)["Authorization"] = "Bearer t"
        assert "Authorization" not in wns_headers(n)
