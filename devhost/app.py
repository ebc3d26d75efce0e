"""`DevHost`: the function app served on this machine as the Functions host would serve it.

HTTP routes under `routePrefix`, queue triggers and outputs, timers, and the host's admin calls
(`POST /admin/functions/{name}`, `GET /admin/host/status`). Every function folder stays as
`func start` expects it; nothing here is imported by the functions themselves.

https://learn.microsoft.com/azure/azure-functions/functions-manually-run-non-http
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import azure.functions as func
from aiohttp import web
from multidict import CIMultiDict

from devhost.config import (
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    HostConfig,
    HostConfigError,
    discover_functions,
    load_host_json,
)
from devhost.invoke import Invoker, LoadedFunction, OutputValue, load_entry
from devhost.ncrontab import CronSchedule, ScheduleError
from devhost.queues import QueueClients, QueueListener, admin_message, resolve_connection
from devhost.routing import Route, RouteError, Router, RouteTemplate, parse_methods
from devhost.timers import TimerRunner
from shared.errors import ConfigError
from shared.settings import load_local_settings

log = logging.getLogger("devhost")

MAX_BODY_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024


class HostStartupError(Exception):
    """The app cannot be served as it is; the message lists every problem found."""


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def to_web_response(value: Any) -> web.Response:
    """What the worker makes of an HTTP output: an HttpResponse, or a bare str/bytes body."""
    if value is None:
        return web.Response(status=204)
    if isinstance(value, str | bytes):
        value = func.HttpResponse(value)
    if not isinstance(value, func.HttpResponse):
        raise TypeError(f"an HTTP function must return func.HttpResponse, not {type(value).__name__}")
    headers: CIMultiDict[str] = CIMultiDict()
    for key, item in value.headers.items():
        headers.add(key, item)
    if "Content-Type" not in headers:
        mimetype = value.mimetype
        headers["Content-Type"] = f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
    return web.Response(status=value.status_code, body=value.get_body(), headers=headers)


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class DevHost:
    """Serve the function app in `root` on `host:port` (port 0: any free port, see `.port`).

    In tests: `async with DevHost(root, port=0) as host: ... host.url ...`, or `await start()` /
    `await stop()`. Settings come from `os.environ`, then `root/local.settings.json`.
    """

    def __init__(self, root: Path, port: int = 7071, host: str = "127.0.0.1", *,
                 max_body_bytes: int = MAX_BODY_BYTES, shutdown_grace: float = 5.0) -> None:
        self.root = root.resolve()
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        # How long stop() lets running queue invocations finish before cancelling them.
        self.shutdown_grace = shutdown_grace
        self.config = HostConfig()
        self.functions: dict[str, LoadedFunction] = {}
        self._router: Router[LoadedFunction] = Router()
        self._timers: dict[str, TimerRunner] = {}
        self._listeners: list[QueueListener] = []
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._clients: QueueClients | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._invoker: Invoker | None = None
        self._added_to_path = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> DevHost:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        load_local_settings(self.root / "local.settings.json")
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
            self._added_to_path = True
        try:
            self.config = load_host_json(self.root)
        except HostConfigError as exc:
            raise HostStartupError(str(exc)) from exc
        self._load_functions()
        threads = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
        self._executor = ThreadPoolExecutor(
            max_workers=int(threads) if threads.isdigit() and int(threads) > 0 else None,
            thread_name_prefix="devhost-sync",
        )
        self._clients = QueueClients(os.environ, self.config.queues.message_encoding)
        self._invoker = Invoker(self._executor, self._clients)
        for fn in self.functions.values():
            if fn.trigger_type == QUEUE_TRIGGER:
                self._listeners.append(QueueListener(fn, self._clients, self._invoker, self.config.queues))
            elif fn.trigger_type == TIMER_TRIGGER:
                self._timers[fn.name] = TimerRunner(fn, self._invoker)
        await self._start_http()
        for listener in self._listeners:
            listener.start()
        for timer in self._timers.values():
            timer.start()
        self._log_functions()

    def _load_functions(self) -> None:
        problems: list[str] = []
        try:
            specs = discover_functions(self.root)
        except (HostConfigError, ConfigError) as exc:
            raise HostStartupError(str(exc)) from exc
        for spec in specs:
            try:
                fn = load_entry(spec, self.root)
                trigger = spec.trigger
                route: Route[LoadedFunction] | None = None
                if trigger.type == HTTP_TRIGGER:
                    methods = trigger.props.get("methods")
                    route = Route(
                        RouteTemplate.parse(trigger.get_str("route", spec.name)),
                        parse_methods(methods if isinstance(methods, list) else None),
                        fn,
                    )
                elif trigger.type == TIMER_TRIGGER:
                    CronSchedule.parse(trigger.get_str("schedule"))
                for binding in spec.bindings:
                    if binding.type in ("queue", QUEUE_TRIGGER):
                        if not binding.get_str("queueName"):
                            raise HostConfigError(f"binding {binding.name!r} has no queueName")
                        resolve_connection(binding.get_str("connection") or "AzureWebJobsStorage", os.environ)
            except (HostConfigError, ConfigError, RouteError, ScheduleError) as exc:
                text = str(exc)
                problems.append(text if f"function {spec.name}" in text else f"function {spec.name}: {text}")
                continue
            except Exception as exc:
                log.exception("function %s failed to load", spec.name)
                problems.append(f"function {spec.name}: {type(exc).__name__}: {exc}")
                continue
            if route is not None:
                self._router.add(route)
            self.functions[spec.name] = fn
        if problems:
            raise HostStartupError("cannot start:\n  " + "\n  ".join(problems))

    async def _start_http(self) -> None:
        app = web.Application()
        app.router.add_get("/admin/host/status", self._host_status)
        app.router.add_post("/admin/functions/{name}", self._admin_invoke)
        app.router.add_route("*", "/{tail:.*}", self._http_trigger)
        # No access log: one line per invocation is the promise, and paths carry device ids.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    def _log_functions(self) -> None:
        lines = []
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        for fn in self.functions.values():
            trigger = fn.spec.trigger
            if trigger.type == HTTP_TRIGGER:
                methods = trigger.props.get("methods")
                shown = ",".join(m.upper() for m in methods) if isinstance(methods, list) and methods else "*"
                lines.append(f"  {fn.name}: [{shown}] {self.url}{prefix}/{trigger.get_str('route', fn.name)}")
            elif trigger.type == QUEUE_TRIGGER:
                lines.append(f"  {fn.name}: queueTrigger ({trigger.get_str('queueName')})")
            else:
                lines.append(f"  {fn.name}: timerTrigger ({trigger.get_str('schedule')})")
        log.info("devhost serving %s on %s\nFunctions:\n%s", self.root, self.url, "\n".join(lines))

    async def stop(self) -> None:
        """Stop triggers, let running invocations finish briefly, close clients. Safe to call twice."""
        await asyncio.gather(*(listener.stop(self.shutdown_grace) for listener in self._listeners))
        self._listeners.clear()
        for timer in self._timers.values():
            await timer.stop()
        self._timers.clear()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._clients is not None:
            await self._clients.close()
            self._clients = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._added_to_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(self.root))
            self._added_to_path = False

    # HTTP

    async def _http_trigger(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        if prefix:
            if path.lower() != prefix.lower() and not path.lower().startswith(prefix.lower() + "/"):
                return self._not_found(request)
            path = path[len(prefix):]
        match = self._router.resolve(request.method, path)
        if match is None:
            return self._not_found(request)
        if match.target is None:
            allowed = ", ".join(sorted(match.allowed))
            return error_response(405, "method_not_allowed", f"{request.method} is not allowed here; use {allowed}",
                                  headers={"Allow": allowed})
        fn = match.target
        try:
            body = await _read_body(request, self.max_body_bytes)
        except _BodyTooLarge:
            return error_response(413, "payload_too_large", f"the body must be at most {self.max_body_bytes} bytes")
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        params: dict[str, str] = {}
        for key, value in request.query.items():
            params.setdefault(key, value)
        http_request = func.HttpRequest(
            request.method, str(request.url), headers=headers, params=params, route_params=match.values, body=body,
        )
        out = next((b for b in fn.spec.outputs if b.type == "http"), None)

        def convert(value: Any, outputs: Mapping[str, OutputValue]) -> web.Response:
            if out is None:
                return web.Response(status=204)
            return to_web_response(value if out.name == "$return" else outputs[out.name].get())

        assert self._invoker is not None
        result = await self._invoker.invoke(fn, http_request, detail=f"method={request.method}", convert=convert)
        if not result.succeeded:
            message = f"function {fn.name} failed: {type(result.error).__name__}; see the devhost log"
            return error_response(500, "internal_error", message)
        response: web.Response = result.converted
        return response

    @staticmethod
    def _not_found(request: web.Request) -> web.Response:
        return error_response(404, "not_found", f"no function serves {request.method} {request.rel_url.path}")

    # Admin

    async def _host_status(self, request: web.Request) -> web.Response:
        return web.json_response({"state": "Running", "version": "devhost", "functions": sorted(self.functions)})

    async def _admin_invoke(self, request: web.Request) -> web.Response:
        wanted = request.match_info["name"].lower()
        fn = next((f for name, f in self.functions.items() if name.lower() == wanted), None)
        if fn is None:
            return error_response(404, "function_not_found", f"no function named {request.match_info['name']!r}")
        if fn.trigger_type == HTTP_TRIGGER:
            return error_response(400, "http_function", f"{fn.name} is HTTP-triggered: call its route instead")
        try:
            raw = await _read_body(request, self.max_body_bytes)
        except _BodyTooLarge:
            return error_response(413, "payload_too_large", f"the body must be at most {self.max_body_bytes} bytes")
        text = ""
        if raw.strip():
            try:
                data = json.loads(raw)
            except ValueError:
                return error_response(400, "invalid_json", 'the body must be JSON like {"input": "..."}')
            value = data.get("input") if isinstance(data, dict) else None
            if value is not None and not isinstance(value, str):
                return error_response(400, "invalid_input", '"input" must be a string')
            text = value or ""
        task = asyncio.create_task(self._run_admin(fn, text), name=f"admin-{fn.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return web.Response(status=202)

    async def _run_admin(self, fn: LoadedFunction, text: str) -> None:
        assert self._invoker is not None
        if fn.trigger_type == TIMER_TRIGGER:
            await self._timers[fn.name].run_now(past_due=False, detail="reason=admin")
        else:
            await self._invoker.invoke(fn, admin_message(text), detail="reason=admin")


__all__ = ["MAX_BODY_BYTES", "DevHost", "HostStartupError", "error_response", "to_web_response"]
