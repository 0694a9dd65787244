"""Fixtures for tests that talk to the local WhatsApp sandbox over real HTTP (one subprocess per session)."""

import pytest

from sandbox.process import SandboxProcess, start_sandbox
from tests.sandbox.support import WebhookReceiver


@pytest.fixture(scope="session")
def sandbox_server() -> SandboxProcess:
    """One sandbox subprocess for the session (starting one costs ~0.3 s); `sandbox` resets it per test."""
    server = start_sandbox(latency_ms=0)
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server) -> SandboxProcess:
    """A sandbox with no recorded requests, no scripts, no pending webhooks and its start-up config."""
    if not sandbox_server.alive():
        pytest.fail(f"the sandbox process died:\n{sandbox_server.log()}")
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
