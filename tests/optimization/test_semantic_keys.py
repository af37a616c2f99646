"""Canonical request keys, tenant namespaces, normalised keys and the similarity cache."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pytest
from pydantic import BaseModel

from llm_async import AsyncLLMClient
from llm_async.context import CallContext
from llm_async.errors import InvalidRequestError
from llm_async.infrastructure.transports.mock import MockLLMTransport
from llm_async.optimization.cache import CacheConfig, CacheLayer, ResponseCache
from llm_async.optimization.semantic import (
    HashingEmbedder,
    SimilarityIndex,
    canonical_request,
    normalize_text,
    request_key,
    tenant_of,
)
from llm_async.types import ChatRequest, build_request

MSGS = [{"role": "user", "content": "What is the capital of France?"}]


def req(**fields: object) -> ChatRequest:
    base: dict[str, object] = {"model": "gpt-4o-mini", "provider": "openai", "messages": MSGS}
    base.update(fields)
    return build_request(**base)


def test_canonical_form_keeps_what_changes_the_answer() -> None:
    key = request_key(req())
    assert request_key(req(stream=True, timeout=None, options={"cache": "refresh"},
                           extra_headers={"X": "1"}, metadata={"project_id": "p"})) == key
    for change in ({"temperature": 0.5}, {"max_tokens": 9}, {"seed": 1}, {"stop": ["\n"]},
                   {"model": "gpt-4o"}, {"provider": "openrouter"},
                   {"extra_body": {"service_tier": "flex"}},
                   {"tools": [{"type": "function", "function": {"name": "f"}}]},
                   {"response_format": {"type": "json_object"}}):
        assert request_key(req(**change)) != key, change


def test_pydantic_response_formats_are_keyed_by_schema() -> None:
    class A(BaseModel):
        x: int

    class B(BaseModel):
        x: str

    assert request_key(req(response_format=A)) != request_key(req(response_format=B))
    assert canonical_request(req(response_format=A))["response_format"]["pydantic"] == "A"


def test_tenants() -> None:
    alice = req(metadata={"user_id": "alice"})
    assert tenant_of(alice) == "u%3Aalice"
    assert tenant_of(req(), credential="k123") == "k123"
    assert tenant_of(req(metadata={"tenant_id": "acme", "user_id": "bob"})) == "u%3Aacme"
    assert tenant_of(alice, "global") == "-"
    assert tenant_of(req(metadata={"project_id": "p/1"}), "project") == "p%3Ap%2F1"
    assert tenant_of(alice, lambda r: "custom") == "custom"
    assert request_key(alice) != request_key(req(metadata={"user_id": "bob"}))
    with pytest.raises(InvalidRequestError):
        tenant_of(alice, "nobody")  # type: ignore[arg-type]


def test_normalize_text() -> None:
    assert normalize_text("  What is   the **Capital** of “France” ?  ") == \
        normalize_text('what is the capital of "france"?')
    assert normalize_text("Hello.") == normalize_text("hello")
    assert normalize_text("Hello") != normalize_text("Goodbye")
    code = "```\nX = 1\n```"
    assert "X = 1" in normalize_text("Run THIS " + code)  # code keeps its case


def test_normalized_keys_only_when_asked() -> None:
    a = req(messages=[{"role": "user", "content": "Hello   World"}])
    b = req(messages=[{"role": "user", "content": "hello world"}])
    assert request_key(a) != request_key(b)
    assert request_key(a, normalize=True) == request_key(b, normalize=True)


def test_hashing_embedder_scores_near_duplicates_high() -> None:
    emb = HashingEmbedder()
    base = emb.vector("What is the capital of France?")
    near = emb.vector("what's the capital of France")
    far = emb.vector("How do I bake sourdough bread at home?")

    def cos(a: Sequence[float], b: Sequence[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(base, near) > 0.8 > 0.3 > cos(base, far)
    with pytest.raises(InvalidRequestError):
        HashingEmbedder(dim=2)


async def test_similarity_index_is_scoped_and_bounded() -> None:
    index = SimilarityIndex(HashingEmbedder(), threshold=0.8, max_entries=2)
    await index.add(req(), "-", "key-1")
    near = req(messages=[{"role": "user", "content": "what's the capital of France"}])
    match = await index.find(near, "-")
    assert match is not None and match.key == "key-1" and match.score >= 0.8
    assert await index.find(near, "other-tenant") is None
    assert await index.find(req(model="gpt-4o", messages=near.messages), "-") is None
    await index.add(req(messages=[{"role": "user", "content": "a"}]), "-", "key-2")
    await index.add(req(messages=[{"role": "user", "content": "b"}]), "-", "key-3")
    assert len(index) == 2 and await index.find(near, "-") is None  # key-1 was evicted
    with pytest.raises(InvalidRequestError):
        SimilarityIndex(HashingEmbedder(), threshold=0)


async def test_similarity_cache_through_the_layer() -> None:
    transport = MockLLMTransport("Paris.")
    config = CacheConfig(similarity=SimilarityIndex(HashingEmbedder(), threshold=0.8))
    events: list[tuple[str, dict[str, object]]] = []
    async with AsyncLLMClient(provider="mock", transport=transport, layers=[
            partial(CacheLayer, cache=ResponseCache(), config=config)]) as client:
        await client.chat(model="m", messages=MSGS, temperature=0)
        near = client.build_request("m", [{"role": "user", "content":
                                           "what's the capital of France"}],
                                    {"temperature": 0}, stream=False)
        near_ctx = CallContext()
        near_ctx.listeners.append(lambda name, attrs: events.append((name, attrs)))
        hit = await client.chat(request=near, context=near_ctx)
        far = await client.chat(model="m", temperature=0,
                                messages=[{"role": "user", "content": "Best pizza in Rome?"}])
    assert hit.cache_hit and hit.text == "Paris." and not far.cache_hit
    assert transport.call_count == 2
    assert events[0][0] == "cache_hit" and float(events[0][1]["similarity"]) >= 0.8  # type: ignore[arg-type]
