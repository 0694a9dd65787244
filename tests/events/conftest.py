import hashlib
import hmac

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from events import endpoints, queue
from tests.events.helpers import Receiver


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


@pytest.fixture
def allow_private(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True


@pytest.fixture
def endpoint_for(allow_private):
    """Registers an endpoint through the service (as the API does); returns (endpoint, secret)."""

    def _make(organization, url, events=None):
        issued = endpoints.endpoint_create(organization=organization, url=url, events=events)
        return issued.endpoint, issued.secret

    return _make


@pytest.fixture
def enqueued(monkeypatch):
    """Records the endpoint ids whose delivery task would be queued, instead of using the broker."""
    calls: list[str] = []
    monkeypatch.setattr(queue, "delivery_enqueue", calls.append)
    return calls


def contract_signature_valid(request: dict, secret: str) -> bool:
    """docs/api.md, written here independently: v1=hex(HMAC-SHA256(secret utf-8, "<timestamp>.<raw body>")); the
    header holds one or more space-separated signatures (two during a secret rotation's overlap), any may match."""
    timestamp = request["headers"]["X-Webhook-Timestamp"]
    expected = hmac.new(secret.encode("utf-8"), timestamp.encode() + b"." + request["body"], hashlib.sha256)
    given = request["headers"]["X-Webhook-Signature"].split(" ")
    return any(hmac.compare_digest(g, "v1=" + expected.hexdigest()) for g in given)


def standard_webhooks_valid(request: dict, secret: str | bytes) -> bool:
    """The ``standardwebhooks`` library itself: ``Webhook(secret).verify(body, headers)``."""
    try:
        Webhook(secret).verify(request["body"], request["headers"])
    except WebhookVerificationError:
        return False
    return True
