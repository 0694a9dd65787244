"""Helpers for the log tests: parse a process's output as JSON lines, run the Procfile's own lines."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from sandbox.process import free_port

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("time", "level", "logger", "message", "request_id")
ISO_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def json_lines(text: str, *, where: str) -> list[dict[str, Any]]:
    """Every non-empty line of ``text`` as a JSON object with the contract's fields; fails on any other line."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{where}, line {number} is not JSON: {line[:500]!r}") from None
        assert isinstance(record, dict), f"{where}, line {number}: {line[:500]!r}"
        missing = [key for key in REQUIRED if key not in record]
        assert not missing, f"{where}, line {number} lacks {missing}: {line[:500]!r}"
        assert ISO_MS_UTC.fullmatch(record["time"]), record["time"]
        assert record["level"] in LEVELS, record["level"]
        out.append(record)
    return out


def base_env(**overrides: str) -> dict[str, str]:
    """The test run's environment (DEBUG off, test PostgreSQL and Redis), the virtualenv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("LOG_FORMAT", None)
    env.update(overrides)
    return env


class Line:
    """One Procfile line (bash -c, its own process group), stdout and stderr each to a file."""

    def __init__(self, name: str, *, env: dict[str, str], logs: Path, command: str | None = None) -> None:
        from tests.core.test_procfile import procfile_commands  # here: test_procfile imports this module

        self.name = name
        self.command = command or procfile_commands(ROOT / "Procfile")[name]
        self.out_path, self.err_path = logs / f"{name}.out", logs / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                ["bash", "-c", self.command],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return


@contextlib.contextmanager
def procfile_web(env: dict[str, str], logs: Path) -> Iterator[tuple[str, Line]]:
    """The Procfile's ``web`` line (1 worker) on a free port; yields once it answers, stops it afterwards."""
    port = free_port()
    web = Line("web", env={**env, "PORT": str(port), "WEB_CONCURRENCY": "1"}, logs=logs)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert web.alive(), f"web died:\n{web.out()[-2000:]}\n{web.err()[-3000:]}"
            try:
                requests.get(f"{base}/v1/health", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine imports slowly: wait on
                assert time.monotonic() < deadline, f"web did not answer:\n{web.err()[-3000:]}"
                time.sleep(0.2)
        yield base, web
    finally:
        web.stop()
