"""Fixtures for tests that talk to the local WhatsApp sandbox over real HTTP.

Other test packages can reuse them by importing both into their conftest:
`from tests.whatsapp.conftest import sandbox, sandbox_server  # noqa: F401`.
"""

import pytest

from sandbox.process import SandboxProcess, start_sandbox


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
