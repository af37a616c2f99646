"""Options, exit codes and the argument parser of the ``llm-async`` command line."""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from .. import __version__
from ..config import PROVIDERS

PROG = "llm-async"


#: The model ``chat`` and ``bench`` use when neither ``--model`` nor ``LLM_MODEL`` names one.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "openrouter": "openai/gpt-4o-mini",
    "mock": "mock-model",
}


EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


_MOCK_KEY = "sk-mock-cli-key"


class UsageError(Exception):
    """A command-line mistake the parser cannot catch (exit status 2)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _base_url(text: str) -> str:
    """An http(s) URL with a host: anything else is a configuration error (exit status 2)."""
    try:
        parts = urlsplit(text.strip())
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname \
            or not port_ok:
        raise argparse.ArgumentTypeError(
            f"expected an http:// or https:// URL with a host, got {text!r}")
    return text.strip()


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", choices=PROVIDERS,
                        help="provider (default: LLM_PROVIDER, else the one whose API key is "
                             "set; with --base-url alone: openai, any OpenAI-compatible server)")
    parser.add_argument("--model", help="model id (default: LLM_MODEL, else a small model of "
                                        "the provider)")
    parser.add_argument("--base-url", metavar="URL", type=_base_url,
                        help="the provider's base URL (default: <PROVIDER>_BASE_URL)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``llm-async``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Command line of llm_async: chat with a model, run the embedded provider "
                    "server, benchmark throughput, report costs, serve the dashboard.",
        epilog="Configuration is read from the environment (LLM_PROVIDER, LLM_MODEL, "
               "OPENAI_API_KEY, ...); options override it. Exit status: 0 ok, 1 provider or "
               "runtime error, 2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = sub.add_parser(
        "chat", help="send one prompt and print the answer",
        description="Send one prompt and print the answer. The prompt is the arguments, or "
                    "standard input when there are none (or '-').")
    chat.add_argument("prompt", nargs="*", help="the prompt (words are joined by spaces)")
    chat.add_argument("-s", "--system", help="a system message")
    chat.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    _add_target_options(chat)
    chat.add_argument("--mock", action="store_true",
                      help="start the embedded provider server in-process and ask it "
                           "(no API key needed)")
    chat.add_argument("--temperature", type=float, metavar="T",
                      help="sampling temperature, 0 to 2 (default: the provider's)")
    chat.add_argument("--max-tokens", type=_positive_int, metavar="N",
                      help="the most tokens the answer may have (default: the provider's)")
    chat.add_argument("--timeout", type=float, metavar="SECONDS", help="total timeout")
    chat.add_argument("--usage", action="store_true",
                      help="print token usage, cost and latency to stderr")
    chat.add_argument("--json", action="store_true",
                      help="print the whole response as JSON (with --stream: one chunk a line)")

    sub.add_parser("mock-server", add_help=False,
                   help="run the embedded mock provider server (see: mock-server --help)")

    bench = sub.add_parser(
        "bench", help="measure throughput and latency",
        description="Send many chat calls, a fixed number at a time, and report throughput "
                    "and latency. Without --base-url the embedded provider server is started "
                    "in-process.")
    bench.add_argument("-n", "--requests", type=_positive_int, default=200,
                       help="calls to make (default 200)")
    bench.add_argument("-c", "--concurrency", type=_positive_int, default=32,
                       help="calls in flight at once (default 32)")
    bench.add_argument("--stream", action="store_true", help="stream the answers")
    _add_target_options(bench)
    bench.add_argument("--prompt", default="Write a short poem about the sea.", metavar="TEXT",
                       help="the user message of every call (default: a short poem request)")
    bench.add_argument("--max-tokens", type=_positive_int, metavar="N",
                       help="the most tokens each answer may have (default: the provider's)")
    bench.add_argument("--layers", choices=("default", "none"), default="default",
                       help="the client's pipeline: the default layers, or the bare transport")
    bench.add_argument("--reply-words", type=_positive_int, default=32,
                       help="embedded server: words per answer (default 32)")
    bench.add_argument("--token-delay", type=_non_negative_float, default=0.0,
                       help="embedded server: seconds between streamed words (default 0)")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")

    cost = sub.add_parser(
        "cost", help="the cost ledger's report and budget status",
        description="Report what the cost ledger recorded (total, by model, by user) and the "
                    "status of the budgets (LLM_DAILY_BUDGET, LLM_MONTHLY_BUDGET).")
    ledger = cost.add_mutually_exclusive_group()
    ledger.add_argument("--sqlite", metavar="PATH",
                        help="read the durable ledger in this SQLite file")
    ledger.add_argument("--redis-url", metavar="URL",
                        help="read the ledger shared in Redis (redis://host:port/db)")
    cost.add_argument("--redis-prefix", default="{llm_async_cost}", metavar="PREFIX",
                      help="key prefix of the Redis ledger (default {llm_async_cost})")
    cost.add_argument("--recent", type=int, default=0, metavar="N",
                      help="also list the last N calls")
    cost.add_argument("--fail-over-budget", action="store_true",
                      help="exit with status 1 when a budget is exceeded")
    cost.add_argument("--json", action="store_true", help="print the report as JSON")

    sub.add_parser("dashboard", add_help=False,
                   help="serve the live dashboard (see: dashboard --help)")
    return parser
