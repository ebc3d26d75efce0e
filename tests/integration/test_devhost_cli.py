"""`python -m devhost` as a process: serves until SIGINT, exits cleanly; bad settings exit 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.azurite import free_port

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_APP = ROOT / "tests" / "fixtures" / "devhost_app"


def devhost_env(azurite_conn: str, unique: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobs", "DH_"))}
    env.update(
        AzureWebJobsStorage=azurite_conn, DH_ECHO_QUEUE=f"cli-echo-{unique}", DH_OUT_QUEUE=f"cli-out-{unique}",
        DH_FAIL_QUEUE=f"cli-fail-{unique}", DH_TIMER_SCHEDULE="0 0 0 1 1 *",
    )
    env.update(extra)
    return env


def wait_until_running(url: str, proc: subprocess.Popen[str], timeout: float = 15.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"devhost exited early: {proc.communicate()[1]}"
        try:
            with urllib.request.urlopen(url + "/admin/host/status", timeout=1) as resp:
                return dict(json.loads(resp.read()))
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError("devhost did not answer /admin/host/status in time")


def test_cli_serves_until_sigint(azurite_conn: str, unique: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--port", str(port), "--root", str(FIXTURE_APP)],
        cwd=ROOT, env=devhost_env(azurite_conn, unique), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        status = wait_until_running(f"http://127.0.0.1:{port}", proc)
        assert status["state"] == "Running"
        assert "dh_queue_echo" in status["functions"]  # type: ignore[operator]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/greet/cli", timeout=5) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "dh_http: [GET,POST]" in err  # the function list printed at startup
    assert "Executed 'Functions.dh_http_sync' (Succeeded" in err
    assert "devhost stopping" in err
    assert "Traceback" not in err


def test_cli_exits_1_naming_a_missing_setting(azurite_conn: str, unique: str) -> None:
    env = devhost_env(azurite_conn, unique)
    del env["DH_OUT_QUEUE"]
    proc = subprocess.run(
        [sys.executable, "-m", "devhost", "--port", str(free_port()), "--root", str(FIXTURE_APP)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 1
    assert "DH_OUT_QUEUE" in proc.stderr
