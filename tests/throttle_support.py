"""Shared by the request-limit tests (per token, per organization): the limiter's clock pinned and a client per token.

Windows are fixed and aligned to the clock: the limiter's clock is pinned to one instant, half past an hour (the
start of a minute), so no window turns over between a test's requests whenever the suite runs, and Retry-After is
exact: 60 s left in the minute's window, 1800 s in the hour's."""

import pytest
from rest_framework.test import APIClient

MID_HOUR = 500_000 * 3600 + 1800.0


@pytest.fixture(autouse=True)
def _pinned_clock(monkeypatch):
    """Autouse in every module that imports it."""
    monkeypatch.setattr("core.api.throttling.time.time", lambda: MID_HOUR)


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
