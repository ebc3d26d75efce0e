"""HTTP: apps register, read and delete their install's channel (contract section 1).

`PUT|GET|DELETE /api/channels/{deviceId}`. Thin by design: typed input from the binding, one
call into `shared.registrations`, and the answer in the one JSON shape.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import registrations, runtime
from shared.errors import ConfigError, StorageError, ValidationError
from shared.http import empty, error_response, json_response, unavailable
from shared.settings import get_settings
from shared.validation import validate_device_id

log = logging.getLogger(__name__)


async def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        settings = get_settings()
        device_id = validate_device_id(req.route_params.get("deviceId"))
        caller = registrations.caller_from_headers(req.headers, settings)
        store = runtime.channel_store(settings)
        method = req.method.upper()
        if method == "PUT":
            result = await registrations.register(store, device_id, caller, req.get_body(), settings)
            return json_response(result.registration.to_json(), 201 if result.created else 200)
        if method == "GET":
            reg = await registrations.lookup(store, device_id, caller)
            return json_response(reg.to_json())
        if method == "DELETE":
            await registrations.unregister(store, device_id, caller)
            return empty(204)
        return error_response(405, "method_not_allowed", "use PUT, GET or DELETE", {"Allow": "GET, PUT, DELETE"})
    except ValidationError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except StorageError as exc:
        log.warning("register_channel: storage fault: %s", exc)
        return unavailable()
    except ConfigError as exc:
        log.error("register_channel: %s", exc)
        return error_response(500, "configuration_error", "the service is misconfigured; see its logs")
