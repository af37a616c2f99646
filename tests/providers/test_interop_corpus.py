"""Real recorded provider payloads, replayed through our transports over loopback.

The corpus (``../shared/interop_corpus`` beside the checkout; one folder per case with the
``body`` a server sent and a ``meta.json``) is read at test time, never copied here. A tiny
aiohttp server writes each body in small pieces (splitting UTF-8 characters and CR LF pairs),
and each case is read three ways:

* by our transport (chat and/or stream, as the recording was made);
* by the official ``openai`` / ``anthropic`` SDK against the same server: what it extracts
  (text, reasoning, tool calls, finish reason, usage, refusal, citations, error class) is what
  a correct client extracts, and ours must agree;
* by the expectations ``meta.json`` states (error class, status, retryability, usage, cost).

A few payloads no official SDK reads (Mistral's thinking parts, a stream without ``[DONE]``
that the SDK accumulator cannot finish) carry expectations written from the body below.
Cases recorded from Azure or Bedrock also run through their own transport once one exists.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web
from openai.lib.streaming.chat import ChatCompletionStreamState

from llm_async import errors
from llm_async.context import CallContext
from llm_async.infrastructure.transports.anthropic_transport import AnthropicTransport
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.infrastructure.transports.openrouter_transport import OpenRouterTransport
from llm_async.types import ChatResponse, StreamAssembler, build_request

ROOT = Path(__file__).resolve().parents[2]


def _corpus_dir() -> Path | None:
    """``../shared/interop_corpus`` beside this checkout, or beside the main checkout when this
    is a git worktree (``LLM_ASYNC_INTEROP_CORPUS`` overrides both)."""
    override = os.environ.get("LLM_ASYNC_INTEROP_CORPUS")
    candidates = [Path(override)] if override else []
    candidates.append(ROOT.parent / "shared" / "interop_corpus")
    git = ROOT / ".git"
    if git.is_file():  # a worktree: .git names <main>/.git/worktrees/<name>
        text = git.read_text().strip()
        if text.startswith("gitdir:"):
            main_checkout = Path(text.split(":", 1)[1].strip()).parents[2]
            candidates.append(main_checkout.parent / "shared" / "interop_corpus")
    return next((c for c in candidates if (c / "manifest.tsv").is_file()), None)


CORPUS = _corpus_dir()
MISSING = ("the real-payload corpus is absent: expected ../shared/interop_corpus beside the "
           "checkout (or LLM_ASYNC_INTEROP_CORPUS)")


def _cases() -> list[dict[str, Any]]:
    if CORPUS is None:
        return []
    out = []
    for folder in sorted(CORPUS.iterdir()):
        meta = folder / "meta.json"
        if folder.is_dir() and meta.is_file():
            case = json.loads(meta.read_text())
            case["body"] = (folder / "body").read_bytes()
            out.append(case)
    return out


CASES = _cases()

#: Transports of providers whose recordings are also replayed through their own transport,
#: once it exists: case-id marker -> (module, class). The ``-bedrock-`` cases are Anthropic
#: Messages bodies (Claude behind a Bedrock gateway), replayed by the Anthropic transport; the
#: Bedrock transport speaks Converse, whose wire is tested in ``test_bedrock_wire.py``.
PROVIDER_TRANSPORTS: dict[str, tuple[str, str, str]] = {
    "azure-": ("azure", "llm_async.infrastructure.transports.azure_transport",
               "AzureOpenAITransport"),
}


def _params() -> list[Any]:
    if not CASES:
        return [pytest.param(None, None, None, marks=pytest.mark.skip(reason=MISSING),
                             id="corpus-absent")]
    params = []
    for case in CASES:
        modes = ("chat", "stream") if case["mode"] == "both" else (case["mode"],)
        for mode in modes:
            params.append(pytest.param(case, mode, case["provider"],
                                       id=f"{case['id']}-{mode}"))
            for marker, (name, module, cls) in PROVIDER_TRANSPORTS.items():
                if marker in case["id"]:
                    marks = ()
                    if _transport_class(module, cls) is None:
                        marks = (pytest.mark.skip(
                            reason=f"no {name} transport yet ({module}.{cls})"),)
                    params.append(pytest.param(case, mode, name, marks=marks,
                                               id=f"{case['id']}-{mode}-{name}"))
    return params


def _transport_class(module: str, cls: str) -> Any:
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        return None


# -- the loopback server ---------------------------------------------------------------------

def pieces(body: bytes, split: str, seed: str) -> list[bytes]:
    """``body`` cut the way ``split`` says: ``fine`` (1-9 bytes, always inside the first
    multi-byte UTF-8 character), ``coarse`` (4 KiB), ``crlf`` (inside every CR LF pair)."""
    if split == "coarse":
        return [body[i:i + 4096] for i in range(0, len(body), 4096)]
    if split == "crlf":
        cuts = [i + 1 for i in range(len(body) - 1) if body[i:i + 2] == b"\r\n"]
    else:
        rng = random.Random(seed)
        cuts, at = [], 0
        while at < len(body):
            at += rng.randint(1, 9)
            cuts.append(at)
        multibyte = next((i for i, b in enumerate(body) if b >= 0xC0), None)
        if multibyte is not None:
            cuts.append(multibyte + 1)  # after a lead byte, before its continuation
    out, last = [], 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(body))):
        out.append(body[last:cut])
        last = cut
    out.append(body[last:])
    return [p for p in out if p]


class CorpusServer:
    """Serves case ``id`` at ``/{id}/...``: its status, headers and body, written in pieces."""

    def __init__(self) -> None:
        self.cases = {c["id"]: c for c in CASES}
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        case = self.cases[request.match_info["case"]]
        await request.read()
        body = case["body"]
        if b"__API_KEY__" in body:  # the recording echoes the key the client sent
            key = request.headers.get("x-api-key") or request.headers.get(
                "Authorization", "").removeprefix("Bearer ")
            body = body.replace(b"__API_KEY__", key.encode())
        resp = web.StreamResponse(status=case["status"], headers=case["headers"])
        await resp.prepare(request)
        for piece in pieces(body, case["split"], case["id"]):
            await resp.write(piece)
        await resp.write_eof()
        return resp

    async def __aenter__(self) -> CorpusServer:
        app = web.Application()
        app.router.add_route("*", "/{case}/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def corpus_server() -> AsyncIterator[CorpusServer]:
    async with CorpusServer() as server:
        yield server


# -- what each reader extracts ---------------------------------------------------------------

def _arguments(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return ("not json", text)


def _call(call: Any) -> tuple[str, Any]:
    """A tool call as (name, arguments); a call cut at max_tokens as (name, "incomplete")."""
    if getattr(call, "incomplete", False):
        return (call.name, "incomplete")
    return (call.name, _arguments(call.function.arguments))


def ours(response: ChatResponse) -> dict[str, Any]:
    refusal = getattr(response, "refusal", None)
    return {
        "text": response.text,
        "reasoning": getattr(response, "reasoning", ""),
        "tool_calls": [_call(c) for c in response.tool_calls],
        "finish": response.finish_reason,
        "usage": (response.usage.input_tokens, response.usage.output_tokens),
        "refusal": refusal.text if refusal else None,
        "citations": [c.url or c.cited_text for c in getattr(response, "citations", ())],
        "choices": len(getattr(response, "choices", [None])),
        "incomplete": [c for c in response.tool_calls if getattr(c, "incomplete", False)],
        "logprobs": [t.token for t in getattr(response, "logprobs", None) or ()] or None,
        "extras": set(getattr(response, "extras", {})),
    }


_OPENAI_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                  "function_call": "tool_calls", "content_filter": "content_filter"}
_ANTHROPIC_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                     "max_tokens": "length", "tool_use": "tool_calls",
                     "refusal": "content_filter"}


def _extra(obj: Any, *names: str) -> str:
    extra = getattr(obj, "model_extra", None) or {}
    for name in names:
        value = extra.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def sdk_openai(completion: Any) -> dict[str, Any]:
    choices = sorted(completion.choices, key=lambda c: c.index)
    choice = choices[0]
    message = choice.message
    calls = [(c.function.name, _arguments(c.function.arguments))
             for c in message.tool_calls or ()]
    if not calls and message.function_call is not None:
        calls = [(message.function_call.name, _arguments(message.function_call.arguments))]
    usage = completion.usage
    refusal = message.refusal or None
    return {
        "text": message.content or "",
        "reasoning": _extra(message, "reasoning_content", "reasoning"),
        "tool_calls": calls,
        "finish": _OPENAI_FINISH.get(choice.finish_reason or "", "stop")
        if choice.finish_reason else None,
        "usage": (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0),
        "refusal": refusal,
        "citations": [a.url_citation.url for a in message.annotations or ()
                      if getattr(a, "url_citation", None)],
        "choices": len(choices),
        "logprobs": [t.token for t in (choice.logprobs.content or choice.logprobs.refusal or ())]
        or None if choice.logprobs else None,
        # Fields the SDK has no attribute for: a correct client keeps them too.
        "extras": {k for obj in (completion, choice, message)
                   for k, v in (obj.model_extra or {}).items() if v is not None}
        - {"reasoning_content", "reasoning", "reasoning_details", "images"},
    }


def sdk_anthropic(message: Any) -> dict[str, Any]:
    texts, thinking, calls, cited = [], [], [], []
    cut = message.stop_reason == "max_tokens"
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
            cited.extend(getattr(c, "url", None) or getattr(c, "cited_text", None)
                         for c in block.citations or ())
        elif block.type == "thinking":
            thinking.append(block.thinking)
        elif block.type == "tool_use":
            # The SDK parses cut JSON partially; a cut call's arguments are not an answer.
            last = cut and block is message.content[-1]
            calls.append((block.name, "incomplete" if last else block.input))
    usage = message.usage
    read = usage.cache_read_input_tokens or 0
    write = usage.cache_creation_input_tokens or 0
    refusal = None
    if message.stop_reason == "refusal":
        details = getattr(message, "stop_details", None) or (message.model_extra or {}).get(
            "stop_details")
        explanation = (details.get("explanation") if isinstance(details, dict)
                       else getattr(details, "explanation", None))
        refusal = explanation or ""
    text = "".join(texts)
    return {
        "text": text,
        "reasoning": "".join(thinking),
        "tool_calls": calls,
        "finish": _ANTHROPIC_FINISH.get(message.stop_reason or "", "stop"),
        "usage": (usage.input_tokens + read + write, usage.output_tokens),
        "refusal": refusal,
        "citations": cited,
        "choices": 1,
    }


#: What the official SDKs' errors are in our tree.
_SDK_ERRORS: dict[str, type[errors.LLMError]] = {
    "AuthenticationError": errors.AuthenticationError,
    "BadRequestError": errors.BadRequestError,
    "RateLimitError": errors.RateLimitError,
    "InternalServerError": errors.ServerError,
    "OverloadedError": errors.OverloadedError,
    "PermissionDeniedError": errors.PermissionDeniedError,
    "NotFoundError": errors.NotFoundError,
    "APIStatusError": errors.APIStatusError,
}


async def run_ours(transport: Any, mode: str, provider: str) -> dict[str, Any]:
    request = build_request(model="recorded-model", messages=[{"role": "user", "content": "hi"}],
                            max_tokens=64)
    if mode == "chat":
        response = await transport.chat(request, CallContext())
    else:
        assembler = StreamAssembler()
        async for chunk in transport.stream(request, CallContext()):
            assembler.add(chunk)
        response = assembler.response(provider=provider)
    result = ours(response)
    result["provider_cost"] = response.provider_cost
    result["usage_detail"] = {
        "input": response.usage.input_tokens, "output": response.usage.output_tokens,
        "cache_read": response.usage.cache_read_tokens,
        "cache_write": response.usage.cache_write_tokens,
        "reasoning": response.usage.reasoning_tokens,
    }
    return result


async def run_sdk(base_url: str, case: dict[str, Any], mode: str) -> dict[str, Any]:
    if case["provider"] == "anthropic":
        client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=base_url,
                                          max_retries=0)
        args: dict[str, Any] = {"model": "recorded-model", "max_tokens": 64,
                                "messages": [{"role": "user", "content": "hi"}]}
        async with client:
            if mode == "chat":
                return sdk_anthropic(await client.messages.create(**args))
            async with client.messages.stream(**args) as stream:
                return sdk_anthropic(await stream.get_final_message())
    oai = openai.AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
    oargs: dict[str, Any] = {"model": "recorded-model",
                             "messages": [{"role": "user", "content": "hi"}]}
    async with oai:
        if mode == "chat":
            return sdk_openai(await oai.chat.completions.create(**oargs))
        state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
        chunks = await oai.chat.completions.create(stream=True, **oargs)
        async for chunk in chunks:
            state.handle_chunk(chunk)
        # The snapshot: get_final_completion() refuses length / content_filter finishes.
        return sdk_openai(state.current_completion_snapshot)


#: The keys our transports send; some recordings echo them back in their error body.
API_KEYS = {"anthropic": "sk-ant-replay-7f3a", "openrouter": "sk-or-replay-7f3a",
            "openai": "sk-replay-7f3a", "other": "replay-key-7f3a"}


def make_transport(kind: str, base_url: str) -> Any:
    if kind == "anthropic":
        return AnthropicTransport(api_key=API_KEYS[kind], base_url=base_url)
    if kind == "openrouter":
        return OpenRouterTransport(api_key=API_KEYS[kind], base_url=base_url)
    if kind == "openai":
        return OpenAITransport(api_key=API_KEYS[kind], base_url=base_url)
    module, cls = next((m, c) for n, m, c in PROVIDER_TRANSPORTS.values() if n == kind)
    return _transport_class(module, cls)(api_key=API_KEYS["other"], base_url=base_url)


#: Expectations written from the body, for payloads the official SDKs cannot read.
#: case id -> (reason the SDK is not used, expected fields).
WRITTEN: dict[str, tuple[str, dict[str, Any]]] = {
    "mistral-stream-magistral-thinking": (
        "the openai SDK's stream accumulator cannot merge list-valued delta.content",
        {"text": "Hello World", "reasoning": "好的 about", "finish": "stop", "tool_calls": []},
    ),
    "aib-oai-streaming-injected-tool-nonzero-index-stream": (
        "the openai SDK's stream accumulator fails on a first tool call at index 1",
        {"text": "Now listing your Coder workspaces:", "finish": "tool_calls",
         "tool_calls": [("bmcp_coder_coder_list_workspaces", {})], "usage": (25939, 58)},
    ),
}

#: Fields where the SDK reads less than a correct client: case id -> {field: why}.
SDK_BLIND: dict[str, dict[str, str]] = {}


@pytest.mark.parametrize(("case", "mode", "kind"), _params())
async def test_replay(corpus_server: CorpusServer, case: dict[str, Any], mode: str,
                      kind: str) -> None:
    base_url = f"{corpus_server.url}/{case['id']}"
    transport = make_transport(kind, base_url)
    expect = case["expect"]
    error: BaseException | None = None
    result: dict[str, Any] = {}
    try:
        result = await run_ours(transport, mode, case["provider"])
    except errors.LLMError as exc:
        error = exc
    finally:
        await transport.aclose()
        await asyncio.sleep(0)

    sdk: dict[str, Any] | None = None
    sdk_error: BaseException | None = None
    written = WRITTEN.get(case["id"])
    if written is None:
        try:
            sdk = await run_sdk(base_url, case, mode)
        except (openai.APIError, anthropic.APIError) as exc:
            sdk_error = exc

    if "error" in expect:
        want = expect["error"]
        assert error is not None, f"expected {want['class']}, got {result}"
        # The class the recording names, or a more specific one of the tree below it.
        assert want["class"] in {c.__name__ for c in type(error).__mro__}, repr(error)
        if "status" in want:
            status = error.status
            if isinstance(error, errors.StreamError):
                assert type(error.cause).__name__ == want["cause"], repr(error.cause)
                status = error.cause.status
            assert status == want["status"]
        assert error.retryable == want["retryable"]
        for key in API_KEYS.values():  # a key echoed by the provider never survives
            assert key not in str(error) and key not in repr(error) and key not in error.message
        assert sdk_error is not None, "the official SDK read an answer where we saw an error"
        return
    assert error is None, f"{case['id']}: {error!r}"
    if sdk_error is not None:
        # The SDK refused a payload we read: only an in-stream error may do that.
        raise AssertionError(f"the official SDK failed on {case['id']}: {sdk_error!r}")
    for key in ("usage",):
        if key in expect:
            assert result["usage_detail"] == expect["usage"]
    if "provider_cost" in expect:
        assert result["provider_cost"] == pytest.approx(expect["provider_cost"])
    reference = written[1] if written is not None else sdk
    assert reference is not None
    blind = SDK_BLIND.get(case["id"], {})
    for field, value in reference.items():
        if field in blind:
            continue
        if field == "extras":  # the SDK's extra fields, at least
            assert value <= result[field], f"{case['id']}: extras {result[field]!r}"
            continue
        assert result[field] == value, f"{case['id']} {field}: ours {result[field]!r}"
    for call in result["incomplete"]:  # cut by max_tokens: typed, with the raw text
        assert result["finish"] == "length"
        with pytest.raises(errors.ToolArgumentsError) as info:
            call.parsed_arguments()
        assert info.value.raw_text == call.function.arguments and info.value.incomplete


def test_corpus_is_complete() -> None:
    if CORPUS is None:
        pytest.skip(MISSING)
    manifest = (CORPUS / "manifest.tsv").read_text().splitlines()[1:]
    assert {line.split("\t")[0] for line in manifest if line} == {c["id"] for c in CASES}
    assert len(CASES) >= 108


def test_pieces_cut_inside_characters_and_line_ends() -> None:
    body = "data: {\"x\": \"é\"}\r\n\r\n".encode()
    fine = pieces(body, "fine", "seed")
    assert b"".join(fine) == body
    assert any(p.endswith(b"\xc3") for p in fine)
    crlf = pieces(body, "crlf", "seed")
    assert b"".join(crlf) == body
    assert any(p.endswith(b"\r") for p in crlf) and any(p.startswith(b"\n") for p in crlf)


def test_the_plain_completion_path_reads_every_recorded_answer_as_the_general_parser() -> None:
    """The short path for the usual completion either declines or builds exactly what the
    general parser builds (same fields, same fields set), on every recorded OpenAI-shaped
    answer."""
    if CORPUS is None:
        pytest.skip(MISSING)
    from llm_async.infrastructure.transports.openai.decode import _plain_response

    transport = OpenAITransport("sk-corpus-plain-0000", "http://127.0.0.1:9/v1")
    request = build_request(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    taken = 0
    for case in CASES:
        try:
            data = json.loads(case["body"])
        except ValueError:
            continue  # a stream
        if not isinstance(data, dict) or "choices" not in data:
            continue
        plain = _plain_response(data, request)
        if plain is None:
            continue
        taken += 1
        reference = transport.parse_any_response(data, request)
        assert plain.__dict__ == reference.__dict__, case["id"]
        assert plain.model_fields_set == reference.model_fields_set, case["id"]
    assert taken >= 5  # the usual answer is the common one in the corpus too
