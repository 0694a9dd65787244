"""`python -m sandbox --host 127.0.0.1 --port 8099 --latency-ms 50 [--webhook-url URL --app-secret S] ...`"""

from __future__ import annotations

import argparse
import sys

from sandbox.app import run
from sandbox.outcomes import parse_outcome
from sandbox.state import SandboxConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Local WhatsApp Graph API sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="delay before every answer")
    parser.add_argument("--webhook-url", default=None, help="where to post delivered/read status webhooks")
    parser.add_argument("--app-secret", default=None, help="signs the webhooks (X-Hub-Signature-256)")
    parser.add_argument("--phone-mps-cap", type=int, default=None, help="sends/s per phone number before 130429")
    parser.add_argument(
        "--pair-rate-limit-ms", type=float, default=None, help="same recipient sooner than this: 131056 (e.g. 6000)"
    )
    parser.add_argument("--delivered-after-ms", type=float, default=1000.0)
    parser.add_argument("--read-after-ms", type=float, default=3000.0)
    parser.add_argument("--sent-after-ms", type=float, default=None, help="also post a `sent` status this long after")
    parser.add_argument("--default-outcome", default="ok", help="outcome of unscripted sends (e.g. ok, http500)")
    parser.add_argument("--exit-with-parent", action="store_true", help="stop when the starting process exits")
    parser.add_argument("--max-recorded", type=int, default=500_000, help="requests kept for /_sandbox/requests")
    parser.add_argument("--hang-seconds", type=float, default=120.0, help="how long a `hang` outcome waits")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        parse_outcome(args.default_outcome)
        config = SandboxConfig(
            latency_ms=args.latency_ms,
            default_outcome=args.default_outcome,
            phone_mps_cap=args.phone_mps_cap,
            pair_rate_limit_ms=args.pair_rate_limit_ms,
            hang_seconds=args.hang_seconds,
            max_recorded=args.max_recorded,
            webhook_url=args.webhook_url,
            app_secret=args.app_secret,
            delivered_after_ms=args.delivered_after_ms,
            read_after_ms=args.read_after_ms,
            sent_after_ms=args.sent_after_ms,
        )
        config.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run(config, host=args.host, port=args.port, exit_with_parent=args.exit_with_parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
