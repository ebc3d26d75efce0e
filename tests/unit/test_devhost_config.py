"""host.json, function.json discovery, %SETTING% resolution and entry-point loading (devhost)."""

import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from devhost.config import (
    HostConfigError,
    discover_functions,
    load_host_json,
    module_name,
    parse_host_json,
    parse_timespan,
    resolve_settings,
)
from devhost.invoke import load_entry
from shared.errors import ConfigError

FIXTURE_APP = Path(__file__).resolve().parents[1] / "fixtures" / "devhost_app"


def test_timespans() -> None:
    assert parse_timespan("00:00:30", "x") == timedelta(seconds=30)
    assert parse_timespan("01:02:03", "x") == timedelta(hours=1, minutes=2, seconds=3)
    assert parse_timespan("1.00:00:00", "x") == timedelta(days=1)
    assert parse_timespan("00:00:00.25", "x") == timedelta(milliseconds=250)
    assert parse_timespan(1500, "x") == timedelta(milliseconds=1500)
    for bad in ("30s", "", "00:00", True, None):
        with pytest.raises(HostConfigError, match="time span"):
            parse_timespan(bad, "x")


def test_host_json_defaults() -> None:
    cfg = parse_host_json({"version": "2.0"})
    assert cfg.route_prefix == "api"
    q = cfg.queues
    assert (q.batch_size, q.new_batch_threshold, q.max_dequeue_count) == (16, 8, 5)
    assert q.visibility_timeout == timedelta(0)
    assert q.max_polling_interval == timedelta(minutes=1)
    assert q.message_encoding == "base64"
    assert q.max_concurrency == 24


def test_host_json_values() -> None:
    cfg = parse_host_json({
        "extensions": {
            "http": {"routePrefix": "/v1/"},
            "queues": {"batchSize": 8, "newBatchThreshold": 4, "maxDequeueCount": 3,
                       "visibilityTimeout": "00:00:10", "maxPollingInterval": "00:00:02",
                       "messageEncoding": "None"},
        }
    })
    assert cfg.route_prefix == "v1"
    q = cfg.queues
    assert (q.batch_size, q.new_batch_threshold, q.max_dequeue_count) == (8, 4, 3)
    assert q.visibility_timeout == timedelta(seconds=10)
    assert q.max_polling_interval == timedelta(seconds=2)
    assert q.message_encoding == "none"
    assert parse_host_json({"extensions": {"http": {"routePrefix": ""}}}).route_prefix == ""
    assert parse_host_json({"extensions": {"queues": {"batchSize": 10}}}).queues.new_batch_threshold == 5


@pytest.mark.parametrize(
    ("queues", "fragment"),
    [
        ({"batchSize": 0}, "batchSize"),
        ({"batchSize": 33}, "batchSize"),
        ({"batchSize": "8"}, "batchSize"),
        ({"maxDequeueCount": 0}, "maxDequeueCount"),
        ({"messageEncoding": "utf8"}, "messageEncoding"),
        ({"visibilityTimeout": "soon"}, "visibilityTimeout"),
        ({"maxPollingInterval": "00:00:00"}, "maxPollingInterval"),
    ],
)
def test_host_json_rejects_bad_queue_settings(queues: dict[str, object], fragment: str) -> None:
    with pytest.raises(HostConfigError, match=fragment):
        parse_host_json({"extensions": {"queues": queues}})


def test_the_repository_host_json_parses() -> None:
    cfg = load_host_json(Path(__file__).resolve().parents[2])
    assert cfg.queues.message_encoding == "none"  # contract section 2


def test_missing_host_json(tmp_path: Path) -> None:
    with pytest.raises(HostConfigError, match=r"host\.json"):
        load_host_json(tmp_path)


def test_resolve_settings() -> None:
    env = {"Q": "push-jobs", "S": "0 */5 * * * *"}
    assert resolve_settings("%Q%", env, "f") == "push-jobs"
    assert resolve_settings("%Q%-%Q%x", env, "f") == "push-jobs-push-jobsx"
    assert resolve_settings("plain", env, "f") == "plain"
    with pytest.raises(ConfigError, match="MISSING") as info:
        resolve_settings("%MISSING%", env, "function f, binding 'msg'")
    assert info.value.setting == "MISSING"
    assert "function f" in str(info.value)


def write_function(root: Path, name: str, function_json: dict[str, object], code: str | None = None,
                   script: str = "__init__.py") -> None:
    folder = root / name
    folder.mkdir()
    (folder / "function.json").write_text(json.dumps(function_json))
    if code is not None:
        (folder / script).write_text(code)


QUEUE_FN = {"bindings": [{"type": "queueTrigger", "direction": "in", "name": "msg", "queueName": "%QN%"}]}


def test_discovery_skips_disabled_and_non_function_folders(tmp_path: Path) -> None:
    write_function(tmp_path, "a_fn", QUEUE_FN)
    write_function(tmp_path, "b_off", {**QUEUE_FN, "disabled": True})
    write_function(tmp_path, "c_setting_off", QUEUE_FN)
    (tmp_path / "shared").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    env = {"QN": "jobs", "AzureWebJobs.c_setting_off.Disabled": "True"}
    specs = discover_functions(tmp_path, env)
    assert [s.name for s in specs] == ["a_fn"]
    spec = specs[0]
    assert spec.trigger.get_str("queueName") == "jobs"
    assert spec.entry_point == "main"
    assert spec.script_file == (tmp_path / "a_fn" / "__init__.py").resolve()
    assert module_name(spec, tmp_path) == "a_fn"


def test_discovery_of_the_fixture_app_skips_its_disabled_function() -> None:
    env = {"DH_ECHO_QUEUE": "a", "DH_OUT_QUEUE": "b", "DH_FAIL_QUEUE": "c", "DH_TIMER_SCHEDULE": "0 0 0 1 1 *"}
    names = [s.name for s in discover_functions(FIXTURE_APP, env)]
    assert names == ["dh_http", "dh_http_boom", "dh_http_sync", "dh_queue_echo", "dh_queue_fail", "dh_timer"]


def test_a_missing_setting_names_it(tmp_path: Path) -> None:
    write_function(tmp_path, "a_fn", QUEUE_FN)
    with pytest.raises(ConfigError, match="QN"):
        discover_functions(tmp_path, {})


@pytest.mark.parametrize(
    ("function_json", "fragment"),
    [
        ({"bindings": []}, "non-empty"),
        ({"bindings": [{"type": "queue", "direction": "out", "name": "o", "queueName": "x"}]}, "exactly one trigger"),
        ({"bindings": [{"type": "blobTrigger", "direction": "in", "name": "b"}]}, "not supported"),
        ({"bindings": [QUEUE_FN["bindings"][0], {"type": "table", "direction": "in", "name": "t"}]}, "not supported"),
        ({"bindings": [{"type": "queueTrigger", "name": "m"}]}, "direction"),
        ({**QUEUE_FN, "entryPoint": "not a name"}, "entryPoint"),
    ],
)
def test_bad_function_json(tmp_path: Path, function_json: dict[str, object], fragment: str) -> None:
    write_function(tmp_path, "a_fn", function_json)
    with pytest.raises(HostConfigError, match=fragment):
        discover_functions(tmp_path, {"QN": "q"})


@pytest.fixture
def app_on_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("ut_dh_")]:
        del sys.modules[name]


def test_entry_point_script_file_and_async_detection(app_on_path: Path) -> None:
    write_function(app_on_path, "ut_dh_one", {**QUEUE_FN, "scriptFile": "run.py", "entryPoint": "go"},
                   "async def go(msg, context):\n    return None\n", script="run.py")
    (spec,) = discover_functions(app_on_path, {"QN": "q"})
    assert module_name(spec, app_on_path) == "ut_dh_one.run"
    fn = load_entry(spec, app_on_path)
    assert fn.is_async and fn.wants_context and fn.entry.__name__ == "go"


def test_entry_point_parameters_must_match_bindings(app_on_path: Path) -> None:
    write_function(app_on_path, "ut_dh_two", QUEUE_FN, "def main(message):\n    return None\n")
    (spec,) = discover_functions(app_on_path, {"QN": "q"})
    with pytest.raises(HostConfigError, match=r"not in function.json: \['message'\].*not in main\(\): \['msg'\]"):
        load_entry(spec, app_on_path)


def test_missing_entry_point(app_on_path: Path) -> None:
    write_function(app_on_path, "ut_dh_three", QUEUE_FN, "def other(msg):\n    return None\n")
    (spec,) = discover_functions(app_on_path, {"QN": "q"})
    with pytest.raises(HostConfigError, match="no callable 'main'"):
        load_entry(spec, app_on_path)


def test_script_file_outside_the_app(tmp_path: Path) -> None:
    write_function(tmp_path, "a_fn", {**QUEUE_FN, "scriptFile": "../../elsewhere.py"})
    (spec,) = discover_functions(tmp_path, {"QN": "q"})
    with pytest.raises(HostConfigError, match="outside the app"):
        module_name(spec, tmp_path)
