"""GET /metrics: refused outside METRICS_ALLOWED_CIDRS; after a real broadcast (gunicorn + a Celery worker + the
sandbox over HTTP, each with the same fresh PROMETHEUS_MULTIPROC_DIR), the series of the operations docs exist
with the right labels and values that match what happened."""

from __future__ import annotations

import ipaddress
import json
import math
import os
from pathlib import Path

import pytest
import redis
import requests
from django.db import connection
from django.test import RequestFactory
from prometheus_client.parser import text_string_to_metric_families

from broadcasts.models import Broadcast, Send
from core.api.metrics import metrics_view
from events.endpoints import endpoint_create
from sandbox.process import start_sandbox
from tests.delivery_support import (
    FAST_DELIVERY_SETTINGS,
    CeleryProcess,
    broadcast_make,
    celery_env,
    database_url_for,
    numbers,
    wait_for,
)
from tests.events.helpers import Receiver
from tests.gunicorn_process import gunicorn

APP_SECRET = "metrics-app-secret"


# --- who may scrape -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.9", "2001:db8::1", "::ffff:10.0.0.1", "", "not-an-ip"])
def test_metrics_are_a_404_envelope_outside_the_allowed_cidrs(address, db):
    response = metrics_view(RequestFactory().get("/metrics", REMOTE_ADDR=address))
    assert response.status_code == 404
    error = json.loads(response.content)["error"]
    assert (error["code"], error["message"]) == ("not_found", "Not found.")
    assert b"msg_" not in response.content


@pytest.mark.parametrize("address", ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"])
def test_metrics_answer_loopback_by_default(address, db):
    response = metrics_view(RequestFactory().get("/metrics", REMOTE_ADDR=address))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"msg_sends_pending", "msg_oldest_pending_send_age_seconds", "msg_worker_last_seen_seconds"} <= names


def test_a_configured_network_is_allowed_and_loopback_then_is_not(db, settings):
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert metrics_view(RequestFactory().get("/metrics", REMOTE_ADDR="10.20.30.40")).status_code == 200
    assert metrics_view(RequestFactory().get("/metrics", REMOTE_ADDR="127.0.0.1")).status_code == 404


def test_a_refused_post_looks_like_any_unknown_path_and_an_allowed_one_is_405(db):
    assert metrics_view(RequestFactory().post("/metrics", REMOTE_ADDR="10.1.2.3")).status_code == 404
    response = metrics_view(RequestFactory().post("/metrics", REMOTE_ADDR="127.0.0.1"))
    assert response.status_code == 405 and json.loads(response.content)["error"]["code"] == "method_not_allowed"


def test_the_route_is_mounted_without_a_token(client, db):
    # Django's test client comes from 127.0.0.1
    assert client.get("/metrics").status_code == 200


# --- the series after a real broadcast ------------------------------------------------------------------------


def _families(base: str) -> dict:
    text = requests.get(f"{base}/metrics", timeout=10).text
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict, family: str, sample: str, **labels) -> float | None:
    for s in families[family].samples if family in families else []:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_series_after_a_real_broadcast(channel, template, org, tmp_path, settings):
    redis_url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(redis_url).flushdb()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    name = connection.settings_dict["NAME"]
    sandbox = start_sandbox(latency_ms=20)
    customer = Receiver().__enter__()
    worker = None
    try:
        env = celery_env(
            database_url=database_url_for(name),
            graph_url=sandbox.graph_url,
            overrides={
                **FAST_DELIVERY_SETTINGS,
                "REDIS_URL": redis_url,
                "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
                "WHATSAPP_APP_SECRET": APP_SECRET,
                "WEBHOOKS_ALLOW_PRIVATE": "true",
            },
        )
        # Given a customer endpoint, and 40 recipients at 10/s: two fail for good (131026), one is retried once
        settings.WEBHOOKS_ALLOW_PRIVATE = True
        endpoint_create(organization=org, url=customer.url, events=["message.sent"])
        channel.max_mps = 10
        channel.save()
        recipients = numbers(40)
        for to in recipients[:2]:
            sandbox.script(to.lstrip("+"), ["error:131026"])
        sandbox.script(recipients[2].lstrip("+"), ["http500"])
        with gunicorn(env=env, workers=2, log_path=tmp_path / "web.log") as (base, _):
            sandbox.config(webhook_url=f"{base}/v1/webhooks/whatsapp", app_secret=APP_SECRET, delivered_after_ms=30)
            worker = CeleryProcess("worker", env=env, concurrency=2).start()
            broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
            from celery import current_app

            with current_app.connection_for_write(redis_url) as conn:
                current_app.send_task("broadcasts.dispatch", args=[broadcast.id], connection=conn)

            # When it is half way, then pending sends, their age and the channel's rate against its cap show
            wait_for(lambda: len(sandbox.requests()) >= 25, timeout=30, message="25 POSTs")
            mid = _families(base)
            assert 0 < _value(mid, "msg_sends_pending", "msg_sends_pending") < 40
            assert 0 < _value(mid, "msg_oldest_pending_send_age_seconds", "msg_oldest_pending_send_age_seconds") < 30
            assert (
                _value(mid, "msg_channel_cap_sends_per_second", "msg_channel_cap_sends_per_second", channel=channel.id)
                == 10
            )
            rate = _value(mid, "msg_channel_sends_per_second", "msg_channel_sends_per_second", channel=channel.id)
            assert rate is not None and 5 <= rate <= 10
            assert _value(mid, "msg_celery_queue_depth", "msg_celery_queue_depth", queue="delivery") is not None
            assert {s.labels["queue"] for s in mid["msg_celery_queue_depth"].samples} == {
                "delivery",
                "events",
                "maintenance",
            }

            # And when every send is final and the customer has its 38 message.sent events
            wait_for(
                lambda: Broadcast.objects.filter(id=broadcast.id, status="COMPLETED").exists(),
                timeout=60,
                message="broadcast completed",
            )
            wait_for(lambda: len(customer.requests) >= 38, timeout=30, message="38 customer events")
            # and the sandbox has posted every status webhook it owed (delivered for the 38 accepted)
            stats = wait_for(
                lambda: (w := sandbox.stats()["webhooks"])["statuses"] >= 38 and not w["pending_statuses"] and w,
                timeout=30,
                message=f"webhooks: {sandbox.stats()['webhooks']}",
            )
            webhooks = stats["posts"] - stats["failed_posts"]
            posts = sandbox.requests()
            after = _families(base)
    finally:
        if worker is not None:
            worker.stop()
        customer.__exit__(None, None, None)
        sandbox.stop()

    sends = {"channel": channel.id}
    assert set(Send.objects.filter(broadcast=broadcast).values_list("status", flat=True)) >= {"FAILED"}
    assert _value(after, "msg_sends", "msg_sends_total", **sends, outcome="sent", code="") == 38
    assert _value(after, "msg_sends", "msg_sends_total", **sends, outcome="failed", code="131026") == 2
    retried = [
        s for s in after["msg_sends"].samples if s.name == "msg_sends_total" and s.labels["outcome"] == "retried"
    ]
    assert [(s.labels["channel"], s.value) for s in retried] == [(channel.id, 1)]
    # one latency observation per POST, on the messages route
    assert len(posts) == 41
    assert _value(after, "msg_meta_request_seconds", "msg_meta_request_seconds_count", **sends, route="messages") == 41
    assert (
        _value(
            after, "msg_meta_request_seconds", "msg_meta_request_seconds_bucket", **sends, route="messages", le="+Inf"
        )
        == 41
    )
    latency_sum = _value(after, "msg_meta_request_seconds", "msg_meta_request_seconds_sum", **sends, route="messages")
    assert 41 * 0.015 < latency_sum < 41 * 2
    # every webhook the sandbox posted was timed
    assert _value(after, "msg_meta_webhook_seconds", "msg_meta_webhook_seconds_count") >= webhooks
    assert _value(after, "msg_event_deliveries", "msg_event_deliveries_total", outcome="delivered") == len(
        customer.requests
    )
    assert _value(after, "msg_sends_pending", "msg_sends_pending") == 0
    assert _value(after, "msg_oldest_pending_send_age_seconds", "msg_oldest_pending_send_age_seconds") == 0
    assert _value(after, "msg_worker_last_seen_seconds", "msg_worker_last_seen_seconds") < 60
    assert math.isinf(_value(after, "msg_beat_last_seen_seconds", "msg_beat_last_seen_seconds"))  # no beat here
    # the worker's pool children and gunicorn's workers wrote to the one directory
    assert len({p.name.rsplit("_", 1)[1] for p in Path(multiproc).glob("*.db")}) >= 3
