"""`docs/openapi.yaml` checked against the real app's answers, so the document cannot drift.

The function app runs through devhost in-process against Azurite and is called over HTTP. Every
answer is checked against the document: its status is documented for the operation, its body is
valid against the documented schema (jsonschema, draft 2020-12 as OpenAPI 3.1 uses), its error
code is among the codes listed for that status, and the documented headers (`Retry-After`,
`Cache-Control`) are there. Every documented status and error code must be met at least once,
every documented code must exist in the code, and every code the function can produce must be
documented.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from devhost import DevHost
from shared import runtime
from shared.settings import reset_settings

ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = ROOT / "docs" / "openapi.yaml"
API_PATH = "/api/channels/{deviceId}"
METHODS = ("put", "get", "delete")
BASE_URI = "urn:winpush:openapi"
URI = "https://cloud.notify.windows.com/?token=AwYAAAB%2bXyz"
# Connection refused at once: the storage SDK fails fast, and the function must answer 503.
UNREACHABLE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + "A" * 88
    + ";TableEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)
# Modules whose code strings reach the HTTP answers of register_channel.
API_SOURCES = ("register_channel/__init__.py", "shared/registrations.py", "shared/validation.py", "shared/http.py")
# Answer headers a client acts on: when an answer carries one, the document must describe it there.
SIGNIFICANT_HEADERS = ("Retry-After", "Cache-Control", "Location", "Allow", "WWW-Authenticate")
# Codes answered by the host before the function runs (documented in the text, not per status).
HOST_CODES = frozenset({"method_not_allowed"})


def load_doc() -> dict[str, Any]:
    doc = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


class Spec:
    """The parts of an OpenAPI document this test needs: operations, responses, schemas, codes."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(BASE_URI, resource)

    def resolve(self, node: Any) -> Any:
        """Follow local `$ref`s (`#/components/...`) until a node without one."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), f"only local references are expected, not {ref}"
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def responses(self, method: str) -> dict[str, dict[str, Any]]:
        operation = self.doc["paths"][API_PATH][method]
        return {status: self.resolve(r) for status, r in operation["responses"].items()}

    def codes(self, schema: Any) -> set[str]:
        """The error codes a response schema enumerates (under `error.code`, through allOf)."""
        schema = self.resolve(schema)
        out: set[str] = set()
        if not isinstance(schema, dict):
            return out
        for sub in schema.get("allOf", []):
            out |= self.codes(sub)
        code = self.resolve(schema.get("properties", {}).get("error", {}))
        code = self.resolve(code.get("properties", {}).get("code", {}))
        out |= set(code.get("enum", []))
        return out

    def response_codes(self, response: dict[str, Any]) -> set[str]:
        content = response.get("content", {}).get("application/json")
        return self.codes(content["schema"]) if content else set()

    def all_codes(self) -> dict[tuple[str, str], set[str]]:
        return {
            (method, status): codes
            for method in METHODS
            for status, response in self.responses(method).items()
            if (codes := self.response_codes(response))
        }

    def validator(self, schema: Any) -> Draft202012Validator:
        return Draft202012Validator(
            _rebase(schema), registry=self.registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )

    def check(self, method: str, status: int, headers: Mapping[str, str], body: bytes) -> list[str]:
        """What in this answer the document does not describe (empty: it matches)."""
        where = f"{method.upper()} {API_PATH} -> {status}"
        response = self.responses(method).get(str(status))
        if response is None:
            return [f"{where}: status not documented (body {body[:200]!r})"]
        problems: list[str] = []
        documented_headers = {name.lower() for name in response.get("headers", {})}
        problems += [f"{where}: answer carries {name}, which the document does not list"
                     for name in SIGNIFICANT_HEADERS if name in headers and name.lower() not in documented_headers]
        for name, header in response.get("headers", {}).items():
            header = self.resolve(header)
            value = headers.get(name)
            if value is None:
                if header.get("required"):
                    problems.append(f"{where}: documented header {name} is missing")
                continue
            schema = self.resolve(header.get("schema", {}))
            instance: object = int(value) if schema.get("type") == "integer" and value.isdigit() else value
            problems += [f"{where}: header {name}={value!r}: {e.message}" for e in self.validator(schema).iter_errors(
                instance)]
        content = response.get("content")
        if not content:
            if body:
                problems.append(f"{where}: documented without a body, got {body[:200]!r}")
            return problems
        ctype = headers.get("Content-Type", "").split(";")[0].strip()
        if ctype not in content:
            return [*problems, f"{where}: Content-Type {ctype!r} is not among {sorted(content)}"]
        try:
            data = json.loads(body)
        except ValueError:
            return [*problems, f"{where}: body is not JSON: {body[:200]!r}"]
        problems += [
            f"{where}: {'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message}"
            for e in self.validator(content[ctype]["schema"]).iter_errors(data)
        ]
        codes = self.response_codes(response)
        if codes and isinstance(data, dict) and isinstance(data.get("error"), dict):
            code = data["error"].get("code")
            if code not in codes:
                problems.append(f"{where}: error code {code!r} is not among the documented {sorted(codes)}")
        return problems


def _rebase(node: Any) -> Any:
    """A copy whose local `$ref`s point into the registered document."""
    if isinstance(node, dict):
        return {k: (BASE_URI + v if k == "$ref" and isinstance(v, str) and v.startswith("#") else _rebase(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


@dataclass
class Recorder:
    """Calls the API and checks every answer; remembers what was met."""

    spec: Spec
    http: aiohttp.ClientSession
    url: str = ""
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    seen_codes: set[str] = field(default_factory=set)

    async def call(self, method: str, device: str, *, body: object = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = None, expect: int | None = None,
                   code: str | None = None) -> Any:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.http.request(method.upper(), f"{self.url}/api/channels/{device}", data=data,
                                     headers=headers or {}) as resp:
            payload = await resp.read()
            self.problems += self.spec.check(method, resp.status, resp.headers, payload)
            status, got_headers = resp.status, resp.headers
        self.seen.add((method, str(status)))
        parsed = json.loads(payload) if payload else None
        got_code = parsed["error"].get("code") if isinstance(parsed, dict) and isinstance(
            parsed.get("error"), dict) else None
        if got_code:
            self.seen_codes.add(got_code)
        what = f"{method.upper()} {device}"
        assert expect is None or status == expect, f"{what}: expected {expect}, got {status} {payload[:300]!r}"
        assert code is None or got_code == code, f"{what}: expected code {code}, got {got_code}"
        assert "Retry-After" not in got_headers or status == 503
        return parsed


def configure(env: pytest.MonkeyPatch, **overrides: str) -> None:
    """Every setting devhost would otherwise copy from local.settings.json is set here, so the
    monkeypatch restores all of them and nothing leaks into other tests."""
    values: dict[str, str] = {
        "FUNCTIONS_WORKER_RUNTIME": "python", "WNS_AUTH": "entra", "WNS_TENANT_ID": "", "WNS_CLIENT_ID": "",
        "WNS_CLIENT_SECRET": "", "WNS_TOKEN_URL": "", "WNS_CHANNEL_HOSTS": "notify.windows.com",
        "CHANNEL_TTL_DAYS": "30", "PUSH_AUTH": "none", "PUSH_REQUIRE_USER": "false",
        # A queue no one else uses, and a prune that never fires during the test.
        "PUSH_JOBS_QUEUE": "openapi-test-jobs", "EXPIRE_SCHEDULE": "0 0 0 1 1 *",
    }
    local = ROOT / "local.settings.json"
    if local.is_file():
        for key, value in json.loads(local.read_text(encoding="utf-8")).get("Values", {}).items():
            if isinstance(value, str):
                values.setdefault(key, value)
    values.update(overrides)
    for key, value in values.items():
        env.setenv(key, value)
    reset_settings()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def test_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    doc = load_doc()
    assert str(doc["openapi"]).startswith("3.1")
    validator.validate(doc)
    assert set(doc["paths"][API_PATH]) - {"parameters"} == set(METHODS)


def test_documented_codes_exist_in_the_code_and_the_code_is_documented() -> None:
    spec = Spec(load_doc())
    documented = set().union(*spec.all_codes().values())
    sources = "\n".join(p.read_text(encoding="utf-8")
                        for d in ("shared", "register_channel") for p in sorted((ROOT / d).rglob("*.py")))
    missing = sorted(c for c in documented if f'"{c}"' not in sources)
    assert not missing, f"docs/openapi.yaml lists codes that no code produces: {missing}"
    produced: set[str] = set()
    for name in API_SOURCES:
        text = (ROOT / name).read_text(encoding="utf-8")
        produced |= set(re.findall(r'ValidationError\(\s*"([a-z0-9_]+)"', text))
        produced |= set(re.findall(r'error_response\(\s*\d+,\s*"([a-z0-9_]+)"', text))
    assert {"invalid_json", "not_found", "storage_unavailable"} <= produced  # the patterns still find codes
    text = DOC_PATH.read_text(encoding="utf-8")
    assert all(c in text for c in HOST_CODES)
    undocumented = sorted(produced - documented - HOST_CODES)
    assert not undocumented, f"the API produces codes docs/openapi.yaml does not list: {undocumented}"


def test_checker_notices_drift() -> None:
    """The check is only worth something if a changed document makes real answers fail it."""
    good = load_doc()
    reg = {"deviceId": "0f8fad5b-d9cb-469f-a165-70867728950e", "userId": None, "channelUri": URI,
           "tags": ["news"], "registeredAt": "2027-03-01T08:15:30.123Z", "expiresAt": "2027-03-31T08:15:30.123Z"}
    ok = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}
    busy = {"error": {"code": "storage_unavailable", "message": "retry"}}
    assert Spec(good).check("put", 201, ok, json.dumps(reg).encode()) == []
    assert Spec(good).check("get", 503, {**ok, "Retry-After": "5"}, json.dumps(busy).encode()) == []

    no_expiry = copy.deepcopy(good)
    schema = no_expiry["components"]["schemas"]["Registration"]
    del schema["properties"]["expiresAt"]
    schema["required"].remove("expiresAt")
    assert any("expiresAt" in p for p in Spec(no_expiry).check("put", 201, ok, json.dumps(reg).encode()))

    no_503 = copy.deepcopy(good)
    del no_503["paths"][API_PATH]["get"]["responses"]["503"]
    assert Spec(no_503).check("get", 503, {**ok, "Retry-After": "5"}, json.dumps(busy).encode())

    assert Spec(good).check("get", 503, ok, json.dumps(busy).encode())  # Retry-After missing
    no_retry_after = copy.deepcopy(good)
    del no_retry_after["components"]["responses"]["StorageUnavailable"]["headers"]["Retry-After"]
    assert Spec(no_retry_after).check("get", 503, {**ok, "Retry-After": "5"}, json.dumps(busy).encode())
    other = {"error": {"code": "storage_down", "message": "retry"}}
    assert Spec(good).check("get", 503, {**ok, "Retry-After": "5"}, json.dumps(other).encode())
    assert Spec(good).check("put", 201, ok, json.dumps({**reg, "extra": 1}).encode())
    assert Spec(good).check("delete", 204, ok, b"{}")


async def test_real_answers_match_the_document(
    clean_env: pytest.MonkeyPatch, azurite_conn: str, unique: str, http: aiohttp.ClientSession
) -> None:
    spec = Spec(load_doc())
    rec = Recorder(spec, http)
    dev = f"openapi-{unique}-0001"
    user_dev = f"openapi-{unique}-0002"

    configure(clean_env, AzureWebJobsStorage=azurite_conn)
    await runtime.reset()
    async with DevHost(ROOT, port=0) as host:
        rec.url = host.url
        body = await rec.call("put", dev, body={"channelUri": URI, "tags": ["news", "lang:fr", "news"]}, expect=201)
        assert (body["deviceId"], body["userId"], body["channelUri"], body["tags"]) == (
            dev, None, URI, ["lang:fr", "news"])
        # Unknown fields are ignored and null tags mean none, as documented.
        body = await rec.call("put", dev, body={"channelUri": URI, "tags": None, "appVersion": "2.1"}, expect=200)
        assert body["tags"] == []
        await rec.call("get", dev, expect=200)
        await rec.call("delete", dev, expect=204)
        await rec.call("delete", dev, expect=204)
        await rec.call("get", dev, expect=404, code="not_found")

        for method in METHODS:
            await rec.call(method, "short", body={"channelUri": URI}, expect=400, code="invalid_device_id")
        for bad, code in [
            (b"{", "invalid_json"),
            (b"[]", "invalid_json"),
            (json.dumps({"channelUri": URI, "userId": "mallory"}).encode(), "user_in_body"),
            (b'{"tags": []}', "missing_channel_uri"),
            (b'{"channelUri": "http://cloud.notify.windows.com/?token=x"}', "invalid_channel_uri"),
            (b'{"channelUri": "https://evilnotify.windows.com/?token=x"}', "channel_host_not_allowed"),
            (json.dumps({"channelUri": URI, "tags": "news"}).encode(), "invalid_tags"),
            (json.dumps({"channelUri": URI, "tags": ["x"] * 61}).encode(), "invalid_tags"),
        ]:
            await rec.call("put", dev, raw=bad, expect=400, code=code)
        big = json.dumps({"channelUri": URI, "padding": "x" * 20_000}).encode()
        await rec.call("put", dev, raw=big, expect=413, code="body_too_large")

        # Methods the function does not serve: refused by the host, in the one error shape.
        async with http.post(f"{host.url}/api/channels/{dev}", json={"channelUri": URI}) as resp:
            assert resp.status == 405 and "PUT" in resp.headers["Allow"]
            error = await resp.json()
        assert error["error"]["code"] == "method_not_allowed"
        assert not list(spec.validator(spec.doc["components"]["schemas"]["Error"]).iter_errors(error))

        configure(clean_env, AzureWebJobsStorage=azurite_conn, PUSH_AUTH="platform", PUSH_REQUIRE_USER="true")
        for method in METHODS:
            await rec.call(method, user_dev, body={"channelUri": URI}, expect=401, code="authentication_required")
        await rec.call("put", user_dev, body={"channelUri": URI}, headers={"X-MS-CLIENT-PRINCIPAL-ID": "u" * 300},
                       expect=401, code="invalid_principal")
        alice = {"X-MS-CLIENT-PRINCIPAL-ID": f"alice-{unique}"}
        body = await rec.call("put", user_dev, body={"channelUri": URI}, headers=alice, expect=201)
        assert body["userId"] == f"alice-{unique}"
        await rec.call("get", user_dev, headers={"X-MS-CLIENT-PRINCIPAL-ID": f"bob-{unique}"}, expect=404)
        await rec.call("get", user_dev, headers=alice, expect=200)
        await rec.call("delete", user_dev, headers=alice, expect=204)

        configure(clean_env, AzureWebJobsStorage=azurite_conn, CHANNEL_TTL_DAYS="0")
        for method in METHODS:
            await rec.call(method, dev, body={"channelUri": URI}, expect=500, code="configuration_error")

    configure(clean_env, AzureWebJobsStorage=UNREACHABLE)
    await runtime.reset()
    try:
        async with DevHost(ROOT, port=0) as host:
            rec.url = host.url
            for method in METHODS:
                await rec.call(method, dev, body={"channelUri": URI}, expect=503, code="storage_unavailable")
    finally:
        await runtime.reset()

    assert not rec.problems, "answers the document does not describe:\n" + "\n".join(rec.problems)
    documented = {(m, s) for m in METHODS for s in spec.responses(m)}
    assert documented - rec.seen == set(), f"documented but never exercised: {sorted(documented - rec.seen)}"
    assert rec.seen - documented == set()
    codes = set().union(*spec.all_codes().values())
    assert codes - rec.seen_codes == set(), f"codes documented but never met: {sorted(codes - rec.seen_codes)}"
