"""The sandbox assembled: one asyncio process, no Django, serving thousands of sends per second.

`Sandbox(config).make_app()` is the aiohttp app (Graph routes, control API, the status-webhook loop);
`run(...)` serves it the way `python -m sandbox` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal

import uvloop
from aiohttp import web

from sandbox.control import ControlRoutes
from sandbox.graph_routes import GraphRoutes
from sandbox.limits import limits_from_env
from sandbox.state import SandboxConfig, SandboxState
from sandbox.user_webhooks import UserRoutes
from sandbox.webhooks import StatusWebhooks


class Sandbox:
    """The fake Graph API: its state, the routes over it and the webhooks it posts back."""

    def __init__(self, config: SandboxConfig):
        self.state = SandboxState(config)
        self.webhooks = StatusWebhooks(self.state)
        self.limits = limits_from_env(self.state)
        self.graph = GraphRoutes(self.state, self.webhooks, limits=self.limits)
        self.control = ControlRoutes(self.state)
        self.users = UserRoutes(self.state)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024**2)
        app.add_routes(self.control.routes() + self.users.routes() + self.limits.routes() + self.graph.routes())

        async def webhook_worker(app: web.Application):
            task = asyncio.create_task(self.webhooks.run())
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(webhook_worker)
        return app


async def stop_with_parent(app: web.Application):
    """Stop when the process that started us is gone, so a crashed test run leaves no sandbox behind."""
    parent = os.getppid()

    async def watch() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    task = asyncio.create_task(watch())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run(config: SandboxConfig, *, host: str, port: int, exit_with_parent: bool = False) -> None:
    sandbox = Sandbox(config)
    app = sandbox.make_app()
    # Arrival times are what tests and benchmarks count per second: a full garbage collection over a large
    # request log would stall the loop and timestamp the queued requests in one burst. Objects alive now are
    # never collected, and young-generation collections run rarely.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if exit_with_parent:
        app.cleanup_ctx.append(stop_with_parent)
    web.run_app(
        app,
        # uvloop: a quarter less CPU per request than asyncio's loop (bench-delivery), so timestamps lag less.
        loop=uvloop.new_event_loop(),
        host=host,
        port=port,
        access_log=None,
        # A hung request must not hold a stop for long: tests stop the sandbox with SIGTERM.
        shutdown_timeout=0.5,
        print=lambda *_: print(f"WhatsApp sandbox listening on http://{host}:{port}", flush=True),
        backlog=1024,
    )
