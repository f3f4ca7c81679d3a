"""``python -m offline_provider``: serve in the foreground until Ctrl-C or SIGTERM.

The first stdout line is ``offline provider listening on <base URL>``; runstudio and the
benchmarks read the URL from its last word, so keep that line as it is. Access logs go
to stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys
from decimal import Decimal
from types import FrameType

from .provider import OfflineProvider
from .rules import MODELS


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0.0 and 1.0")
    return number


def _success_status(value: str) -> int:
    if value not in ("200", "201"):
        raise argparse.ArgumentTypeError("must be 200 or 201")
    return int(value)


EPILOG = """\
cost and request ids, as the real API reports them:
  every successful answer carries x-aimlapi-usd-spent (the model's price per image
  from the built-in table, or --price, times the images) and x-aimlapi-credits-used;
  a refusal costs nothing and carries neither. The client's X-Client-Request-Id
  header is echoed back on every answer, errors included.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m offline_provider",
        description="Serve a local stand-in for POST /v1/images/generations "
        "until Ctrl-C or SIGTERM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--key", default=None, help="accept only this bearer token")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per generation")
    parser.add_argument(
        "--nsfw-words",
        default="nsfw,nude,naked",
        help="comma-separated words that set has_nsfw_concepts",
    )
    parser.add_argument("--status", type=_success_status, default=200)
    parser.add_argument("--url-ttl", type=float, default=None, help="image URL lifetime")
    parser.add_argument("--fail-rate", type=_fraction, default=0.0)
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument(
        "--price",
        type=_price,
        action="append",
        default=[],
        metavar="MODEL=USD",
        help="charge USD per image of MODEL instead of the built-in price table "
        "(repeatable; see below)",
    )
    return parser


def _price(value: str) -> tuple[str, str]:
    model, sep, usd = value.partition("=")
    try:
        amount = Decimal(usd)
    except ArithmeticError:
        amount = Decimal(-1)
    if not sep or model not in MODELS or not amount.is_finite() or amount < 0:
        raise argparse.ArgumentTypeError("must be MODEL=USD with a known model and an amount")
    return model, usd


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    words = [w.strip() for w in args.nsfw_words.split(",") if w.strip()]
    try:
        provider = OfflineProvider(
            args.host,
            args.port,
            api_key=args.key or None,
            latency=args.latency,
            nsfw_words=words,
            success_status=args.status,
            url_ttl=args.url_ttl,
            fail_rate=args.fail_rate,
            fail_status=args.fail_status,
            prices=dict(args.price),
            log_requests=True,
        )
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    # SIGTERM (docker stop, runstudio, the test harness) takes the same clean path as
    # Ctrl-C: raising in the main thread unwinds serve_forever, which closes the socket.
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    print(f"offline provider listening on {provider.base_url}", flush=True)
    try:
        provider.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("offline provider stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
