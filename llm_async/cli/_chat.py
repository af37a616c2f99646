"""``llm-async chat``: one prompt, the answer printed (or streamed)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any, TextIO

from ..config import Settings
from ._parser import _MOCK_KEY, DEFAULT_MODELS, EXIT_OK, UsageError


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
    from ..client import AsyncLLMClient

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
            from ..testing import MockProviderServer

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
