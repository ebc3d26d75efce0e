"""The one JSON shape of HTTP answers, errors included (contract section 1).

Every error is `{"error": {"code": "<snake_case>", "message": "<what to fix>"}}` with a 4xx
status; storage faults are `503` with `Retry-After`.
"""

from __future__ import annotations

import json

import azure.functions as func

RETRY_AFTER_SECONDS = 5


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
        mimetype="application/json",
        charset="utf-8",
    )


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None
                   ) -> func.HttpResponse:
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def unavailable() -> func.HttpResponse:
    return error_response(
        503, "storage_unavailable", "storage is unreachable right now; retry after a few seconds",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def empty(status: int = 204) -> func.HttpResponse:
    return func.HttpResponse(status_code=status, headers={"Cache-Control": "no-store"})
