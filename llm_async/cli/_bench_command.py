"""``llm-async bench``: throughput and latency against the embedded server or any
OpenAI-compatible one, with a progress bar."""

from __future__ import annotations

import argparse
import asyncio
import json
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, TextIO

from ..config import Settings
from ._chat import _model_for, _provider_for
from ._parser import _MOCK_KEY, EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from .._bench import BenchResult


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
    from .._bench import BenchResult, run_bench
    from ..client import AsyncLLMClient

    settings = Settings.from_env()
    async with AsyncExitStack() as stack:
        provider, base_url, api_key = args.provider, args.base_url, None
        if base_url is None:
            from ..testing import MockProviderServer

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
    from .._bench import format_table

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
