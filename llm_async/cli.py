"""The ``llm-async`` command line (also ``python -m llm_async``).

::

    llm-async chat "Hello"                      # one prompt, the answer printed
    llm-async chat --stream --mock "Hello"      # tokens as they arrive, from the embedded server
    llm-async mock-server --port 8000           # the embedded provider server
    llm-async bench -n 500 -c 64 --stream       # throughput against the embedded server
    llm-async bench --base-url http://host/v1   # ... or against any OpenAI-compatible server
    llm-async cost                              # the cost ledger's report and budget status
    llm-async dashboard --demo                  # the live dashboard on demo traffic

Configuration comes from the environment (``LLM_PROVIDER``, ``OPENAI_API_KEY``, ...; see
:mod:`llm_async.config`); options override it. Exit status: 0 success, 1 a provider or runtime
error, 2 a usage or configuration error, 130 interrupted. Errors are one line on stderr
(``--debug`` shows the traceback); the library's log records of level WARNING and above (a
circuit breaker opening, a model without a price) are shown on stderr as
``llm-async: warning: ...`` (``--debug``: every level). ``rich`` (the ``cli`` extra) draws the
progress bar and tables when installed and the output is a terminal; without it the output is
plain text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from . import __version__
from .config import PROVIDERS, Settings
from .errors import ConfigurationError, InvalidRequestError, LLMError

if TYPE_CHECKING:
    from ._bench import BenchResult

__all__ = ["DEFAULT_MODELS", "build_parser", "main"]

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


# -- parser ---------------------------------------------------------------------------------


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


# -- commands -------------------------------------------------------------------------------


def _read_prompt(words: Sequence[str], stdin: TextIO) -> str:
    if words and list(words) != ["-"]:
        return " ".join(words)
    if stdin.isatty() and not words:
        raise UsageError("no prompt: pass it as arguments or on standard input")
    text = stdin.read().strip()
    if not text:
        raise UsageError("the prompt is empty")
    return text


def _provider_for(provider: str | None, base_url: str | None, settings: Settings) -> str | None:
    """``--provider``; else, with ``--base-url`` and no ``LLM_PROVIDER``, ``openai`` (the URL is
    taken for an OpenAI-compatible server); else ``None``: the settings decide."""
    if provider is None and base_url is not None and settings.provider is None:
        return "openai"
    return provider


def _model_for(args: argparse.Namespace, settings: Settings, provider: str) -> str:
    return str(args.model or settings.model or DEFAULT_MODELS.get(provider, "gpt-4o-mini"))


async def _chat(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    from .client import AsyncLLMClient

    prompt = _read_prompt(args.prompt, stdin)
    settings = Settings.from_env()
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.timeout is not None:
        params["timeout"] = args.timeout

    async with AsyncExitStack() as stack:
        provider, base_url, api_key = args.provider, args.base_url, None
        if args.mock:
            from .testing import MockProviderServer

            server = await stack.enter_async_context(MockProviderServer(token_delay=0.0))
            provider, base_url, api_key = "openai", server.base_url, _MOCK_KEY
        provider = _provider_for(provider, base_url, settings)
        effective = "mock" if settings.force_mock else (provider or settings.effective_provider)
        settings.check_credentials(effective, api_key=api_key, base_url=base_url)
        model = _model_for(args, settings, effective)
        client = await stack.enter_async_context(
            AsyncLLMClient(provider, api_key=api_key, base_url=base_url, settings=settings))
        if args.stream:
            line_open = False  # a partial answer is on the screen, its line not ended
            try:
                async with client.stream(model=model, messages=messages, **params) as stream:
                    async for chunk in stream:
                        if args.json:
                            out.write(chunk.model_dump_json(exclude_defaults=True) + "\n")
                        elif chunk.delta:
                            out.write(chunk.delta)
                            line_open = not chunk.delta.endswith("\n")
                        out.flush()
            except BaseException:
                if line_open:  # end the partial answer: the error gets a line of its own
                    out.write("\n")
                    out.flush()
                raise
            if not args.json:
                out.write("\n")
            final = stream.final_response
        else:
            final = await client.chat(model=model, messages=messages, **params)
            if args.json:
                out.write(final.model_dump_json(exclude={"raw", "parsed"}, indent=2) + "\n")
            else:
                out.write(final.text + "\n")
        out.flush()
        if args.usage and final is not None:
            cost = "unknown" if final.cost is None else f"${float(final.cost):.6f}"
            err.write(f"model={final.model or model} input_tokens={final.usage.input_tokens} "
                      f"output_tokens={final.usage.output_tokens} cost={cost} "
                      f"latency={final.latency:.3f}s\n")
    return EXIT_OK


class _Progress:
    """A progress bar on stderr: rich's when available, else a plain one on a terminal."""

    def __init__(self, total: int, err: TextIO, *, enabled: bool) -> None:
        self.total = total
        self.err = err
        self.done = 0
        self.failed = 0
        self._rich: Any = None
        self._task: Any = None
        self._plain = False
        if not enabled or not err.isatty():
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            self._plain = True
            return
        self._rich = Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=Console(file=err), transient=True)

    def __enter__(self) -> _Progress:
        if self._rich is not None:
            self._rich.start()
            self._task = self._rich.add_task("bench", total=self.total)
        return self

    def advance(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if self._rich is not None:
            self._rich.advance(self._task)
        elif self._plain and (self.done == self.total or self.done % max(1, self.total // 50)
                              == 0):
            width = 30
            filled = width * self.done // self.total
            self.err.write(f"\rbench [{'#' * filled}{'.' * (width - filled)}] "
                           f"{self.done}/{self.total}")
            self.err.flush()

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif self._plain:
            self.err.write("\n")
            self.err.flush()


def _print_rows(rows: list[tuple[str, str]], out: TextIO, title: str) -> None:
    if out.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            table = Table(title=title)
            table.add_column("metric")
            table.add_column("value", justify="right")
            for name, value in rows:
                table.add_row(name, value)
            Console(file=out).print(table)
            return
    width = max(len(name) for name, _ in rows)
    out.write(title + "\n")
    for name, value in rows:
        out.write(f"  {name.ljust(width)}  {value}\n")


async def _bench(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ._bench import BenchResult, run_bench
    from .client import AsyncLLMClient

    settings = Settings.from_env()
    async with AsyncExitStack() as stack:
        provider, base_url, api_key = args.provider, args.base_url, None
        if base_url is None:
            from .testing import MockProviderServer

            server = await stack.enter_async_context(MockProviderServer(
                reply_words=args.reply_words, token_delay=args.token_delay))
            provider, base_url, api_key = "openai", server.base_url, _MOCK_KEY
            target = f"embedded server {server.url}"
        else:
            target = base_url
        provider = _provider_for(provider, base_url, settings)
        effective = "mock" if settings.force_mock else (provider or settings.effective_provider)
        settings.check_credentials(effective, api_key=api_key, base_url=base_url)
        model = _model_for(args, settings, effective)
        client = await stack.enter_async_context(AsyncLLMClient(
            provider, api_key=api_key, base_url=base_url, settings=settings,
            layers=[] if args.layers == "none" else None,
            max_connections=max(args.concurrency, 1)))
        result = BenchResult(requests=args.requests, concurrency=args.concurrency,
                             stream=args.stream)
        interrupted = False
        with _Progress(args.requests, err, enabled=not args.no_progress) as progress:
            try:
                await run_bench(client, model=model, requests=args.requests,
                                concurrency=args.concurrency, stream=args.stream,
                                prompt=args.prompt, max_tokens=args.max_tokens,
                                on_result=progress.advance, result=result)
            except asyncio.CancelledError:  # Ctrl+C: report what was measured, then stop
                interrupted = True
        _report_bench(args, out, result, target, model, interrupted=interrupted)
        if interrupted:
            raise asyncio.CancelledError
    return EXIT_OK if result.failed == 0 else EXIT_ERROR


def _report_bench(args: argparse.Namespace, out: TextIO, result: BenchResult, target: str,
                  model: str, *, interrupted: bool) -> None:
    from ._bench import format_table

    done = result.succeeded + result.failed
    if args.json:
        summary = {"target": target, "model": model, **result.summary()}
        if interrupted:
            summary["interrupted"] = True
        out.write(json.dumps(summary, indent=2) + "\n")
    else:
        title = f"llm-async bench: {model} at {target} ({args.layers} layers)"
        if interrupted:
            title += f", interrupted after {done} of {result.requests} calls"
        _print_rows(format_table(result), out, title)
    out.flush()


def _money(value: Any) -> str:
    return "-" if value is None else f"${float(value):,.6f}"


def _cost(args: argparse.Namespace, out: TextIO) -> int:
    from .application.cost_manager import CostManager

    settings = Settings.from_env()
    backend: Any  # a Ledger (the SQLite and Redis ones are structurally so)
    if args.sqlite:
        from .infrastructure.ledger_sqlite import SQLiteLedger

        if not os.path.exists(args.sqlite):
            raise UsageError(f"no ledger at {args.sqlite}")
        backend, where = SQLiteLedger(args.sqlite), f"SQLite ledger {args.sqlite}"
    elif args.redis_url:
        from .infrastructure.ledger_redis import RedisLedger

        backend = RedisLedger(args.redis_url, prefix=args.redis_prefix)
        where = f"Redis ledger {args.redis_url}"
    else:
        backend, where = None, "in-memory ledger of this process (see --sqlite, --redis-url)"
    manager = CostManager(backend=backend)
    try:
        manager.apply_settings(settings)
        metrics = manager.get_metrics()
        budgets = manager.get_all_budget_statuses()
        recent = manager.recent_records(args.recent) if args.recent > 0 else []
    finally:
        manager.close()
    over = sorted(name for name, status in budgets.items() if status.exceeded)

    if args.json:
        report = {"ledger": where, "metrics": metrics.to_dict(),
                  "budgets": {name: status.to_dict() for name, status in budgets.items()},
                  "recent": [record.to_dict() for record in recent]}
        out.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        rows = [
            ("total cost", _money(metrics.total_cost)),
            ("requests", f"{metrics.requests} ({metrics.cache_hits} cache hits, "
                         f"{metrics.estimated_requests} estimated, "
                         f"{metrics.unpriced_requests} unpriced)"),
            ("input tokens", str(metrics.input_tokens)),
            ("output tokens", str(metrics.output_tokens)),
        ]
        rows += [(f"model {name}", _money(v)) for name, v in metrics.by_model.items()]
        rows += [(f"user {name}", _money(v)) for name, v in metrics.by_user.items()]
        rows += [(f"project {name}", _money(v)) for name, v in metrics.by_project.items()]
        for name, status in budgets.items():
            line = (f"{_money(status.spent)} of {_money(status.limit)} ({status.percentage}%), "
                    f"{status.period.value}, {status.scope}")
            if status.exceeded:
                line += ", EXCEEDED"
            elif status.soft_limit_reached:
                line += ", over the soft limit"
            if status.forecast is not None:
                line += f", forecast {_money(status.forecast)}"
            rows.append((f"budget {name}", line))
        if not budgets:
            rows.append(("budgets", "none (set LLM_DAILY_BUDGET / LLM_MONTHLY_BUDGET)"))
        for record in recent:
            rows.append((f"call {record.timestamp:%Y-%m-%d %H:%M:%S}",
                         f"{record.model} {_money(record.cost)} "
                         f"in={record.input_tokens} out={record.output_tokens}"
                         + (f" user={record.user_id}" if record.user_id else "")))
        _print_rows(rows, out, f"llm-async cost: {where}")
    out.flush()
    return EXIT_ERROR if over and args.fail_over_budget else EXIT_OK


def _delegate(command: str, argv: list[str]) -> int:
    if command == "mock-server":
        from .testing.__main__ import main as mock_main

        return mock_main(argv, prog=f"{PROG} mock-server")
    from .observability.dashboard.cli import main as dashboard_main

    return dashboard_main(argv)


# -- entry point ----------------------------------------------------------------------------


class _LevelFormatter(logging.Formatter):
    """``llm-async: warning: circuit 'openai/gpt-4o': closed -> open``."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


@contextmanager
def _library_logs(err: TextIO, *, debug: bool) -> Iterator[None]:
    """Show the library's log records on ``err`` with a level prefix while a command runs."""
    logger = logging.getLogger("llm_async")
    handler = logging.StreamHandler(err)
    handler.setFormatter(_LevelFormatter())
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    saved = logger.level
    if debug:
        logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def _fail(err: TextIO, message: str) -> None:
    err.write(f"{PROG}: error: {message}\n")
    err.flush()


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 runtime error, 2 usage error)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    inp = stdin if stdin is not None else sys.stdin
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = parser.parse_known_args(arguments)
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if extra and args.command not in ("mock-server", "dashboard"):
        _fail(err, f"unrecognized arguments: {' '.join(extra)}")
        return EXIT_USAGE

    run: Callable[[], int]
    if args.command == "chat":
        def run() -> int:
            return asyncio.run(_chat(args, out, err, inp))
    elif args.command == "bench":
        def run() -> int:
            return asyncio.run(_bench(args, out, err))
    elif args.command == "cost":
        def run() -> int:
            return _cost(args, out)
    else:
        def run() -> int:
            return _delegate(args.command, extra)

    debug = args.debug or os.environ.get("LLM_ASYNC_DEBUG", "") not in ("", "0")
    try:
        with _library_logs(err, debug=debug):
            return run()
    except SystemExit as exc:  # a delegated parser's --help or usage error
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        _fail(err, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, UsageError | ConfigurationError | InvalidRequestError):
            _fail(err, str(exc))
            return EXIT_USAGE
        if isinstance(exc, LLMError):
            _fail(err, f"{type(exc).__name__}: {exc}")
            return EXIT_ERROR
        if isinstance(exc, OSError):
            _fail(err, f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
            return EXIT_ERROR
        _fail(err, f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR
