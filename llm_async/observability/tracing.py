"""``TracingLayer``: one OpenTelemetry CLIENT span per logical call, on the GenAI conventions.

The outermost layer of the default pipeline. For every call it

* starts a span named ``{gen_ai.operation.name} {gen_ai.request.model}`` (``chat gpt-4o``) with
  the attributes a sampler needs set at start (operation, provider, request model, server
  address and port), then the request parameters;
* turns what the inner layers report through the call's context (``ctx.event(...)``) into span
  events: ``retry``, ``cache_hit``, ``dedup_join``, ``circuit_rejected``, ``fallback`` and any
  other event name;
* ends the span with the response model and id, finish reasons, token usage (cached tokens
  included in the input count), ``gen_ai.response.time_to_first_chunk`` for streams, or with
  ``error.type`` and an ERROR status;
* records ``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage`` (two points) and
  ``gen_ai.client.operation.time_to_first_chunk``;
* reports the call to an :class:`~llm_async.observability.facade.Observability` (the dashboard's
  rolling statistics), and logs one DEBUG line on the ``llm_async`` logger.

Message content goes on the span only when ``capture_content=True`` (``gen_ai.input.messages``,
``gen_ai.output.messages``, ``gen_ai.tool.definitions``, JSON strings). API keys never do: they
are not part of a request, and every string taken from an error or an event passes through
:func:`llm_async.errors.redact`.

Cost when unused: without OpenTelemetry, or with only the API and no SDK provider configured,
no span or metric object is created; only the statistics (a few dict updates) and a disabled
logger check remain. ``benchmarks/bench_tracing_overhead.py`` measures it.

Streams: the span covers the whole stream, from the first ``__anext__`` to the generator's end,
including ``break``, ``aclose()`` and cancellation (all finished in ``finally``, synchronously).
The span is made current only while the inner stream is being pulled, so spans of inner
instrumentation (aiohttp) nest under it without a context leaking across ``yield``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._clock import Clock, system_clock
from ..context import CallContext
from ..domain.ports import Handler, Layer, aclosing
from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    CircuitBreakerOpenError,
    ConfigurationError,
    ConflictError,
    ContextLengthExceededError,
    FallbackExhaustedError,
    InsufficientCreditsError,
    InvalidRequestError,
    LLMError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    QuotaExceededError,
    RateLimiterError,
    RateLimitError,
    RefusalError,
    RequestTimeoutError,
    ResponseTooLargeError,
    ServerError,
    StreamError,
    StructuredOutputError,
    ToolArgumentsError,
    UnprocessableEntityError,
    redact,
)
from ..infrastructure.transports.registry import otel_provider_name
from ..types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    ReasoningPart,
    StreamAssembler,
    TextPart,
    Usage,
)
from .facade import CallRecord, Observability, get_observability
from .metrics import genai_metrics, register_seed_metrics

try:
    from opentelemetry import context as _otel_context, trace as _otel_trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    HAVE_OTEL = True
except ImportError:  # pragma: no cover - exercised in a subprocess test
    HAVE_OTEL = False

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider


__all__ = [
    "ERROR_TYPES",
    "TracingLayer",
    "attribute_value",
    "error_type",
    "event_attributes",
    "server_endpoint",
]

logger = logging.getLogger("llm_async")

_INSTRUMENTATION = "llm_async"

#: ``error.type`` for each error class (the most specific class of an error's MRO wins). Other
#: exceptions report ``_OTHER``; a cancelled call reports ``cancelled``.
ERROR_TYPES: Mapping[type[BaseException], str] = {
    LLMError: "_OTHER",
    InvalidRequestError: "invalid_request",
    ConfigurationError: "configuration_error",
    APIConnectionError: "connection_error",
    APITimeoutError: "timeout",
    APIStatusError: "api_error",
    BadRequestError: "bad_request",
    ContextLengthExceededError: "context_length_exceeded",
    AuthenticationError: "authentication_error",
    InsufficientCreditsError: "insufficient_credits",
    PermissionDeniedError: "permission_denied",
    NotFoundError: "not_found",
    RequestTimeoutError: "timeout",
    ConflictError: "conflict",
    UnprocessableEntityError: "unprocessable_entity",
    RateLimitError: "rate_limited",
    QuotaExceededError: "quota_exceeded",
    ServerError: "server_error",
    OverloadedError: "overloaded",
    ProtocolError: "protocol_error",
    ResponseTooLargeError: "response_too_large",
    StreamError: "stream_interrupted",
    StructuredOutputError: "structured_output_invalid",
    RefusalError: "refusal",
    ToolArgumentsError: "tool_arguments_invalid",
    CircuitBreakerOpenError: "circuit_open",
    RateLimiterError: "rate_limiter_rejected",
    BudgetExceededError: "budget_exceeded",
    FallbackExhaustedError: "fallback_exhausted",
    asyncio.CancelledError: "cancelled",
}

#: Event attribute keys that are never recorded, whatever a layer reports.
_SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "headers", "password", "secret",
                          "x-api-key"})


def error_type(exc: BaseException) -> str:
    """The low-cardinality ``error.type`` of an exception (see :data:`ERROR_TYPES`)."""
    for cls in type(exc).__mro__:
        label = ERROR_TYPES.get(cls)
        if label is not None:
            return label
    return "_OTHER"


def attribute_value(value: Any) -> Any:
    """``value`` as an OpenTelemetry attribute value, or ``None`` when it cannot be one.

    Strings are redacted; Decimals become floats; exceptions become their ``error.type``;
    sequences keep their primitive items. Anything else is dropped (never ``str()``-ed: an
    arbitrary object may hold content or secrets).
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, BaseException):
        return error_type(value)
    if isinstance(value, list | tuple):
        items = [attribute_value(v) for v in value]
        items = [v for v in items if isinstance(v, str | bool | int | float)]
        if items and all(type(v) is type(items[0]) for v in items):
            return items
    return None


def event_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Clean event attributes: secret-named keys dropped, values through :func:`attribute_value`."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if key.lower() in _SECRET_KEYS:
            continue
        clean = attribute_value(value)
        if clean is not None:
            out[key] = clean
    return out


def server_endpoint(base_url: str | None) -> tuple[str, int] | None:
    """``(server.address, server.port)`` of a base URL (port 443/80 when the URL has none)."""
    if not base_url:
        return None
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return parts.hostname, port


def _header_request_id(headers: Mapping[str, str] | None) -> str | None:
    if not headers:
        return None
    return headers.get("x-request-id") or headers.get("request-id")


# -- tracer resolution (shared with the facade) -------------------------------------------------

_tracers: dict[int, tuple[Any, Tracer]] = {}
_UNKNOWN = object()


def _tracer_for(provider: TracerProvider | None) -> Tracer | None:
    """A tracer of ``provider`` (or of the global provider), or ``None`` when no SDK is set."""
    if not HAVE_OTEL:
        return None
    if provider is None:
        # Fast path: the API keeps the global provider in a module variable; while it is unset
        # (no SDK configured), skip get_tracer_provider()'s environment lookup.
        if getattr(_otel_trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
            return None
        provider = _otel_trace.get_tracer_provider()
        if isinstance(provider, _otel_trace.ProxyTracerProvider | _otel_trace.NoOpTracerProvider):
            return None
    cached = _tracers.get(id(provider))
    if cached is not None and cached[0] is provider:
        return cached[1]
    from .. import __version__

    tracer = provider.get_tracer(_INSTRUMENTATION, __version__)
    if len(_tracers) > 64:
        _tracers.clear()
    _tracers[id(provider)] = (provider, tracer)
    return tracer


def start_operation_span(provider: TracerProvider | None, name: str,
                         attributes: Mapping[str, Any]) -> Span | None:
    """An INTERNAL span for a user operation of the facade, or ``None`` without an SDK."""
    tracer = _tracer_for(provider)
    if tracer is None:
        return None
    attrs = event_attributes(attributes)
    model = attrs.get("model")
    if isinstance(model, str):
        attrs.setdefault("gen_ai.request.model", model)
    return tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attrs)


def end_operation_span(span: Span, attributes: Mapping[str, Any], etype: str | None,
                       error: str | None) -> None:
    """End a facade span with its final attributes and status."""
    for key, value in event_attributes(attributes).items():
        span.set_attribute(key, value)
    if etype is not None:
        span.set_attribute("error.type", etype)
        span.set_status(Status(StatusCode.ERROR, error or etype))
    span.end()


# -- content capture (opt-in) -----------------------------------------------------------------


def _parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if message.role == "tool":
        parts.append({"type": "tool_call_response", "id": message.tool_call_id,
                      "response": message.text})
        return parts
    if isinstance(message.content, str):
        parts.append({"type": "text", "content": message.content})
    elif message.content:
        for part in message.content:
            if isinstance(part, ImagePart):
                url = part.image_url.url
                if url.startswith("data:"):
                    url = url.split(",", 1)[0] + ",..."
                parts.append({"type": "uri", "modality": "image", "uri": url})
            elif isinstance(part, TextPart):
                parts.append({"type": "text", "content": part.text})
            elif isinstance(part, ReasoningPart):
                parts.append({"type": "reasoning", "content": part.text})
    for call in message.tool_calls or ():
        parts.append({"type": "tool_call", "id": call.id, "name": call.function.name,
                      "arguments": call.function.arguments})
    return parts


def _input_messages(request: ChatRequest) -> str:
    return json.dumps([{"role": m.role, "parts": _parts(m)} for m in request.messages],
                      ensure_ascii=False)


def _output_messages(text: str | None, tool_calls: Sequence[Any],
                     finish_reason: str | None) -> str:
    parts: list[dict[str, Any]] = []
    if text:
        parts.append({"type": "text", "content": text})
    for call in tool_calls:
        parts.append({"type": "tool_call", "id": call.id, "name": call.function.name,
                      "arguments": call.function.arguments})
    return json.dumps([{"role": "assistant", "parts": parts,
                        "finish_reason": finish_reason or ""}], ensure_ascii=False)


def _tool_definitions(request: ChatRequest) -> str | None:
    if not request.tools:
        return None
    return json.dumps([{"type": "function", "name": t.function.name,
                        "description": t.function.description,
                        "parameters": t.function.parameters} for t in request.tools],
                      ensure_ascii=False)


def _output_type(response_format: Any) -> str | None:
    if response_format is None:
        return None
    if isinstance(response_format, Mapping):
        return "text" if response_format.get("type") == "text" else "json"
    return "json"


# -- the layer ----------------------------------------------------------------------------------

_COST_TYPES = (Decimal, float, int)


class _Outcome:
    """What a successful call produced, read from a response or from a stream's chunks."""

    __slots__ = ("assembler", "cache_hit", "cost", "finish_reason", "id", "model", "request_id",
                 "response", "usage")

    def __init__(self, *, model: str, id: str | None, finish_reason: str | None,
                 usage: Usage | None, cost: Any, cache_hit: bool, request_id: str | None,
                 response: ChatResponse | None = None,
                 assembler: StreamAssembler | None = None) -> None:
        self.model = model
        self.id = id
        self.finish_reason = finish_reason
        self.usage = usage
        self.cost = cost
        self.cache_hit = cache_hit
        self.request_id = request_id
        self.response = response
        self.assembler = assembler

    @classmethod
    def of_response(cls, response: ChatResponse) -> _Outcome:
        # Once per unary call: fill the slots directly (no keyword binding).
        self = cls.__new__(cls)
        self.model = response.model
        self.id = response.id
        self.finish_reason = response.finish_reason
        self.usage = response.usage
        self.cost = response.cost
        self.cache_hit = response.cache_hit
        self.request_id = response.request_id
        self.response = response
        self.assembler = None
        return self

    def output_messages(self) -> str:
        if self.response is not None:
            return _output_messages(self.response.content, self.response.tool_calls,
                                    self.finish_reason)
        assembler = self.assembler
        assert assembler is not None
        return _output_messages(assembler.text, assembler.tool_calls(), self.finish_reason)


class _Call:
    """The state of one traced call; also its ``CallContext`` listener (``__call__``)."""

    __slots__ = ("cache_hit", "ctx", "dedup", "fallbacks", "rejections", "request", "retries",
                 "span", "started", "ttfc")

    def __init__(self, request: ChatRequest, ctx: CallContext, span: Span | None,
                 started: float) -> None:
        self.request = request
        self.ctx = ctx
        self.span = span
        self.started = started
        self.ttfc: float | None = None
        self.retries = 0
        self.fallbacks = 0
        self.rejections = 0
        self.dedup = False
        self.cache_hit = False

    def on_event(self, name: str, attributes: dict[str, Any]) -> None:
        """A ``CallContext`` listener: count the event and add it to the span."""
        if name == "retry":
            self.retries += 1
        elif name == "cache_hit":
            self.cache_hit = True
        elif name == "dedup_join":
            self.dedup = True
        elif name == "circuit_rejected":
            self.rejections += 1
        elif name == "fallback":
            self.fallbacks += 1
        span = self.span
        if span is not None:
            span.add_event(name, event_attributes(attributes))

    __call__ = on_event


class TracingLayer(Layer):
    """Spans, metrics, statistics and a log line for every logical call (see the module doc).

    ``endpoints`` maps provider names to base URLs (for ``server.address`` / ``server.port``);
    the default pipeline passes every transport's ``base_url``. ``tracer_provider`` and
    ``meter_provider`` default to the global ones (looked up per call, so a provider configured
    after the client was built is picked up). ``observability`` receives the call statistics
    (default: :func:`~llm_async.observability.get_observability`). ``capture_content`` records
    message content on spans (off by default). ``clock`` measures durations.
    """

    def __init__(
        self,
        inner: Handler,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        observability: Observability | None = None,
        capture_content: bool = False,
        endpoints: Mapping[str, str | None] | None = None,
        operation: str = "chat",
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(inner)
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.observability = observability or get_observability()
        self.capture_content = capture_content
        self.operation = operation
        self.clock = clock
        self.servers: dict[str, tuple[str, int]] = {}
        # The span/metric attributes common to every call of a (provider, model), built once.
        self._bases: dict[tuple[str | None, str], dict[str, Any]] = {}
        for provider, url in (endpoints or {}).items():
            endpoint = server_endpoint(url)
            if endpoint is not None:
                self.servers[provider] = endpoint
        if meter_provider is not None:
            register_seed_metrics(meter_provider, self.observability)

    # -- start / finish ---------------------------------------------------------------------

    def _base(self, request: ChatRequest) -> dict[str, Any]:
        """The attributes every span and metric point of ``request``'s provider and model
        carry (cached; never mutate the result)."""
        key = (request.provider, request.model)
        base = self._bases.get(key)
        if base is None:
            provider = request.provider or "_OTHER"
            base = {
                "gen_ai.operation.name": self.operation,
                "gen_ai.provider.name": otel_provider_name(request.provider),
                "gen_ai.request.model": request.model,
            }
            server = self.servers.get(provider)
            if server is not None:
                base["server.address"], base["server.port"] = server
            if len(self._bases) >= 1024:
                self._bases.clear()
            self._bases[key] = base
        return base

    def _start(self, request: ChatRequest, ctx: CallContext, *, stream: bool) -> _Call:
        span = None
        tracer = _tracer_for(self.tracer_provider)
        if tracer is not None:
            span = tracer.start_span(
                f"{self.operation} {request.model}", kind=SpanKind.CLIENT,
                attributes=self._request_attributes(request, self._base(request), stream))
        call = _Call(request, ctx, span, self.clock.now())
        ctx.listeners.append(call)
        self.observability.call_started()
        return call

    def _request_attributes(self, request: ChatRequest, base: dict[str, Any],
                            stream: bool) -> dict[str, Any]:
        attrs = dict(base)
        for key, value in (
            ("gen_ai.request.max_tokens", request.max_tokens),
            ("gen_ai.request.temperature", request.temperature),
            ("gen_ai.request.top_p", request.top_p),
            ("gen_ai.request.frequency_penalty", request.frequency_penalty),
            ("gen_ai.request.presence_penalty", request.presence_penalty),
            ("gen_ai.request.seed", request.seed),
            ("gen_ai.request.stop_sequences", request.stop),
            ("gen_ai.output.type", _output_type(request.response_format)),
            ("gen_ai.conversation.id", getattr(request.metadata, "conversation_id", None)),
        ):
            if value is not None:
                attrs[key] = value
        if stream:
            attrs["gen_ai.request.stream"] = True
        if self.capture_content:
            attrs["gen_ai.input.messages"] = _input_messages(request)
            tools = _tool_definitions(request)
            if tools is not None:
                attrs["gen_ai.tool.definitions"] = tools
        return attrs

    def _finish(self, call: _Call, outcome: _Outcome | None, error: BaseException | None,
                *, stream: bool = False, completed: bool = True) -> None:
        duration = self.clock.now() - call.started
        if duration < 0.0:
            duration = 0.0
        ctx = call.ctx
        listeners = ctx.listeners
        if listeners and listeners[-1] is call:
            listeners.pop()
        else:
            with contextlib.suppress(ValueError):
                listeners.remove(call)
        etype = None if error is None else error_type(error)
        status: Any = "ok" if error is None else ("cancelled" if etype == "cancelled" else "error")
        cache_hit = call.cache_hit or ctx.cache_hit or bool(outcome and outcome.cache_hit)
        input_tokens = output_tokens = None
        cost = ctx.cost
        if outcome is not None:
            usage = outcome.usage
            if usage is not None and not cache_hit and (usage.input_tokens
                                                        or usage.output_tokens):
                input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
            if outcome.cost is not None:
                cost = outcome.cost
        ttfc = call.ttfc if stream else None
        span = call.span
        if span is not None:
            self._end_span(span, call, outcome, error, etype, input_tokens, output_tokens,
                           cost, cache_hit, stream, completed)
        metrics = genai_metrics(self.meter_provider, self.observability)
        if metrics is not None:
            attrs = self._base(call.request)
            if outcome is not None and outcome.model:
                attrs = {**attrs, "gen_ai.response.model": outcome.model}
            metrics.record(attrs, duration=duration, error_type=etype,
                           input_tokens=input_tokens, output_tokens=output_tokens,
                           time_to_first_chunk=ttfc)
        request = call.request
        # Positional: the fields of CallRecord in order (cheaper than keywords per call).
        self.observability.call_finished(CallRecord(
            self.operation, request.model, request.provider, duration, status, etype, ttfc,
            input_tokens or 0, output_tokens or 0,
            cost if isinstance(cost, _COST_TYPES) else None,
            cache_hit, call.retries, call.dedup, call.fallbacks, call.rejections, stream,
        ))
        if logger.isEnabledFor(logging.DEBUG):
            self._log(call, outcome, etype, duration, input_tokens, output_tokens, cost,
                      cache_hit, stream)

    def _end_span(self, span: Span, call: _Call, outcome: _Outcome | None,
                  error: BaseException | None, etype: str | None, input_tokens: int | None,
                  output_tokens: int | None, cost: Any, cache_hit: bool, stream: bool,
                  completed: bool) -> None:
        if not span.is_recording():
            span.end()
            return
        attrs: dict[str, Any] = {}
        ctx = call.ctx
        if outcome is not None:
            if outcome.model:
                attrs["gen_ai.response.model"] = outcome.model
            if outcome.id:
                attrs["gen_ai.response.id"] = outcome.id
            if outcome.finish_reason:
                attrs["gen_ai.response.finish_reasons"] = [outcome.finish_reason]
            usage = outcome.usage
            if usage is not None and input_tokens is not None and output_tokens is not None:
                attrs["gen_ai.usage.input_tokens"] = input_tokens
                attrs["gen_ai.usage.output_tokens"] = output_tokens
                attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
                attrs["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
                if usage.reasoning_tokens:
                    attrs["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
            if outcome.request_id:
                attrs["llm_async.request_id"] = redact(outcome.request_id)
            if self.capture_content:
                attrs["gen_ai.output.messages"] = outcome.output_messages()
        if stream:
            if call.ttfc is not None:
                attrs["gen_ai.response.time_to_first_chunk"] = call.ttfc
            if not completed:
                attrs["llm_async.stream.completed"] = False
        if cost is not None:
            attrs["llm_async.cost_usd"] = float(cost)
            if ctx.cost_estimated:
                attrs["llm_async.cost_estimated"] = True
        attrs["llm_async.cache_hit"] = cache_hit
        if ctx.attempt:
            attrs["llm_async.attempts"] = ctx.attempt
        if call.retries:
            attrs["llm_async.retries"] = call.retries
        attrs["llm_async.call_id"] = ctx.call_id
        if error is not None and etype is not None:
            attrs["error.type"] = etype
            message = str(error) if isinstance(error, LLMError) else type(error).__name__
            span.set_status(Status(StatusCode.ERROR, redact(message)))
        span.set_attributes(attrs)
        span.end()

    def _log(self, call: _Call, outcome: _Outcome | None, etype: str | None,
             duration: float, input_tokens: int | None, output_tokens: int | None, cost: Any,
             cache_hit: bool, stream: bool) -> None:
        request = call.request
        request_id = outcome.request_id if outcome is not None else None
        fields: dict[str, Any] = {
            "call_id": call.ctx.call_id,
            "request_id": redact(request_id) if request_id else None,
            "operation": self.operation,
            "provider": request.provider,
            "model": request.model,
            "response_model": outcome.model if outcome is not None else None,
            "status": "ok" if etype is None else "error",
            "error_type": etype,
            "stream": stream,
            "latency_ms": round(duration * 1000.0, 3),
            "ttfc_ms": round(call.ttfc * 1000.0, 3) if call.ttfc is not None else None,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": float(cost) if cost is not None else None,
            "cache_hit": cache_hit,
            "retries": call.retries,
        }
        text = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        logger.debug("llm call %s", text, extra={"llm_call": fields})

    # -- the handler ----------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        call = self._start(request, ctx, stream=False)
        span = call.span
        token = None if span is None else _otel_context.attach(
            _otel_trace.set_span_in_context(span))
        try:
            response = await self.inner.chat(request, ctx)
        except BaseException as exc:
            self._finish(call, None, exc)
            raise
        finally:
            if token is not None:
                _otel_context.detach(token)
        self._finish(call, _Outcome.of_response(response), None)
        return response

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        call = self._start(request, ctx, stream=True)
        # The whole answer is assembled only when content is captured; otherwise the few
        # fields the span needs are picked from the chunks as they pass.
        assembler = StreamAssembler() if self.capture_content else None
        model = response_id = finish_reason = None
        usage: Usage | None = None
        clock = self.clock
        span = call.span
        span_context = None if span is None else _otel_trace.set_span_in_context(span)
        error: BaseException | None = None
        completed = False
        try:
            # With a span, it is made current only while the inner handler produces a chunk,
            # so nothing leaks into the caller's code across ``yield``.
            inner = self.inner.stream(request, ctx)
            async with (
                aclosing(inner),
                aclosing(inner if span_context is None
                         else _with_context(inner, span_context)) as chunks,
            ):
                async for chunk in chunks:
                    if call.ttfc is None:
                        call.ttfc = max(0.0, clock.now() - call.started)
                    if model is None:
                        model = chunk.model
                    if response_id is None:
                        response_id = chunk.id
                    if chunk.finish_reason is not None:
                        finish_reason = chunk.finish_reason
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if assembler is not None:
                        assembler.add(chunk)
                    yield chunk
            completed = True
        except GeneratorExit:
            raise  # the caller stopped reading: not an error
        except BaseException as exc:
            error = exc
            raise
        finally:
            outcome = None
            if error is None:
                outcome = _Outcome(
                    model=model or request.model, id=response_id, finish_reason=finish_reason,
                    usage=usage, cost=ctx.cost, cache_hit=ctx.cache_hit,
                    request_id=_header_request_id(ctx.response_headers), assembler=assembler)
            self._finish(call, outcome, error, stream=True, completed=completed)

    def __repr__(self) -> str:
        return (f"TracingLayer(inner={type(self.inner).__name__}, "
                f"capture_content={self.capture_content})")


async def _with_context(chunks: AsyncGenerator[ChatChunk, None],
                        span_context: Any) -> AsyncGenerator[ChatChunk, None]:
    """``chunks``, with ``span_context`` attached while each one is produced."""
    iterator = chunks.__aiter__()
    while True:
        token = _otel_context.attach(span_context)
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        finally:
            _otel_context.detach(token)
        yield chunk
