"""Loading a function's entry point and invoking it the way the Python worker does.

The worker imports the function's module, checks that `main`'s parameters are exactly the binding
names (plus an optional `context`), awaits `async def` entry points on its event loop and runs plain
`def` ones in a thread pool. Output bindings are `func.Out` objects, or the return value for `$return`.

https://learn.microsoft.com/azure/azure-functions/functions-reference-python?pivots=python-mode-configuration
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import azure.functions as func

from devhost.config import FunctionSpec, HostConfigError, module_name

log = logging.getLogger("devhost")


class OutputValue(func.Out[Any]):
    """What an output binding parameter receives; the host reads it after `main` returns."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _TraceContext(func._abc.TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(func._abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The `context` argument, for functions that declare one."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._thread_local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return _TraceContext()

    @property
    def retry_context(self) -> Any:
        return _RetryContext()


@dataclass(frozen=True)
class LoadedFunction:
    spec: FunctionSpec
    entry: Callable[..., Any]
    is_async: bool
    wants_context: bool

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def trigger_type(self) -> str:
        return self.spec.trigger.type


def load_entry(spec: FunctionSpec, root: Path) -> LoadedFunction:
    """Import the function's module and check `main`'s parameters against function.json."""
    mod_name = module_name(spec, root)
    module = importlib.import_module(mod_name)
    entry = getattr(module, spec.entry_point, None)
    if not callable(entry):
        raise HostConfigError(f"function {spec.name}: {mod_name} has no callable {spec.entry_point!r}")
    params = inspect.signature(entry).parameters
    expected = {b.name for b in spec.bindings if b.name != "$return"}
    extra = set(params) - expected - {"context"}
    missing = expected - set(params)
    if extra or missing:
        raise HostConfigError(
            f"function {spec.name}: {spec.entry_point}() parameters must match the binding names in "
            f"function.json; not in function.json: {sorted(extra)}, not in {spec.entry_point}(): {sorted(missing)}"
        )
    wants_context = "context" in params and "context" not in expected
    return LoadedFunction(spec, entry, inspect.iscoroutinefunction(entry), wants_context)


class QueueSink(Protocol):
    """Where queue output bindings go once `main` has succeeded."""

    async def send_output(self, connection: str, queue_name: str, value: Any) -> None: ...


@dataclass
class InvocationResult:
    succeeded: bool
    value: Any = None
    outputs: dict[str, OutputValue] = field(default_factory=dict)
    converted: Any = None
    error: BaseException | None = None


class Invoker:
    """Runs one invocation: binds arguments, calls the entry point, sends queue outputs, logs one line."""

    def __init__(self, executor: Executor, queue_sink: QueueSink) -> None:
        self._executor = executor
        self._queue_sink = queue_sink

    async def invoke(
        self,
        fn: LoadedFunction,
        trigger_value: Any,
        *,
        detail: str = "",
        convert: Callable[[Any, Mapping[str, OutputValue]], Any] | None = None,
    ) -> InvocationResult:
        """Never raises for a failure of the function; `convert` turns the outputs into the trigger's
        reply (an HTTP response) and counts as part of the invocation."""
        invocation_id = str(uuid.uuid4())
        outputs = {b.name: OutputValue() for b in fn.spec.outputs if b.name != "$return"}
        kwargs: dict[str, Any] = {fn.spec.trigger.name: trigger_value, **outputs}
        if fn.wants_context:
            kwargs["context"] = InvocationContext(invocation_id, fn.name, str(fn.spec.directory))
        started = time.perf_counter()
        result = InvocationResult(succeeded=False, outputs=outputs)
        try:
            result.value = await self._call(fn, kwargs)
            await self._send_queue_outputs(fn, result)
            if convert is not None:
                result.converted = convert(result.value, outputs)
            result.succeeded = True
        except asyncio.CancelledError:
            self._log(fn, invocation_id, "Cancelled", started, detail)
            raise
        except Exception as exc:
            result.error = exc
        self._log(fn, invocation_id, "Succeeded" if result.succeeded else "Failed", started, detail, result.error)
        return result

    async def _call(self, fn: LoadedFunction, kwargs: dict[str, Any]) -> Any:
        if fn.is_async:
            coro: Awaitable[Any] = fn.entry(**kwargs)
            return await coro
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(ctx.run, fn.entry, **kwargs))

    async def _send_queue_outputs(self, fn: LoadedFunction, result: InvocationResult) -> None:
        for binding in fn.spec.outputs:
            if binding.type != "queue":
                continue
            value = result.value if binding.name == "$return" else result.outputs[binding.name].get()
            if value is None:
                continue
            await self._queue_sink.send_output(
                binding.get_str("connection") or "AzureWebJobsStorage", binding.get_str("queueName"), value
            )

    @staticmethod
    def _log(fn: LoadedFunction, invocation_id: str, status: str, started: float, detail: str,
             error: BaseException | None = None) -> None:
        ms = round((time.perf_counter() - started) * 1000)
        suffix = f" {detail}" if detail else ""
        message = "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms) trigger=%s%s"
        args = (fn.name, status, invocation_id, ms, fn.trigger_type, suffix)
        if error is None:
            log.info(message, *args)
        else:
            log.error(message, *args, exc_info=error)


__all__ = ["InvocationContext", "InvocationResult", "Invoker", "LoadedFunction", "OutputValue", "QueueSink",
           "load_entry"]
