"""The sandbox as a process (sandbox.process, `python -m sandbox`): no Django, CLI flags, stops with its parent."""

import os
import subprocess
import sys
import time

from sandbox.process import PROJECT_ROOT, start_sandbox
from tests.sandbox.support import message, send


def test_sandbox_module_does_not_import_django():
    code = "import sys, sandbox.app, sandbox.load, sandbox.process; assert 'django' not in sys.modules"

    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, timeout=30)

    assert result.returncode == 0, result.stderr.decode()


def test_sandbox_imports_no_app_of_ours():
    # the fake of Meta stands apart from the service it fakes Meta for
    apps = ("config", "core", "tokens", "templates_registry", "broadcasts", "events", "whatsapp")
    code = (
        "import sys, sandbox.__main__, sandbox.app, sandbox.load, sandbox.process; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {apps!r}))"
    )

    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, timeout=30)

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "[]"


def test_cli_refuses_an_unknown_default_outcome():
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--port", "1", "--default-outcome", "bogus"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert b"unknown outcome" in result.stderr


def test_cli_options_reach_the_sandbox():
    with start_sandbox(
        latency_ms=5,
        phone_mps_cap=7,
        default_outcome="http503",
        read_after_ms=10,
        pair_rate_limit_ms=6000,
        max_recorded=3,
    ) as box:
        config = box.config()
        assert config["pair_rate_limit_ms"] == 6000

        assert (config["latency_ms"], config["phone_mps_cap"], config["default_outcome"]) == (5, 7, "http503")
        assert config["read_after_ms"] == 10
        assert send(box).status_code == 503
        # only the last `max_recorded` requests are kept, and the stats say how many were dropped
        for index in range(4):
            send(box, message(to=f"+57300111220{index}"))
        assert [r["seq"] for r in box.requests()] == [3, 4, 5]
        assert box.stats()["dropped_records"] == 2


def test_sandbox_stops_when_its_parent_dies():
    # given a process that starts a sandbox and dies without stopping it
    code = "import os; from sandbox.process import start_sandbox; print(start_sandbox().pid); os._exit(0)"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, timeout=30)
    pid = int(result.stdout)

    # then the orphaned sandbox exits by itself within a few seconds
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and not _zombie(pid):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
