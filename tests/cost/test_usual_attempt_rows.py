"""The usual attempt (one answer, priced, plain usage, no budget) is kept by the in-process
ledger as a compact row and read back as a complete record: the same figures the server
billed, the same fingerprint the general path computes, one stable id per record, in order."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from functools import partial

from llm_async import AsyncLLMClient, MockProviderServer
from llm_async.application.cost_manager import CostLayer, CostManager
from llm_async.application.cost_manager.fingerprints import _message_key, prompt_hashes
from llm_async.application.cost_manager.ledger import MemoryLedger
from llm_async.types import build_request

MODEL = "gpt-4o-mini"


async def test_usual_attempts_read_back_as_the_records_the_server_billed() -> None:
    manager = CostManager(backend=MemoryLedger())
    async with MockProviderServer() as server, AsyncLLMClient(
            provider="openai", api_key="sk-test-abcdef", base_url=server.base_url,
            layers=[partial(CostLayer, manager=manager)]) as client:
        replies = [await client.chat(model=MODEL, messages=[
            {"role": "user", "content": f"question {i}"}], user_id=f"u{i % 2}")
            for i in range(3)]
        # a conversation (it has a prefix): billed through the full record path, in between
        replies.append(await client.chat(model=MODEL, messages=[
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]))
        replies.append(await client.chat(model=MODEL, messages=[
            {"role": "user", "content": "question 4"}]))

    billed = server.billed
    assert len(billed) == 5
    ledger = manager.backend
    assert isinstance(ledger, MemoryLedger)
    kept = list(ledger._records)  # rows until read; the conversation is a full record
    assert [isinstance(item, tuple) for item in kept] == [True, True, True, False, True]
    records = manager.recent_records(10)
    assert len(records) == 5
    price = manager.pricing.lookup(MODEL, "openai")
    assert price is not None
    for record, served, reply in zip(records, billed, replies, strict=True):
        assert (record.input_tokens, record.output_tokens) == (
            served.prompt_tokens, served.completion_tokens)
        assert record.cost == reply.cost == price.cost(reply.usage) > Decimal(0)
        assert record.computed_cost == record.cost and record.outcome == "complete"
        assert not record.estimated and record.reserved is None and record.counts_call
        assert record.model == MODEL and record.provider == "openai" and record.attempt == 1
        assert record.call_id and record.id
    assert [r.user_id for r in records[:3]] == ["u0", "u1", "u0"]
    assert records[3].prefix_hash is not None and records[4].prefix_hash is None
    assert len({r.id for r in records}) == 5
    again = manager.recent_records(10)
    assert [r.id for r in again] == [r.id for r in records]  # made once, then kept
    metrics = manager.get_metrics()
    assert metrics.requests == 5 and metrics.total_cost == sum(r.cost or 0 for r in records)


def test_the_fingerprint_of_one_plain_message_is_the_general_one() -> None:
    for content in ("hello", "", "ünïcode ✓", "x" * 5000):
        request = build_request(model=MODEL, messages=[{"role": "user", "content": content}])
        general = hashlib.sha256(
            f"{MODEL}\x1e{_message_key(request.messages[0])}\x1d".encode()).hexdigest()[:32]
        assert prompt_hashes(request) == (general, None)
    named = build_request(model=MODEL, messages=[{"role": "user", "content": "hi", "name": "a"}])
    plain = build_request(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert prompt_hashes(named)[0] != prompt_hashes(plain)[0]
    huge = build_request(model=MODEL, messages=[{"role": "user", "content": "x" * (2 << 20)}])
    assert prompt_hashes(huge) == (None, None)
