"""Command line for the mock provider server: ``python -m llm_async.testing``.

Prints exactly one ``LISTENING http://HOST:PORT`` line (flushed) once the socket is bound, then
a human hint line, and serves until SIGINT / SIGTERM (exit status 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from ._server import MockProviderServer

__all__ = ["build_parser", "main", "script_main", "serve"]


async def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    reply_words: int = 12,
    token_delay: float = 0.0,
    seed: int = 0,
    rate_limit_headers: bool = False,
    require_api_key: str | None = None,
    stop: asyncio.Event | None = None,
    out: TextIO | None = None,
) -> None:
    """Run a :class:`MockProviderServer` until ``stop`` is set or SIGINT / SIGTERM arrives.

    Writes ``LISTENING <url>`` and a hint line to ``out`` (default: stdout) once listening.
    """
    stream = sys.stdout if out is None else out
    stop_event = asyncio.Event() if stop is None else stop
    server = MockProviderServer(
        host,
        port,
        reply_words=reply_words,
        token_delay=token_delay,
        seed=seed,
        rate_limit_headers=rate_limit_headers,
        require_api_key=require_api_key,
    )
    await server.start()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop_event.set)
        except (NotImplementedError, RuntimeError, ValueError):  # e.g. Windows, non-main thread
            continue
        installed.append(sig)
    try:
        stream.write(f"LISTENING {server.url}\n")
        stream.write(
            f"mock OpenAI-compatible provider: base_url={server.base_url} "
            f"(POST /v1/chat/completions, control under /_mock/); Ctrl+C to stop\n"
        )
        stream.flush()
        await stop_event.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await server.close()


def build_parser(prog: str = "python -m llm_async.testing") -> argparse.ArgumentParser:
    """The argument parser of ``python -m llm_async.testing`` (or of ``prog``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a deterministic mock OpenAI-compatible LLM provider over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="TCP port, 0 picks a free one (default 8000)"
    )
    parser.add_argument(
        "--reply-words", type=int, default=12, help="words per generated reply (default 12)"
    )
    parser.add_argument(
        "--token-delay",
        type=float,
        default=0.0,
        help="seconds slept before each streamed content chunk (default 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="content / fault RNG seed")
    parser.add_argument(
        "--rate-limit-headers", action="store_true", help="send x-ratelimit-* headers"
    )
    parser.add_argument(
        "--require-api-key",
        default=None,
        metavar="KEY",
        help="answer 401 unless 'Authorization: Bearer KEY' is sent",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Entry point; returns the process exit status. ``prog`` names the command in ``--help``
    and usage errors."""
    parser = build_parser() if prog is None else build_parser(prog)
    args = parser.parse_args(None if argv is None else list(argv))
    if args.reply_words < 0 or args.token_delay < 0:
        print(f"{parser.prog}: error: --reply-words and --token-delay must be >= 0",
              file=sys.stderr)
        return 2
    try:
        asyncio.run(
            serve(
                args.host,
                args.port,
                reply_words=args.reply_words,
                token_delay=args.token_delay,
                seed=args.seed,
                rate_limit_headers=args.rate_limit_headers,
                require_api_key=args.require_api_key,
            )
        )
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {exc}",
              file=sys.stderr)
        return 1
    return 0


def script_main() -> int:
    """The ``llm-async-mock-server`` console script."""
    return main(prog="llm-async-mock-server")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
