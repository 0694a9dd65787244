"""Load generator for the sandbox: how many sends per second it sustains at a given latency.

    python -m sandbox.load --requests 40000 --concurrency 400 --latency-ms 50

Starts its own sandbox (or uses --url) and drives it over keep-alive HTTP/1.1 connections with a hand-rolled
asyncio client: a general-purpose client would spend more CPU than the server and measure itself instead.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import statistics
import sys
import time
from urllib.parse import urlsplit

import orjson


def _request_bytes(host: str, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer load-test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _worker(
    host: str, port: int, version_path: str, phones: int, counter: list[int], total: int, latencies: list[float]
) -> dict[int, int]:
    statuses: dict[int, int] = {}
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while counter[0] < total:
            number = counter[0]
            counter[0] += 1
            body = orjson.dumps(
                {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": f"+5730{number % 100000000:08d}",
                    "type": "template",
                    "template": {
                        "name": "welcome_v2",
                        "language": {"code": "es"},
                        "components": [
                            {
                                "type": "body",
                                "parameters": [
                                    {"type": "text", "parameter_name": "nombre", "text": "Ana"},
                                    {"type": "text", "parameter_name": "monto", "text": str(number)},
                                ],
                            }
                        ],
                    },
                }
            )
            path = f"{version_path}/{100000000000001 + number % phones}/messages"
            started = time.perf_counter()
            writer.write(_request_bytes(host, path, body))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
    return statuses


class _WebhookCounter:
    """A loopback receiver for the sandbox's status webhooks: counts statuses and checks every signature."""

    def __init__(self, secret: str):
        self.secret = secret.encode()
        self.posts = self.statuses = self.bad_signatures = 0
        self.runner = None
        self.url = ""

    async def _receive(self, request):
        from aiohttp import web

        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Hub-Signature-256", ""), expected):
            self.bad_signatures += 1
        self.posts += 1
        for entry in orjson.loads(body)["entry"]:
            for change in entry["changes"]:
                self.statuses += len(change["value"]["statuses"])
        return web.Response(status=200)

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/webhooks", self._receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/webhooks"

    async def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.statuses < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)


async def _run(url: str, total: int, concurrency: int, phones: int) -> dict:
    parts = urlsplit(url)
    counter = [0]
    latencies: list[float] = []
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_worker(parts.hostname, parts.port, "/v23.0", phones, counter, total, latencies) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    statuses: dict[int, int] = {}
    for result in results:
        for status, count in result.items():
            statuses[status] = statuses.get(status, 0) + count
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "sends_per_second": round(len(latencies) / elapsed),
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
        "latency_ms_p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
    }


async def _run_with_webhooks(args: argparse.Namespace) -> dict:
    """Sends with delivered+read webhooks flowing back to a receiver in this process (same timing as `make run`)."""
    from sandbox.process import start_sandbox

    counter = _WebhookCounter("load-secret")
    await counter.start()
    sandbox = start_sandbox(
        latency_ms=args.latency_ms,
        webhook_url=counter.url,
        app_secret="load-secret",
        delivered_after_ms=1000,
        read_after_ms=3000,
    )
    try:
        result = await _run(sandbox.url, args.requests, args.concurrency, args.phones)
        started = time.perf_counter()
        await counter.wait_for(2 * result["requests"], timeout=60)
        result["webhooks"] = {
            "statuses": counter.statuses,
            "posts": counter.posts,
            "bad_signatures": counter.bad_signatures,
            "seconds_after_last_send": round(time.perf_counter() - started, 2),
        }
    finally:
        sandbox.stop()
        await counter.runner.cleanup()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.load")
    parser.add_argument("--url", help="a running sandbox (default: start one)")
    parser.add_argument("--requests", type=int, default=40000)
    parser.add_argument("--concurrency", type=int, default=400, help="keep-alive connections")
    parser.add_argument("--phones", type=int, default=4, help="phone_number_ids to spread the sends over")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="latency of the sandbox this starts")
    parser.add_argument("--webhooks", action="store_true", help="also post delivered/read webhooks to a receiver")
    args = parser.parse_args(argv)
    if args.webhooks:
        result = asyncio.run(_run_with_webhooks(args))
        result.update(latency_ms=args.latency_ms, concurrency=args.concurrency)
        print(orjson.dumps(result).decode())
        ok = result["webhooks"]["statuses"] == 2 * result["requests"] and not result["webhooks"]["bad_signatures"]
        return 0 if ok and set(result["statuses"]) == {"200"} else 1

    sandbox = None
    url = args.url
    if url is None:
        from sandbox.process import start_sandbox

        sandbox = start_sandbox(latency_ms=args.latency_ms)
        url = sandbox.url
    try:
        result = asyncio.run(_run(url, args.requests, args.concurrency, args.phones))
        if sandbox is not None:
            result["sandbox_recorded"] = sandbox.stats()["total"]
    finally:
        if sandbox is not None:
            sandbox.stop()
    result.update(latency_ms=args.latency_ms, concurrency=args.concurrency)
    print(orjson.dumps(result).decode())
    return 0 if set(result["statuses"]) == {"200"} else 1


if __name__ == "__main__":
    sys.exit(main())
