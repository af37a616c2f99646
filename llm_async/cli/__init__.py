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

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from ..errors import ConfigurationError, InvalidRequestError, LLMError
from ._bench_command import _bench
from ._chat import _chat
from ._cost import _cost
from ._parser import (
    DEFAULT_MODELS,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    build_parser,
)
from ._run import _delegate, _fail, _library_logs

__all__ = ["DEFAULT_MODELS", "build_parser", "main"]


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
