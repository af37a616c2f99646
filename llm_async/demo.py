"""The demo: ``python -m llm_async.demo`` (or ``nox -s demo``).

It starts the embedded provider server on loopback and shows a chat, a token stream printed as
it arrives, a tool call, a typed error, and 200 concurrent chats with how long they took.
No API key, no network.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from . import AsyncLLMClient, RateLimitError
from .testing import Fault, MockProviderServer


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def main(concurrency: int = 200) -> None:
    async with MockProviderServer(reply_words=16, token_delay=0.02) as server:
        _say(f"embedded provider server: {server.base_url}")
        async with AsyncLLMClient(provider="openai", api_key="sk-demo-not-a-real-key",
                                  base_url=server.base_url, retry_config=None) as client:
            _say(f"client: {client!r}\n")

            _say("1. chat")
            reply = await client.chat(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "echo: Hello from llm_async!"}],
            )
            _say(f"   {reply.text!r}  ({reply.usage.input_tokens} in / "
                 f"{reply.usage.output_tokens} out tokens, {reply.latency * 1000:.1f} ms)\n")

            _say("2. stream (tokens printed as they arrive)")
            sys.stdout.write("   ")
            async with client.stream(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell me a story"}]
            ) as stream:
                async for chunk in stream:
                    sys.stdout.write(chunk.delta)
                    sys.stdout.flush()
            final = stream.final_response
            assert final is not None
            ttft = (final.time_to_first_chunk or 0) * 1000
            _say(f"\n   finish={final.finish_reason}, usage={final.usage.output_tokens} tokens, "
                 f"first token after {ttft:.1f} ms\n")

            _say("3. tool call")
            tools = [{"type": "function", "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }}]
            reply = await client.chat(model="gpt-4o-mini", tools=tools, messages=[
                {"role": "user", "content": "What is the weather?"}])
            call = reply.tool_calls[0]
            _say(f"   {call.name}({call.function.arguments})\n")

            _say("4. a typed error (the server answers 429 with Retry-After)")
            server.add_fault(Fault(status=429, retry_after=2))
            try:
                await client.chat(model="gpt-4o-mini",
                                  messages=[{"role": "user", "content": "hi"}])
            except RateLimitError as exc:
                _say(f"   {type(exc).__name__}: {exc} retry_after={exc.retry_after}s "
                     f"retryable={exc.retryable}\n")

        _say("5. the default stack recovers: the server fails twice with 503, retry succeeds")
        async with AsyncLLMClient(provider="openai", api_key="sk-demo-not-a-real-key",
                                  base_url=server.base_url) as client:
            _say(f"   stack: {' -> '.join(type(h).__name__ for h in client.stack)}")
            before = server.request_count
            server.add_fault(Fault(status=503, times=2))
            reply = await client.chat(model="gpt-4o-mini",
                                      messages=[{"role": "user", "content": "Are you there?"}])
            _say(f"   answered after {server.request_count - before} attempts: "
                 f"{reply.text[:40]!r}..., cost ${reply.cost}\n")

        _say(f"6. {concurrency} concurrent chats")
        server_requests = server.request_count
        async with AsyncLLMClient(provider="openai", api_key="sk-demo-not-a-real-key",
                                  base_url=server.base_url) as client:
            latencies: list[float] = []

            async def one(i: int) -> None:
                started = time.perf_counter()
                await client.chat(model="gpt-4o-mini",
                                  messages=[{"role": "user", "content": f"question {i}"}])
                latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(concurrency)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        _say(f"   {concurrency} chats in {elapsed * 1000:.0f} ms "
             f"({concurrency / elapsed:.0f} req/s); latency p50 "
             f"{statistics.median(latencies) * 1000:.1f} ms, p99 "
             f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms; "
             f"server saw {server.request_count - server_requests} requests")


if __name__ == "__main__":
    asyncio.run(main())
