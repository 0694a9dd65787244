"""Log lines (docs/operations.md): LOG_FORMAT=json writes one JSON object per line with time, level, logger, message and
the request id, from the web (gunicorn, its access lines included), the Celery worker and beat; text is readable.

The processes are the Procfile's own lines, and their real output is parsed: every line must be JSON.
"""

import io
import logging
import os
import re
import subprocess
import sys
import time

import pytest
import redis
import requests
from django.db import connection

from core.logging import ContextFilter, JsonFormatter, RedactFilter, TextFormatter, request_id_reset, request_id_set
from tests.core.logs_support import ROOT, Line, base_env, json_lines, procfile_web
from tests.core.test_procfile import url_with_path
from tests.delivery_support import database_url_for, wait_for


def _setting(name: str, **env: str) -> subprocess.CompletedProcess:
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    environment = base_env(DJANGO_SETTINGS_MODULE="config.settings")
    for key in ("DEBUG", "LOG_FORMAT"):
        environment.pop(key, None)
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "false"}, "json"),
        ({"DEBUG": "true"}, "text"),
        ({"DEBUG": "true", "LOG_FORMAT": "json"}, "json"),
        ({"DEBUG": "false", "LOG_FORMAT": "TEXT"}, "text"),
    ],
)
def test_log_format_defaults_to_json_unless_debug(env, expected):
    done = _setting("LOG_FORMAT", **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_an_unknown_log_format_is_refused_at_start():
    done = _setting("LOG_FORMAT", DEBUG="false", LOG_FORMAT="xml")
    assert done.returncode != 0
    assert "LOG_FORMAT must be one of json, text" in done.stderr


def _format(formatter: logging.Formatter, *, request_id: str | None, exc: bool = False, **extra) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("tests.logging.format")
    logger.addHandler(handler)
    logger.propagate = False
    token = request_id_set(request_id)
    try:
        if exc:
            try:
                raise ValueError("bad value")
            except ValueError:
                logger.exception("it failed for %s", "Ana", extra=extra)
        else:
            logger.warning("hello %s", "Ana", extra=extra)
    finally:
        request_id_reset(token)
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def test_a_json_line_has_the_contract_fields_and_the_exception():
    line = _format(JsonFormatter(), request_id="req-1", exc=True, broadcast_id="abc")
    assert line.endswith("\n") and line.count("\n") == 1
    record = json_lines(line, where="formatter")[0]
    assert list(record)[:5] == ["time", "level", "logger", "message", "request_id"]
    assert record["level"] == "ERROR" and record["logger"] == "tests.logging.format"
    assert record["message"] == "it failed for Ana" and record["request_id"] == "req-1"
    assert record["exception"].startswith("Traceback") and "ValueError: bad value" in record["exception"]
    assert record["broadcast_id"] == "abc"
    assert "task_id" not in record


def test_a_json_line_outside_a_request_has_a_null_request_id():
    record = json_lines(_format(JsonFormatter(), request_id=None), where="formatter")[0]
    assert record["request_id"] is None and "exception" not in record


def test_a_text_line_is_time_level_logger_request_id_message():
    line = _format(TextFormatter(), request_id="req-2")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING tests\.logging\.format \[req req-2\] hello Ana\n", line
    ), line
    with_exc = _format(TextFormatter(), request_id=None, exc=True)
    assert " ERROR   tests.logging.format it failed for Ana\nTraceback" in with_exc
    assert with_exc.rstrip().endswith("ValueError: bad value")


@pytest.mark.slow
def test_the_procfile_web_line_writes_only_json_lines_with_access_lines(transactional_db, tmp_path, token):
    env = base_env(DATABASE_URL=database_url_for(connection.settings_dict["NAME"]), DEBUG="false")
    with procfile_web(env, tmp_path) as (base, web):
        health = requests.get(f"{base}/v1/health", headers={"X-Request-Id": "probe-1"}, timeout=10)
        missing = requests.get(f"{base}/v1/no/such/thing?x=1", timeout=10)
        listed = requests.get(f"{base}/v1/messages/bulk", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        time.sleep(0.5)
    assert health.status_code == 200 and health.headers["X-Request-Id"] == "probe-1"
    assert missing.status_code == 404 and listed.status_code == 200

    out = json_lines(web.out(), where="web stdout")
    err = json_lines(web.err(), where="web stderr")
    # access lines, on stdout, one per request, with the response's request id
    access = {line["request_id"]: line for line in out if line["logger"] == "gunicorn.access"}
    assert set(access) >= {"probe-1", missing.headers["X-Request-Id"], listed.headers["X-Request-Id"]}
    probe = access["probe-1"]
    assert (probe["method"], probe["path"], probe["status"]) == ("GET", "/v1/health", 200)
    assert probe["message"].startswith("GET /v1/health 200 ") and probe["duration_ms"] >= 0
    assert access[missing.headers["X-Request-Id"]]["path"] == "/v1/no/such/thing?x=1"
    # the application's lines, on stderr, with the request id of the request they belong to
    not_found = [line for line in err if line["logger"] == "django.request"]
    assert [line["request_id"] for line in not_found] == [missing.headers["X-Request-Id"]]
    assert not_found[0]["level"] == "WARNING" and not_found[0]["message"] == "Not Found: /v1/no/such/thing"
    # and gunicorn's own lines too
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in err)


@pytest.mark.slow
def test_the_worker_and_beat_lines_write_json_with_the_task(transactional_db, tmp_path):
    env = base_env(
        DATABASE_URL=database_url_for(connection.settings_dict["NAME"]),
        REDIS_URL=url_with_path(os.environ["REDIS_URL"], "/9"),
        DEBUG="false",
        WORKER_CONCURRENCY="1",
        DELIVERY_START_DUE_INTERVAL="1",
        CELERY_BEAT_SCHEDULE_FILENAME=str(tmp_path / "beat-schedule"),
    )
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    worker = Line("worker", env=env, logs=tmp_path)
    beat = Line("beat", env=env, logs=tmp_path)
    try:
        done = re.compile(r"Task broadcasts\.start_due\[[0-9a-f-]+\] succeeded")
        wait_for(
            lambda: done.search(worker.err()) or not worker.alive(),
            timeout=90,
            interval=0.3,
            message="a beat task run by the worker",
        )
        assert worker.alive() and beat.alive(), worker.err()[-3000:] + beat.err()[-3000:]
        worker_out, worker_err, beat_out, beat_err = worker.out(), worker.err(), beat.out(), beat.err()
    finally:
        beat.stop()
        worker.stop()

    # nothing but JSON lines: the banners are log lines too (stdout stays empty while running)
    assert worker_out.strip() == "" and beat_out.strip() == ""
    lines = json_lines(worker_err, where="worker")
    banner = [line for line in lines if line["message"].startswith("celery worker ")]
    assert banner and "[queues]" in banner[0]["message"]
    assert any(line["message"].endswith(" ready.") for line in lines)
    succeeded = [line for line in lines if done.search(line["message"])]
    assert succeeded and succeeded[0]["logger"] == "celery.app.trace"
    assert succeeded[0]["task_name"] == "broadcasts.start_due"
    assert succeeded[0]["task_id"] in succeeded[0]["message"]
    # a line written outside a task (the consumer's "received") claims none
    assert all("task_id" not in line for line in lines if line["logger"] == "celery.worker.strategy")
    beat_lines = json_lines(beat_err, where="beat")
    assert any(line["message"] == "beat: Starting..." for line in beat_lines)
    assert any("Sending due task broadcasts-start-due" in line["message"] for line in beat_lines)
