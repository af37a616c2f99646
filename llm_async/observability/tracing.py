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

import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

from .._clock import Clock, system_clock
from ..context import CallContext
from ..domain.ports import Handler, Layer, aclosing
from ..errors import CircuitBreakerOpenError, LLMError, redact
from ..infrastructure.transports.registry import otel_provider_name
from ..types import ChatChunk, ChatRequest, ChatResponse, StreamAssembler, Usage
from .calls import (
    COST_TYPES,
    Outcome,
    TracedCall,
    header_request_id,
    preview,
    with_context,
)
from .classify import ERROR_TYPES, error_type, failure_type, is_provider_failure, root_cause
from .content import (
    input_messages,
    output_type,
    tool_definitions,
)
from .facade import Observability, get_observability
from .metrics import genai_metrics, register_live_metrics
from .otel import HAVE_OTEL, server_endpoint, tracer_for
from .stats import CallRecord

if HAVE_OTEL:
    from opentelemetry import context as _otel_context, trace as _otel_trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider


__all__ = [
    "ERROR_TYPES",
    "TracingLayer",
    "error_type",
    "failure_type",
    "root_cause",
]

logger = logging.getLogger("llm_async")


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
            register_live_metrics(meter_provider, self.observability)
        # The dashboard and the circuit.* instruments show this client's breakers and budgets.
        self.observability.sources.watch_stack(inner)

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

    def _start(self, request: ChatRequest, ctx: CallContext, *, stream: bool) -> TracedCall:
        span = None
        tracer = tracer_for(self.tracer_provider)
        if tracer is not None:
            span = tracer.start_span(
                f"{self.operation} {request.model}", kind=SpanKind.CLIENT,
                attributes=self._request_attributes(request, self._base(request), stream))
        call = TracedCall(request, ctx, span, self.clock.now(), self.capture_content)
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
            ("gen_ai.output.type", output_type(request.response_format)),
            ("gen_ai.conversation.id", request.metadata.extra_value("conversation_id")),
        ):
            if value is not None:
                attrs[key] = value
        if stream:
            attrs["gen_ai.request.stream"] = True
        if self.capture_content:
            attrs["gen_ai.input.messages"] = input_messages(request)
            tools = tool_definitions(request)
            if tools is not None:
                attrs["gen_ai.tool.definitions"] = tools
        return attrs

    def _finish(self, call: TracedCall, outcome: Outcome | None, error: BaseException | None,
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
        etype = None if error is None else failure_type(error)
        status: Any = "ok" if error is None else ("cancelled" if etype == "cancelled" else "error")
        if status == "error" or len(ctx.attempts) > 1:
            self._note_failures(call, error)
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
        if not isinstance(cost, COST_TYPES):
            cost = None
        prompt = completion = None
        if self.capture_content:
            prompt = preview(request.messages[-1].text if request.messages else "")
            completion = preview(outcome.text()) if outcome is not None else None
        # Positional: the fields of CallRecord in order (cheaper than keywords per call).
        self.observability.call_finished(CallRecord(
            self.operation, request.model, request.provider, duration, status, etype, ttfc,
            input_tokens or 0, output_tokens or 0, cost,
            cache_hit, call.retries, call.dedup, call.fallbacks, call.rejections, stream,
            call.costed and cost is None and status == "ok" and not cache_hit,
            ctx.call_id, prompt, completion,
        ))
        if logger.isEnabledFor(logging.DEBUG):
            self._log(call, outcome, etype, duration, input_tokens, output_tokens, cost,
                      cache_hit, stream)

    def _note_failures(self, call: TracedCall, error: BaseException | None) -> None:
        """Tell the observability which provider and model failed, and how (the dashboard shows
        it as the last failure of their breaker): every failed upstream attempt the transport
        recorded, else the failure behind the error raised. Messages are scrubbed like span
        statuses."""
        note = self.observability.note_failure
        noted = False
        for attempt in call.ctx.attempts:
            failed = attempt.error
            if failed is not None and is_provider_failure(failed):
                note(attempt.provider, attempt.model, error_type(failed), call.scrub(str(failed)))
                noted = True
        if noted or error is None:
            return
        cause = root_cause(error)
        if not is_provider_failure(cause):
            return
        request = call.request
        provider, model = request.provider, request.model
        if isinstance(error, CircuitBreakerOpenError):
            # The failure that opened the breaker: already shown if it was seen here.
            named_provider, _, named_model = error.name.partition("/")
            if named_model:
                provider, model = named_provider, named_model
            note(provider, model, error_type(cause), call.scrub(str(cause)), keep=True)
            return
        note(provider, model, error_type(cause), call.scrub(str(cause)))

    def _end_span(self, span: Span, call: TracedCall, outcome: Outcome | None,
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
            raised = error_type(error)
            if raised != etype:
                attrs["llm_async.error.raised_type"] = raised
            message = str(error) if isinstance(error, LLMError) else type(error).__name__
            span.set_status(Status(StatusCode.ERROR, call.scrub(message)))
        span.set_attributes(attrs)
        span.end()

    def _log(self, call: TracedCall, outcome: Outcome | None, etype: str | None,
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
        self._finish(call, Outcome.of_response(response), None)
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
                         else with_context(inner, span_context)) as chunks,
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
                outcome = Outcome(
                    model=model or request.model, id=response_id, finish_reason=finish_reason,
                    usage=usage, cost=ctx.cost, cache_hit=ctx.cache_hit,
                    request_id=header_request_id(ctx.response_headers), assembler=assembler)
            self._finish(call, outcome, error, stream=True, completed=completed)

    def __repr__(self) -> str:
        return (f"TracingLayer(inner={type(self.inner).__name__}, "
                f"capture_content={self.capture_content})")
