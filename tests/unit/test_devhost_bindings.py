"""Queue message encoding, output values, connection lookup and HTTP response conversion (devhost)."""

import base64

import azure.functions as func
import pytest

from devhost.app import to_web_response
from devhost.queues import (
    MessageEncodingError,
    decode_body,
    encode_body,
    output_messages,
    resolve_connection,
)
from shared.errors import ConfigError
from shared.settings import azurite_connection_string


def test_decode_body() -> None:
    assert decode_body('{"a": "é"}', "none") == '{"a": "é"}'.encode()
    assert decode_body(base64.b64encode(b"\x00\xff").decode(), "base64") == b"\x00\xff"
    with pytest.raises(MessageEncodingError, match="messageEncoding"):
        decode_body('{"not": "base64"}', "base64")


def test_encode_body() -> None:
    assert encode_body("héllo", "none") == "héllo"
    assert encode_body(b"bytes", "none") == "bytes"
    assert encode_body("héllo", "base64") == base64.b64encode("héllo".encode()).decode()
    assert encode_body(b"\xff", "base64") == "/w=="
    with pytest.raises(MessageEncodingError, match="UTF-8"):
        encode_body(b"\xff", "none")


def test_output_messages() -> None:
    assert output_messages("one") == ["one"]
    assert output_messages(b"raw") == [b"raw"]
    assert output_messages(["a", b"b", func.QueueMessage(body="c")]) == ["a", b"b", b"c"]
    assert output_messages("x" for _ in range(2)) == ["x", "x"]
    assert output_messages([]) == []
    with pytest.raises(TypeError, match=r"json\.dumps"):
        output_messages({"a": 1})
    with pytest.raises(TypeError):
        output_messages(42)
    with pytest.raises(TypeError):
        output_messages([["nested"]])


def test_connection_lookup() -> None:
    explicit = azurite_connection_string(queue_port=1234)
    assert resolve_connection("AzureWebJobsStorage", {"AzureWebJobsStorage": explicit}).connection_string == explicit
    dev = resolve_connection("AzureWebJobsStorage", {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert dev.connection_string is not None and "10001" in dev.connection_string
    # The host also tries the AzureWebJobs prefix.
    assert resolve_connection("Jobs", {"AzureWebJobsJobs": explicit}).connection_string == explicit
    ident = resolve_connection("AzureWebJobsStorage", {"AzureWebJobsStorage__accountName": "acct",
                                                       "AzureWebJobsStorage__clientId": "cid"})
    assert ident.account_url == "https://acct.queue.core.windows.net" and ident.client_id == "cid"
    uri = resolve_connection("S", {"S__queueServiceUri": "https://q.example"})
    assert uri.account_url == "https://q.example"
    with pytest.raises(ConfigError, match="AzureWebJobsStorage"):
        resolve_connection("AzureWebJobsStorage", {})
    with pytest.raises(ConfigError, match="connection string"):
        resolve_connection("S", {"S": "not-a-connection-string"})


def test_http_response_conversion() -> None:
    resp = to_web_response(func.HttpResponse('{"a": 1}', status_code=201, mimetype="application/json",
                                             headers={"X-One": "1", "Retry-After": "5"}))
    assert resp.status == 201
    assert resp.body == b'{"a": 1}'
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-One"] == "1" and resp.headers["Retry-After"] == "5"
    text = to_web_response(func.HttpResponse("hi"))
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    explicit = to_web_response(func.HttpResponse(b"<x/>", headers={"content-type": "application/xml"}))
    assert explicit.headers.getall("Content-Type") == ["application/xml"]
    assert to_web_response("plain").status == 200
    assert to_web_response(None).status == 204
    with pytest.raises(TypeError, match="HttpResponse"):
        to_web_response({"a": 1})
