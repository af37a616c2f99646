"""FallbackLayer: ordered models, reasons, bounded depth, streams, and the whole pipeline."""

from __future__ import annotations

from typing import Any

import pytest

from llm_async import AsyncLLMClient, MockProviderServer
from llm_async.application.circuit_breaker import CircuitBreakerConfig
from llm_async.application.fallback import FallbackLayer
from llm_async.application.retry_strategy import RetryConfig
from llm_async.context import CallContext
from llm_async.errors import (
    AuthenticationError,
    CircuitBreakerOpenError,
    ContextLengthExceededError,
    FallbackExhaustedError,
    InvalidRequestError,
    OverloadedError,
    ServerError,
    StreamError,
)
from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply
from llm_async.testing import Fault
from llm_async.types import build_request


class PerModel(MockLLMTransport):
    """Fails for the models listed in ``broken`` with the given error."""

    def __init__(self, broken: dict[str, BaseException], **kw: Any) -> None:
        super().__init__(**kw)
        self.broken = broken

    async def chat(self, request: Any, ctx: CallContext) -> Any:
        error = self.broken.get(request.model)
        if error is not None:
            self.requests.append(request)
            raise error
        return await super().chat(request, ctx)

    async def stream(self, request: Any, ctx: CallContext) -> Any:  # type: ignore[override]
        error = self.broken.get(request.model)
        if error is not None:
            self.requests.append(request)
            raise error
        async for chunk in super().stream(request, ctx):
            yield chunk


def _request(model: str = "primary", **kw: Any) -> Any:
    return build_request(model=model, messages=[{"role": "user", "content": "hi"}],
                         provider="mock", **kw)


def _events(ctx: CallContext) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    ctx.listeners.append(lambda n, a: seen.append((n, a)))
    return seen


@pytest.mark.parametrize(("error", "reason"), [
    (ServerError("down"), "error"),
    (CircuitBreakerOpenError("open", name="mock/primary"), "circuit_open"),
    (ContextLengthExceededError("too long"), "context_length"),
])
async def test_moves_on_with_reason_and_reports_who_answered(
        error: BaseException, reason: str) -> None:
    transport = PerModel({"primary": error})
    layer = FallbackLayer(transport, ["backup"])
    request = _request()
    ctx = CallContext()
    events = _events(ctx)
    response = await layer.chat(request, ctx)
    assert response.model == "backup" and response.requested_model == "primary"
    assert ctx.answered_model == "backup"
    assert events == [("fallback", {"from_model": "primary", "to_model": "backup",
                                    "from_provider": "mock", "to_provider": "mock",
                                    "reason": reason, "error": type(error).__name__})]


async def test_does_not_fall_back_on_caller_errors() -> None:
    transport = PerModel({"primary": AuthenticationError("bad key")})
    layer = FallbackLayer(transport, ["backup"])
    with pytest.raises(AuthenticationError):
        await layer.chat(_request(), CallContext())
    assert [r.model for r in transport.requests] == ["primary"]


async def test_exhausted_chain_lists_every_error_and_depth_is_bounded() -> None:
    broken = {m: OverloadedError(f"{m} busy") for m in ("primary", "b1", "b2", "b3", "b4")}
    transport = PerModel(broken)
    layer = FallbackLayer(transport, ["b1", "b2", "b3", "b4"], max_depth=2)
    with pytest.raises(FallbackExhaustedError) as info:
        await layer.chat(_request(), CallContext())
    assert [m for m, _ in info.value.errors] == ["mock/primary", "mock/b1", "mock/b2"]
    assert isinstance(info.value.__cause__, OverloadedError)
    assert [r.model for r in transport.requests] == ["primary", "b1", "b2"]


async def test_per_call_models_and_provider_prefixes() -> None:
    transport = PerModel({"primary": ServerError("x")})
    layer = FallbackLayer(transport, ["ignored"],
                          resolve=lambda m: tuple(m.split("/", 1)) if "/" in m else ("mock", m))
    response = await layer.chat(_request(options={"fallback_models": ["other/model-b"]}),
                                CallContext())
    assert transport.requests[-1].provider == "other" and response.model == "model-b"
    with pytest.raises(ServerError):  # [] switches fallback off for this call
        await layer.chat(_request(options={"fallback_models": []}), CallContext())
    with pytest.raises(InvalidRequestError):
        await layer.chat(_request(options={"fallback_models": "backup"}), CallContext())


async def test_stream_falls_back_only_before_the_first_chunk() -> None:
    transport = PerModel({"primary": ServerError("down")}, default_response="from backup")
    layer = FallbackLayer(transport, ["backup"])
    text = "".join([c.delta async for c in layer.stream(_request(stream=True), CallContext())])
    assert text == "from backup"
    cut = MockLLMTransport(responses=[MockReply(text="a b c", error=ServerError("x"),
                                                fail_after=1)])
    layer = FallbackLayer(cut, ["backup"])
    with pytest.raises(StreamError):
        async for _ in layer.stream(_request(stream=True), CallContext()):
            pass
    assert cut.call_count == 1


async def test_full_pipeline_provider_outage_falls_back_after_retries_and_breaker() -> None:
    """gpt-4o-mini always answers 503: retries are spent, the breaker opens, and every call is
    answered by gpt-4o; once the breaker is open, primary calls cost no upstream request."""
    async with MockProviderServer() as server:
        server.add_fault(Fault(status=503, times=None, model="gpt-4o-mini"))
        async with AsyncLLMClient(
                provider="openai", api_key="sk-test-abcdef", base_url=server.base_url,
                retry_config=RetryConfig(max_attempts=3, base_delay=0.001),
                circuit_breaker_config=CircuitBreakerConfig(failure_threshold=3, timeout=60.0),
                fallback_models=["gpt-4o"], tracing=False,
        ) as client:
            messages = [{"role": "user", "content": "q"}]
            reasons: list[str] = []
            for _ in range(5):
                request = client.build_request("gpt-4o-mini", messages, {}, stream=False)
                ctx = CallContext()
                ctx.listeners.append(
                    lambda n, a: reasons.append(a["reason"]) if n == "fallback" else None)
                reply = await client.handler.chat(request, ctx)
                assert reply.model.startswith("gpt-4o") and reply.requested_model == "gpt-4o-mini"
            assert reasons == ["error"] + ["circuit_open"] * 4
            primary = sum(1 for r in server.requests if r.body["model"] == "gpt-4o-mini")
            assert primary == 3  # three attempts, then the breaker answered for the provider
