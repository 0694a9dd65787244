"""A real gunicorn serving the project on a free loopback port, for tests and benchmarks that need HTTP
exactly as production answers it (body limits, connection handling)."""

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from sandbox.process import free_port

ROOT = Path(__file__).resolve().parent.parent


def die_with_parent() -> None:
    """In the child: SIGTERM when the parent dies, so an interrupted run leaves no server behind."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@contextlib.contextmanager
def gunicorn(
    *, env: dict[str, str] | None = None, workers: int = 1, log_path: Path | None = None, start_timeout: float = 20
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start gunicorn (sync workers) and yield ``(base_url, process)`` once ``/v1/health`` answers."""
    port = free_port()
    log = log_path.open("wb") if log_path else None
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        + ["--workers", str(workers), "--worker-class", "sync", "--timeout", "120", "--log-level", "warning"],
        cwd=ROOT,
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.DEVNULL if log else None,
        stderr=log,
        preexec_fn=die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                requests.get(f"{base}/v1/health", timeout=1)
                break
            except (requests.ConnectionError, requests.Timeout):  # a busy box: the first request loads the URLconf
                if time.monotonic() > deadline or process.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:] if log_path else ""
                    raise RuntimeError(f"gunicorn did not start: {tail}") from None
                time.sleep(0.1)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            log.close()
