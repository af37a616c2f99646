"""The pipeline's :class:`RetryLayer`: retries until the first chunk, never after."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from typing import Any, Literal

from ..._clock import Clock, system_clock
from ...context import CallContext
from ...domain.ports import Handler, Layer
from ...errors import InvalidRequestError
from ...types import ChatChunk, ChatRequest, ChatResponse
from .backoff import ExponentialBackoffRetry, RetryStrategy
from .budget import GLOBAL_METRICS, RetryBudget, RetryMetrics
from .executor import RetryRun
from .policy import RetryConfig

__all__ = [
    "RetryLayer",
]


class RetryLayer(Layer):
    """The pipeline's retry loop. Every attempt passes back through the layers below it
    (circuit breaker, limits), so retries never burst past them, and an open breaker ends the
    loop at once (``CircuitBreakerOpenError`` is never retried).

    Streams are retried only until the first chunk reaches the caller — including an
    in-stream error that arrives before any content (the transport raises the typed error
    then). After the first chunk a failure is a ``StreamError`` and is never retried.

    Each attempt sets ``ctx.attempt`` (1-based); each retry
    emits the event ``"retry"`` (``attempt``, ``delay``, ``error``, ``status``). Per call,
    ``options={"retry": False}`` disables retries and ``options={"retry": RetryConfig(...)}``
    replaces the config. ``budget="per_provider"`` (the default) gives each provider its own
    :class:`RetryBudget`; pass one to share it, or ``None`` for no budget. When
    ``config.deadline`` is set and the request carries a ``timeout``, each attempt's total
    timeout is cut to the time left.
    """

    def __init__(self, inner: Handler, config: RetryConfig | None = None, *,
                 strategy: RetryStrategy | None = None,
                 budget: RetryBudget | Literal["per_provider"] | None = "per_provider",
                 clock: Clock = system_clock) -> None:
        super().__init__(inner)
        self.strategy = strategy or ExponentialBackoffRetry(config or RetryConfig())
        self.config = config or self.strategy.config
        self._budget = budget
        self._budgets: dict[str, RetryBudget] = {}
        self.clock = clock
        self.stats = RetryMetrics()

    def budget_for(self, provider: str | None) -> RetryBudget | None:
        """The :class:`RetryBudget` that retries for ``provider`` draw from (or ``None``)."""
        if self._budget is None or isinstance(self._budget, RetryBudget):
            return self._budget
        key = provider or ""
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = RetryBudget()
        return budget

    def _config_for(self, request: ChatRequest) -> RetryConfig:
        option = request.options.get("retry")
        if option is None or option is True:
            return self.config
        if option is False:
            return replace(self.config, max_attempts=1)
        if isinstance(option, RetryConfig):
            return option
        raise InvalidRequestError("options['retry'] must be True, False or a RetryConfig",
                                  field="options.retry")

    def _run(self, request: ChatRequest, config: RetryConfig | None = None) -> RetryRun:
        if config is None:
            config = self._config_for(request)
        return RetryRun(self.strategy, config, self.budget_for(request.provider), self.stats,
                        self.clock)

    def _first_try_succeeded(self, request: ChatRequest) -> None:
        """What ``RetryRun.succeeded`` records for a call whose first attempt succeeded (no
        run is built on that path): the budget's refund and one call without retries."""
        budget = self.budget_for(request.provider)
        if budget is not None:
            budget.on_success(0)
        stats = self.stats
        stats.record_call(retried=False, ok=True)
        if stats is not GLOBAL_METRICS:
            GLOBAL_METRICS.record_call(retried=False, ok=True)

    @staticmethod
    def _attempt_request(request: ChatRequest, run: RetryRun) -> ChatRequest:
        remaining = run.remaining()
        timeout = request.timeout
        if remaining is None or timeout is None or remaining <= 0:
            return request
        if timeout.total is not None and timeout.total <= remaining:
            return request
        return request.model_copy(update={"timeout": replace(timeout, total=remaining)})

    @staticmethod
    def _report(ctx: CallContext, attempt: int, delay: float, error: BaseException) -> None:
        ctx.event("retry", attempt=attempt, delay=delay, error=type(error).__name__,
                  status=getattr(error, "status", None))

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """Call the inner handler, retrying failures the strategy allows."""
        config = self._config_for(request)
        run: RetryRun | None = None
        if config.deadline is None:
            # The first attempt needs no run state: it is built only once an attempt fails.
            ctx.attempt = 1
            try:
                response = await self.inner.chat(request, ctx)
            except Exception as exc:
                run = self._run(request, config)
                run.attempt = 1
                delay = run.next_delay(exc)
                if delay is None:
                    run.failed()
                    raise
                self._report(ctx, 1, delay, exc)
                await self.clock.sleep(delay)
            else:
                self._first_try_succeeded(request)
                return response
        if run is None:
            run = self._run(request, config)
        deadline = config.deadline is not None
        while True:
            attempt = run.attempt = run.attempt + 1
            ctx.attempt = attempt
            try:
                response = await self.inner.chat(
                    self._attempt_request(request, run) if deadline else request, ctx)
            except Exception as exc:
                delay = run.next_delay(exc)
                if delay is None:
                    run.failed()
                    raise
                self._report(ctx, attempt, delay, exc)
                await self.clock.sleep(delay)
                continue
            run.succeeded()
            return response

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        """Stream from the inner handler, retrying only until the first chunk."""
        config = self._config_for(request)
        # Without a deadline the run state is built only once an attempt fails.
        run: RetryRun | None = None if config.deadline is None else self._run(request, config)
        attempt = 0
        while True:
            attempt = ctx.attempt = run.begin() if run is not None else attempt + 1
            committed = False
            try:
                async with aclosing(self.inner.stream(
                        request if run is None else self._attempt_request(request, run),
                        ctx)) as chunks:
                    async for chunk in chunks:
                        committed = True
                        # The commit point: no retry after this.
                        if run is None:
                            self._first_try_succeeded(request)
                        else:
                            run.succeeded()
                        yield chunk
                        # Committed: pass the rest through without further checks.
                        async for chunk in chunks:
                            yield chunk
                        break
            except Exception as exc:
                if committed:
                    raise
                if run is None:
                    run = self._run(request, config)
                    run.attempt = attempt
                delay = run.next_delay(exc)
                if delay is None:
                    run.failed()
                    raise
                self._report(ctx, attempt, delay, exc)
                await self.clock.sleep(delay)
                continue
            if not committed:
                # An empty stream that ended cleanly.
                if run is None:
                    self._first_try_succeeded(request)
                else:
                    run.succeeded()
            return

    def metrics(self) -> dict[str, Any]:
        """This layer's counters (``retry.*`` and friendly names) and its budgets."""
        data = self.stats.snapshot()
        if isinstance(self._budget, RetryBudget):
            data["budget"] = self._budget.statistics()
        elif self._budgets:
            data["budgets"] = {k or "default": b.statistics() for k, b in self._budgets.items()}
        return data

    def __repr__(self) -> str:
        return f"RetryLayer({self.strategy!r}, inner={type(self.inner).__name__})"
