"""The Procfile from a fresh clone: its own `release`, `web`, `worker` and `beat` lines, exactly as written, against
the test PostgreSQL (a database of its own, so `release` really migrates) and Redis, with a broadcast seen through.

The tree is a copy of the git-tracked files only (no var/, no .venv, nothing a previous `make run` left), run with
a production-like environment: no DEBUG, no DATABASE_URL default, an empty HOME and TMPDIR of the test's own.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
import requests

from sandbox.process import free_port, start_sandbox
from tests.core.logs_support import json_lines
from tests.delivery_support import numbers, wait_for

ROOT = Path(__file__).resolve().parents[2]
PHONE_NUMBER_ID = "100000000000077"
ACCESS_TOKEN = "EAAG-procfile-access-token"
APP_SECRET = "procfile-app-secret"
RECIPIENTS = 30

pytestmark = pytest.mark.slow


def procfile_commands(path: Path) -> dict[str, str]:
    """`name: command` lines, as Heroku and honcho read them."""
    commands = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            commands[name.strip()] = command.strip()
    return commands


def clean_copy(destination: Path) -> Path:
    """The git-tracked files of the working tree (what a fresh clone has), copied to ``destination``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def url_with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


class Proc:
    """One Procfile line run by bash in its own process group, logging to a file."""

    def __init__(self, name: str, command: str, *, cwd: Path, env: dict[str, str], logs: Path):
        self.name = name
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
                # the group may outlive its leader (pool children): make sure none is left
                os.killpg(self.process.pid, signal.SIGKILL)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                pass
            break


@pytest.fixture
def fresh_database():
    """A database of its own on the test PostgreSQL, dropped afterwards."""
    name = f"procfile_{os.getpid()}_{secrets.token_hex(3)}"
    admin_url = os.environ["DATABASE_URL"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url_with_path(admin_url, f"/{name}")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_procfile_runs_from_a_fresh_clone_and_delivers_a_broadcast(tmp_path, fresh_database):
    tree = clean_copy(tmp_path / "clone")
    assert not (tree / "var").exists() and (tree / "Procfile").is_file()
    commands = procfile_commands(tree / "Procfile")
    assert set(commands) == {"release", "web", "worker", "beat"}
    home, tmp, logs = tmp_path / "home", tmp_path / "tmp", tmp_path / "logs"
    for folder in (home, tmp, logs):
        folder.mkdir()

    port = free_port()
    sandbox = start_sandbox(
        latency_ms=5, webhook_url=f"http://127.0.0.1:{port}/v1/webhooks/whatsapp", app_secret=APP_SECRET
    )
    env = {
        # the virtualenv's python, gunicorn and celery first, as on a deployed machine's PATH
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "WORKER_CONCURRENCY": "2",
        "DATABASE_URL": fresh_database,
        # a Redis database of its own: nothing another test queued or cached is seen here
        "REDIS_URL": url_with_path(os.environ["REDIS_URL"], "/7"),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "WHATSAPP_GRAPH_URL": sandbox.graph_url,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        # beat's first tick within a second or two instead of 5 s
        "DELIVERY_START_DUE_INTERVAL": "1",
        "DELIVERY_SWEEP_INTERVAL": "2",
    }
    running: list[Proc] = []
    try:
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()

        # release: migrates the empty database
        release = subprocess.run(
            ["bash", "-c", commands["release"]], cwd=tree, env=env, capture_output=True, text=True, timeout=300
        )
        assert release.returncode == 0, release.stdout + release.stderr
        assert "Applying templates_registry.0001_initial... OK" in release.stdout

        # the README's bootstrap commands, in the clone
        def manage(*args: str) -> str:
            done = subprocess.run(
                ["python", "manage.py", *args], cwd=tree, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout.strip().splitlines()[-1]

        channel_id = manage(
            "create_channel", "--org", "Procfile Org", "--phone-number-id", PHONE_NUMBER_ID,
            "--waba-id", "200000000000077", "--access-token", ACCESS_TOKEN, "--max-mps", "80",
        )  # fmt: skip
        manage("create_template", "--channel", channel_id, "--name", "welcome_v2", "--language", "es",
               "--body", "Hola {{nombre}}, tu saldo es {{monto}}")  # fmt: skip
        token = manage("create_token", "--org", "Procfile Org", "--scopes", "messages:bulk")

        # web, worker and beat, exactly as the Procfile writes them
        for name in ("web", "worker", "beat"):
            running.append(Proc(name, commands[name], cwd=tree, env=env, logs=logs))
        web, worker, beat = running
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert all(p.alive() for p in running), {p.name: p.log()[-3000:] for p in running if not p.alive()}
            try:
                return requests.get(f"{base}/v1/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, timeout=90, interval=0.3, message="web /v1/health 200")
        wait_for(lambda: " ready." in worker.log(), timeout=90, message=f"worker ready:\n{worker.log()[-3000:]}")

        # a broadcast over HTTP, seen through to COMPLETED
        auth = {"Authorization": f"Bearer {token}"}
        body = {
            "template_name": "welcome_v2",
            "language": "es",
            "channel_id": channel_id,
            "campaign_name": "procfile",
            "recipients": [{"to": to, "variables": {"nombre": "Ana", "monto": str(i)}} for i, to in enumerate(
                numbers(RECIPIENTS, start=7700))],
        }  # fmt: skip
        created = requests.post(f"{base}/v1/messages/bulk", json=body, headers=auth, timeout=30)
        assert created.status_code == 202, created.text
        broadcast_id = created.json()["broadcast_id"]

        def completed() -> dict | None:
            assert all(p.alive() for p in running), {p.name: p.log()[-3000:] for p in running if not p.alive()}
            state = requests.get(f"{base}/v1/messages/bulk/{broadcast_id}", headers=auth, timeout=10).json()
            return state if state["status"] in ("COMPLETED", "FAILED") else None

        state = wait_for(completed, timeout=120, interval=0.5, message=f"broadcast {broadcast_id} COMPLETED")
        assert state["status"] == "COMPLETED" and state["counts"]["pending"] == 0, state
        assert state["counts"]["failed"] == 0, state
        posts = sandbox.requests(phone_number_id=PHONE_NUMBER_ID)
        assert sorted(p["to"] for p in posts) == sorted(r["to"].lstrip("+") for r in body["recipients"])
        # the access token was stored encrypted and is sent decrypted
        assert {p["authorization"] for p in posts} == {f"Bearer {ACCESS_TOKEN}"}

        # beat stays up and ticks: it has sent its sweeps, and the worker ran them
        wait_for(lambda: "Sending due task broadcasts-start-due" in beat.log(), timeout=30, message="a beat tick")
        time.sleep(3)
        assert beat.alive(), beat.log()[-3000:]
        assert "FileNotFoundError" not in beat.log()
        wait_for(lambda: "broadcasts.start_due" in worker.log(), timeout=30, message="the worker ran a beat task")

        # every line of every process is a JSON log line (LOG_FORMAT is json with DEBUG off), and not one holds the
        # API token, the channel's access token or the app secret
        for proc in running:
            text = proc.log()
            json_lines(text, where=proc.name)
            for secret in (token, ACCESS_TOKEN, APP_SECRET):
                assert secret not in text, f"a secret is in the {proc.name} log"
        # gunicorn's access lines name each request, with its id
        access = [line for line in json_lines(web.log(), where="web") if line["logger"] == "gunicorn.access"]
        posted = [line for line in access if line["method"] == "POST" and line["path"] == "/v1/messages/bulk"]
        assert len(posted) == 1 and posted[0]["status"] == 202
        assert posted[0]["request_id"] == created.headers["X-Request-Id"]

        # nothing was created in the tree or in HOME (no var/, no gunicorn control socket folder)
        assert not (tree / "var").exists()
        assert list(home.iterdir()) == []
        assert all(p.alive() for p in running)
    finally:
        for proc in reversed(running):
            proc.stop()
        sandbox.stop()
    for proc in running:
        assert proc.process.poll() is not None
        # every process of its group is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.process.pid, 0)


def test_procfile_lines_need_no_folder_and_keep_their_defaults():
    commands = procfile_commands(ROOT / "Procfile")
    assert commands["release"] == "python manage.py migrate --noinput"
    assert "${PORT:-8000}" in commands["web"] and "--no-control-socket" in commands["web"]
    for name, command in commands.items():
        assert "var/" not in command and "mkdir" not in command, name
        assert shlex.split(command)[0] in ("python", "gunicorn", "celery"), name
