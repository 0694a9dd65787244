"""Status webhooks back to our service: delivered and read (or failed) for every accepted send, signed as Meta does.

Statuses fall due `delivered_after_ms` / `read_after_ms` after the send (and a `sent` one `sent_after_ms` after it,
when set); each echoes the send's `biz_opaque_callback_data`, as Meta does, and names the user as Meta does from
2026: `recipient_user_id` (the BSUID) beside `recipient_id` (the wa_id), which a user with a username, or a BSUID
send, goes without; a `failed` status of a send to a number goes without `recipient_user_id`, as Meta's.
A loop gathers the due ones every `WEBHOOK_FLUSH_SECONDS` and posts them in batches per phone number, with
`X-Hub-Signature-256` when an app secret is set, retrying a failed post a few times.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import logging
import time
from collections import defaultdict
from typing import Any

import orjson
from aiohttp import ClientSession, ClientTimeout, TCPConnector

from sandbox.meta_errors import status_error
from sandbox.responses import JSON
from sandbox.state import SandboxState

logger = logging.getLogger("sandbox.webhooks")

# Meta batches statuses that fall due together; this is how long the sandbox lets them gather.
WEBHOOK_FLUSH_SECONDS = 0.2
# Statuses per webhook body: Meta sends several per POST under load, never thousands.
WEBHOOK_BATCH_MAX = 100
WEBHOOK_ATTEMPTS = 4
WEBHOOK_CONCURRENCY = 8


class StatusWebhooks:
    """Schedules the statuses of accepted sends and posts them when due (`run()` is the loop)."""

    def __init__(self, state: SandboxState):
        self.state = state

    def schedule(
        self,
        phone_number_id: str,
        wamid: str,
        recipient_id: str | None,
        kind: str,
        code: int | None,
        sent_at: float,
        *,
        callback: str | None = None,
        user_id: str | None = None,
        by_number: bool = True,
        details: str | None = None,
    ) -> None:
        state = self.state
        config = state.config
        queue = state.webhook_queue
        delivered_at = sent_at + config.delivered_after_ms / 1000.0
        echo = {"biz_opaque_callback_data": callback} if callback else {}
        user = {"recipient_id": recipient_id} if recipient_id is not None else {}
        failed_user = dict(user)
        if user_id is not None:
            user["recipient_user_id"] = user_id
            if not by_number:
                failed_user["recipient_user_id"] = user_id
        if config.sent_after_ms is not None:
            sent = {"id": wamid, "status": "sent", **user, **echo}
            heapq.heappush(
                queue, (sent_at + config.sent_after_ms / 1000.0, next(state.webhook_seq), phone_number_id, sent)
            )
        if kind == "failed_webhook":
            status = {
                "id": wamid,
                "status": "failed",
                **failed_user,
                "errors": [status_error(code, details=details)],
                **echo,
            }
            heapq.heappush(queue, (delivered_at, next(state.webhook_seq), phone_number_id, status))
            return
        conversation_of = recipient_id or user_id or wamid
        conversation = {"id": hashlib.md5(conversation_of.encode()).hexdigest(), "origin": {"type": "marketing"}}
        pricing = {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
        delivered = {
            "id": wamid,
            "status": "delivered",
            **user,
            "conversation": conversation,
            "pricing": pricing,
            **echo,
        }
        heapq.heappush(queue, (delivered_at, next(state.webhook_seq), phone_number_id, delivered))
        read = {"id": wamid, "status": "read", **user, **echo}
        read_at = sent_at + max(config.read_after_ms, config.delivered_after_ms) / 1000.0
        heapq.heappush(queue, (read_at, next(state.webhook_seq), phone_number_id, read))

    def due_statuses(self, now: float) -> dict[str, list[dict[str, Any]]]:
        due: dict[str, list[dict[str, Any]]] = defaultdict(list)
        queue = self.state.webhook_queue
        while queue and queue[0][0] <= now:
            due_at, _, phone_number_id, status = heapq.heappop(queue)
            due[phone_number_id].append({**status, "timestamp": str(int(due_at))})
        return due

    def body(self, phone_number_id: str, statuses: list[dict[str, Any]]) -> bytes:
        phone = self.state.config.phone_numbers.get(phone_number_id, {})
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": phone.get("waba_id", "0"),
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": phone.get("display_phone_number", "15550000000"),
                                    "phone_number_id": phone_number_id,
                                },
                                "statuses": statuses,
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }
        return orjson.dumps(envelope)

    async def post(self, session: ClientSession, url: str, secret: str | None, body: bytes, count: int) -> None:
        state = self.state
        headers = {"Content-Type": JSON, "User-Agent": "facebookexternalua"}
        if secret:
            signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = f"sha256={signature}"
        generation = state.generation
        for attempt in range(WEBHOOK_ATTEMPTS):
            if attempt:
                state.webhook_stats["retries"] += 1
                # Bounded retry with backoff (0.5 s, 1 s, 2 s): enough to ride out a restart of the receiver.
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
                if generation != state.generation:
                    return  # a reset happened meanwhile: these statuses belong to a finished test
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        state.webhook_stats["posts"] += 1
                        state.webhook_stats["statuses"] += count
                        return
            except Exception as exc:  # any failure (refused, reset, timeout) is retried the same way
                logger.debug("webhook post failed: %s", exc)
        state.webhook_stats["failed_posts"] += 1

    async def run(self) -> None:
        limit = asyncio.Semaphore(WEBHOOK_CONCURRENCY)
        tasks: set[asyncio.Task] = set()
        timeout = ClientTimeout(total=10)
        async with ClientSession(connector=TCPConnector(limit=WEBHOOK_CONCURRENCY), timeout=timeout) as session:

            async def post(url: str, secret: str | None, body: bytes, count: int) -> None:
                async with limit:
                    await self.post(session, url, secret, body, count)

            while True:
                await asyncio.sleep(WEBHOOK_FLUSH_SECONDS)
                url, secret = self.state.config.webhook_url, self.state.config.app_secret
                if not url:
                    continue
                for phone_number_id, statuses in self.due_statuses(time.time()).items():
                    for start in range(0, len(statuses), WEBHOOK_BATCH_MAX):
                        batch = statuses[start : start + WEBHOOK_BATCH_MAX]
                        body = self.body(phone_number_id, batch)
                        task = asyncio.create_task(post(url, secret, body, len(batch)))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
