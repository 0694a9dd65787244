"""No header, path or query makes a request cost more to log than a normal one (docs/operations.md).

Costs are CPU time (``time.process_time``), the least of several rounds, so that other processes on the machine
do not decide the outcome. A quadratic redaction costs hundreds of times a normal line at these sizes (an 8 KB
``a.a.a...`` user agent once took 0.2 s a line); the bounds below leave room for noise, not for that.
"""

import datetime
import functools
import io
import time
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from core.logging import MAX_LOGGED_PATH, MAX_LOGGED_USER_AGENT, GunicornLogger, redact, truncate

SIZE = 8192
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 "
QUERY = "status=failed&limit=100&cursor=WzE3MDAwMDAwMDAsIjY3NDZmMGExYzNiMmExZjBlOWQ4YzdiNiJd&order=desc&"
BENIGN = {"user agent": UA, "query": QUERY}


def _fill(unit: str, size: int = SIZE) -> str:
    return (unit * (size // len(unit) + 1))[:size]


# Every shape that made a pattern of the redaction work harder than a normal line, and their neighbours.
ADVERSARIAL = {
    "dots": "a.",
    "digits and dots": "1.",
    "equals": "=",
    "pairs": "a=a&",
    "ampersands": "&",
    "one long token": "x",
    "unicode": "é.ß-",
    "scheme-like": "a+",
    "url colons": "a://b:",
    "url at signs": "a@",
    "key then spaces": None,  # "password" and 8 KB of spaces: the old key pattern backtracked over every split
    "repeated keys": "password ",
    "key with quotes": "access_token\"'",
    "repeated bearer": "bearer ",
    "bearer then spaces": None,
    "EAA and dots": "EAA.",
    "kbai prefix": "kbai_pk.",
    "whsec prefix": "whsec_.",
    "mixed punctuation": "a.b-c+d:",
    "slashes": "a/",
}


def adversarial(name: str, size: int = SIZE) -> str:
    if name == "key then spaces":
        return "password" + " " * (size - 9) + "&"
    if name == "bearer then spaces":
        return "bearer" + " " * (size - 7) + ","
    return _fill(ADVERSARIAL[name], size)


def cpu_seconds(work, *, repetitions: int = 8, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repetitions):
            work()
        best = min(best, time.process_time() - started)
    return best / repetitions


@functools.cache
def _benign_cost(size: int = SIZE) -> float:
    return max(cpu_seconds(lambda unit=unit: redact(_fill(unit, size), [])) for unit in BENIGN.values())


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_redaction_of_any_shape_costs_about_what_a_normal_text_does(name):
    text = adversarial(name)
    ratio = cpu_seconds(lambda: redact(text, ["configured-secret-value"])) / _benign_cost()
    assert ratio < 3, f"{name}: {ratio:.1f} times a normal text of the same size"


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_redaction_grows_linearly(name):
    # 4 times the text: linear work is 4 times the cost, quadratic 16
    small, large = adversarial(name, 4096), adversarial(name, 4 * 4096)
    growth = cpu_seconds(lambda: redact(large, [])) / cpu_seconds(lambda: redact(small, []))
    assert growth < 7, f"{name}: 4 times the text cost {growth:.1f} times as much"


def test_every_redaction_still_happens_in_an_adversarial_neighbourhood():
    noise = _fill("a.", 4000)
    text = f"{noise} password={'p' * 40} {noise} hub.verify_token=vt123456 {noise} redis://:pw0rd@h/0 {noise}"
    out = redact(text, [])
    assert "p" * 40 not in out and "vt123456" not in out and "pw0rd" not in out
    assert out.count("[REDACTED]") == 3


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("Mozilla/5.0 EAAGm0PZCZA7ZBwBAKxyz1234567890", 30, "Mozilla/5.0 ...[31 more characters]"),
        ("a=1&access_token=EAAGm0PZCZA7ZBwB", 24, "a=1&access_token=...[16 more characters]"),
        ("x" * 100, 10, "...[100 more characters]"),
    ],
)
def test_a_long_field_is_cut_at_a_separator_never_inside_a_token(text, limit, expected):
    assert truncate(text, limit) == expected


class _Response(SimpleNamespace):
    pass


def _access_logger() -> tuple[GunicornLogger, io.StringIO]:
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = GunicornLogger(cfg)
    # its own handler only: a line handed on to the test run's log capture would cost more than it does
    logger.access_log.propagate = False
    out = io.StringIO()
    for handler in logger.access_log.handlers:
        handler.setStream(out)
    return logger, out


def _log_request(logger: GunicornLogger, *, user_agent: str, query: str) -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/v1/messages/bulk",
        "QUERY_STRING": query,
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": user_agent,
    }
    response = _Response(status="200 OK", headers=[("X-Request-Id", "r1")], sent=10)
    logger.access(response, None, environ, datetime.timedelta(milliseconds=3))


def _benign_access_cost(logger: GunicornLogger) -> float:
    return cpu_seconds(lambda: _log_request(logger, user_agent=_fill(UA), query=_fill(QUERY, 4096)))


# The shapes that cost the old redaction most, and one of each other kind (each line redacts several fields).
ACCESS_SHAPES = ["dots", "key then spaces", "pairs", "unicode", "one long token", "url colons", "EAA and dots"]


@pytest.mark.parametrize("name", ACCESS_SHAPES)
def test_an_access_line_costs_the_same_whatever_the_user_agent_and_query(name):
    logger, out = _access_logger()
    hostile = adversarial(name)
    benign = _benign_access_cost(logger)
    worst = cpu_seconds(lambda: _log_request(logger, user_agent=hostile, query=hostile[:4096]))
    assert worst / benign < 3, f"{name}: {worst / benign:.1f} times a normal access line"
    line = out.getvalue().splitlines()[-1]
    assert len(line) < MAX_LOGGED_USER_AGENT + 2 * MAX_LOGGED_PATH + 2000


def test_an_access_line_keeps_the_head_of_long_fields_redacted():
    logger, out = _access_logger()
    _log_request(logger, user_agent="curl/8 " + _fill("a/", SIZE), query="access_token=EAAsecret&" + _fill("x=1&"))
    line = out.getvalue()
    assert "curl/8 a/a/" in line and "access_token=[REDACTED]" in line and "EAAsecret" not in line
    assert "more characters]" in line
