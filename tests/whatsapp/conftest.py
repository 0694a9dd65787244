"""The client tests talk to the local sandbox over real HTTP: the sandbox's own fixtures, reused."""

from tests.sandbox.conftest import sandbox, sandbox_server  # noqa: F401
