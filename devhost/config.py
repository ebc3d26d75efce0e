"""Reading the function app as the Functions host does: `host.json`, each folder's `function.json`,
and `%SETTING%` references in binding properties.

https://learn.microsoft.com/azure/azure-functions/functions-host-json
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json
https://learn.microsoft.com/azure/azure-functions/functions-bindings-expressions-patterns#binding-expressions---app-settings
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from shared.errors import ConfigError

_SETTING_REF = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")

HTTP_TRIGGER = "httpTrigger"
QUEUE_TRIGGER = "queueTrigger"
TIMER_TRIGGER = "timerTrigger"
TRIGGERS = (HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER)


class HostConfigError(Exception):
    """The app's host.json or a function.json is not something the host could load."""


def parse_timespan(value: object, what: str) -> timedelta:
    """A .NET TimeSpan as host.json writes it (`[d.]hh:mm:ss[.fffffff]`), or a number of milliseconds."""
    if isinstance(value, bool):
        raise HostConfigError(f"{what} must be a time span like \"00:00:30\", not {value!r}")
    if isinstance(value, int | float):
        return timedelta(milliseconds=value)
    if isinstance(value, str):
        m = _TIMESPAN.match(value.strip())
        if m:
            days, hours, minutes, seconds, fraction = m.groups()
            return timedelta(
                days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=int(seconds),
                microseconds=int((fraction or "0").ljust(7, "0")) // 10,
            )
    raise HostConfigError(f"{what} must be a time span like \"00:00:30\", not {value!r}")


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues`; defaults are the Storage extension's (v5), except `newBatchThreshold`,
    which depends on the core count there and is `batchSize / 2` here."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: Literal["base64", "none"] = "base64"

    @property
    def max_concurrency(self) -> int:
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)


def _int(section: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HostConfigError(f"host.json extensions.queues.{key} must be a whole number from {low} to {high}")
    return value


def parse_host_json(data: Mapping[str, Any]) -> HostConfig:
    """The parts of host.json that change how functions are triggered."""
    extensions = data.get("extensions") or {}
    if not isinstance(extensions, Mapping):
        raise HostConfigError("host.json extensions must be an object")
    http = extensions.get("http") or {}
    prefix = http.get("routePrefix", "api") if isinstance(http, Mapping) else "api"
    if not isinstance(prefix, str):
        raise HostConfigError("host.json extensions.http.routePrefix must be a string")
    q = extensions.get("queues") or {}
    if not isinstance(q, Mapping):
        raise HostConfigError("host.json extensions.queues must be an object")
    batch = _int(q, "batchSize", 16, 1, 32)  # 32 is the most one Get Messages call returns
    encoding = str(q.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise HostConfigError("host.json extensions.queues.messageEncoding must be \"base64\" or \"none\"")
    polling = parse_timespan(q.get("maxPollingInterval", "00:01:00"), "host.json extensions.queues.maxPollingInterval")
    if polling <= timedelta(0):
        raise HostConfigError("host.json extensions.queues.maxPollingInterval must be positive")
    return HostConfig(
        route_prefix=prefix.strip("/"),
        queues=QueueOptions(
            batch_size=batch,
            new_batch_threshold=_int(q, "newBatchThreshold", batch // 2, 0, 1000),
            max_dequeue_count=_int(q, "maxDequeueCount", 5, 1, 1000),
            visibility_timeout=parse_timespan(
                q.get("visibilityTimeout", "00:00:00"), "host.json extensions.queues.visibilityTimeout"
            ),
            max_polling_interval=polling,
            message_encoding=encoding,  # type: ignore[arg-type]
        ),
    )


def load_host_json(root: Path) -> HostConfig:
    path = root / "host.json"
    if not path.is_file():
        raise HostConfigError(f"{path} not found: is --root the function app's folder?")
    return parse_host_json(_json_object(path))


def _json_object(path: Path) -> Mapping[str, Any]:
    """A JSON object from a file (a BOM allowed, as Core Tools allows it), or HostConfigError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise HostConfigError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(data, Mapping):
        raise HostConfigError(f"{path} must hold a JSON object")
    return data


def resolve_settings(value: str, env: Mapping[str, str], where: str) -> str:
    """Replace each `%NAME%` with the app setting NAME, failing with the setting's name if unset."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise ConfigError(name, f"is not set (referenced as %{name}% by {where})")
        return env[name]

    return _SETTING_REF.sub(sub, value)


@dataclass(frozen=True)
class Binding:
    """One entry of function.json `bindings`, with `%SETTING%`s already resolved."""

    type: str
    direction: str
    name: str
    props: Mapping[str, Any]

    def get_str(self, key: str, default: str = "") -> str:
        value = self.props.get(key, default)
        return value if isinstance(value, str) else default


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    directory: Path
    script_file: Path
    entry_point: str
    bindings: tuple[Binding, ...]

    @property
    def trigger(self) -> Binding:
        return next(b for b in self.bindings if b.type in TRIGGERS)

    @property
    def outputs(self) -> tuple[Binding, ...]:
        return tuple(b for b in self.bindings if b.direction == "out")


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true")


def _resolve_props(raw: Mapping[str, Any], env: Mapping[str, str], where: str) -> dict[str, Any]:
    return {k: resolve_settings(v, env, where) if isinstance(v, str) else v for k, v in raw.items()}


def load_function(directory: Path, env: Mapping[str, str]) -> FunctionSpec | None:
    """The function in `directory`, or None when it is disabled."""
    name = directory.name
    path = directory / "function.json"
    data = _json_object(path)
    if data.get("disabled") is True or _is_true(env.get(f"AzureWebJobs.{name}.Disabled")):
        return None
    raw_bindings = data.get("bindings")
    if not isinstance(raw_bindings, list) or not raw_bindings:
        raise HostConfigError(f"{path}: bindings must be a non-empty list")
    bindings = []
    for i, raw in enumerate(raw_bindings):
        if not isinstance(raw, Mapping):
            raise HostConfigError(f"{path}: bindings[{i}] must be an object")
        where = f"function {name}, binding {raw.get('name', i)!r}"
        props = _resolve_props(raw, env, where)
        kind, direction, bname = props.get("type"), props.get("direction"), props.get("name")
        if not isinstance(kind, str) or not isinstance(bname, str) or direction not in ("in", "out", "inout"):
            raise HostConfigError(f"{path}: bindings[{i}] needs a type, a name and a direction in/out")
        bindings.append(Binding(kind, direction, bname, props))
    triggers = [b for b in bindings if b.type.endswith("Trigger")]
    if len(triggers) != 1:
        raise HostConfigError(f"{path}: a function has exactly one trigger, found {len(triggers)}")
    if triggers[0].type not in TRIGGERS:
        supported = ", ".join(TRIGGERS)
        raise HostConfigError(f"{path}: trigger {triggers[0].type!r} is not supported by devhost ({supported})")
    for b in bindings:
        if b is not triggers[0] and not (b.direction == "out" and b.type in ("http", "queue")):
            raise HostConfigError(f"{path}: binding {b.name!r} ({b.type}, {b.direction}) is not supported by devhost")
    script = directory / str(data.get("scriptFile") or "__init__.py")
    entry = data.get("entryPoint") or "main"
    if not isinstance(entry, str) or not entry.isidentifier():
        raise HostConfigError(f"{path}: entryPoint must be a Python name")
    return FunctionSpec(name, directory, script.resolve(), entry, tuple(bindings))


def discover_functions(root: Path, env: Mapping[str, str] | None = None) -> list[FunctionSpec]:
    """Every enabled function: each direct subfolder of `root` holding a function.json."""
    env = os.environ if env is None else env
    specs = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and (p / "function.json").is_file()):
        spec = load_function(directory, env)
        if spec is not None:
            specs.append(spec)
    return specs


def module_name(spec: FunctionSpec, root: Path) -> str:
    """The module to import for `scriptFile`, as a dotted name under the app root (as the worker does)."""
    try:
        rel = spec.script_file.relative_to(root.resolve())
    except ValueError:
        raise HostConfigError(f"function {spec.name}: scriptFile {spec.script_file} is outside the app") from None
    if rel.suffix != ".py":
        raise HostConfigError(f"function {spec.name}: scriptFile must be a .py file")
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


__all__ = [
    "Binding",
    "FunctionSpec",
    "HostConfig",
    "HostConfigError",
    "QueueOptions",
    "discover_functions",
    "load_function",
    "load_host_json",
    "module_name",
    "parse_host_json",
    "parse_timespan",
    "resolve_settings",
]
