"""Production settings: DEBUG off unless asked for, and `manage.py check --deploy` clean with the README's example.

Each case runs manage.py in a fresh process with ONLY the given environment (settings are read at start-up).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]

# The README's production example (keep the two identical). Secrets here are examples, never used anywhere.
PRODUCTION_EXAMPLE = {
    "DATABASE_URL": "postgres://app:change-me@db.internal:5432/messaging",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "SECRET_KEY": "replace-me-with-50+-random-characters-Zx8Qv2Lm5Rt9Wc3Hb7Nk1Pd4Fg6Js0",
    "ENCRYPTION_KEYS": "elCC8IUesyL7fwRl4ZtXvxtSsn1tCGjLIam4mZTky1Y=",
    "ALLOWED_HOSTS": "api.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://api.example.com",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "WHATSAPP_APP_SECRET": "meta-app-secret",
    "WHATSAPP_VERIFY_TOKEN": "meta-verify-token",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_production_example():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_EXAMPLE)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNING" not in output


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        ({"DEBUG": "true"}, "security.W018"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SECURE_SSL_REDIRECT": "false"}, "security.W008"),
        ({"ENCRYPTION_KEYS": ""}, "core.W001"),
        ({"SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false"}, "security.W012"),
    ],
)
def test_check_deploy_warns_when_a_production_setting_is_missing(change, warning):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION_EXAMPLE, **change})
    assert result.returncode != 0 and warning in result.stdout + result.stderr


# Servers named, never reached by the commands below (settings only).
SERVERS = {"DATABASE_URL": PRODUCTION_EXAMPLE["DATABASE_URL"], "REDIS_URL": PRODUCTION_EXAMPLE["REDIS_URL"]}


def test_debug_is_off_unless_asked_for_and_then_secrets_are_required():
    # no DATABASE_URL and no DEBUG (a fresh operator's shell): DEBUG is off, so no dev SECRET_KEY, said in one line
    result = manage("check", env={})
    assert result.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    # with a key, DEBUG is off, there are no dev hosts, and cookies are secure
    shown = manage("shell", "-c", _PRINT_SETTINGS, env={"SECRET_KEY": "k" * 60, **SERVERS})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split()[-6:] == ["False", "[]", "True", "True", "False", "0"]
    # DEBUG=true (what `make run` sets) gives the dev values
    dev = manage("shell", "-c", _PRINT_SETTINGS, env={"DEBUG": "true", **SERVERS})
    assert dev.returncode == 0, dev.stderr
    assert dev.stdout.split()[-6:] == ["True", "['127.0.0.1','localhost','testserver']", "False", "False", "False", "0"]


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        ({"REDIS_URL": SERVERS["REDIS_URL"]}, "DATABASE_URL is not set"),
        ({**SERVERS, "DATABASE_URL": "mysql://app@127.0.0.1:3306/app"}, "DATABASE_URL must name a PostgreSQL database"),
        ({**SERVERS, "DATABASE_URL": "not a url"}, "DATABASE_URL must name a PostgreSQL database"),
        ({"DATABASE_URL": SERVERS["DATABASE_URL"]}, "REDIS_URL must name a Redis or Valkey server"),
        ({**SERVERS, "REDIS_URL": "filesystem://"}, "REDIS_URL must name a Redis or Valkey server"),
    ],
)
def test_postgresql_and_redis_are_required_and_said_so_in_one_line(servers, message):
    result = manage("check", env={"DEBUG": "true", **servers})
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_proxy_header_setting_is_parsed_into_the_pair_django_wants():
    shown = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)",
        env=PRODUCTION_EXAMPLE,
    )
    assert shown.stdout.strip().splitlines()[-1] == "('HTTP_X_FORWARDED_PROTO', 'https')"
    bad = manage("check", env={**PRODUCTION_EXAMPLE, "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO"})
    assert bad.returncode != 0 and "SECURE_PROXY_SSL_HEADER is 'HEADER,value'" in bad.stderr


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_ssl_redirect_spares_the_health_check_and_trusts_the_proxy(client):
    assert client.get("/v1/messages/bulk").status_code == 301  # plain http is sent to https
    assert client.get("/v1/messages/bulk", HTTP_X_FORWARDED_PROTO="https").status_code == 401  # https: served
    assert client.get("/v1/health").status_code in (200, 503)  # a load balancer's http probe is answered


_PRINT_SETTINGS = (
    "from django.conf import settings as s; "
    "print(s.DEBUG, str(s.ALLOWED_HOSTS).replace(' ', ''), s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
    "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS)"
)
