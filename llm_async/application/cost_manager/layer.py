"""The cost layer: every attempt that was sent is billed, and none is sent unless its worst case
fits the hard budgets.

The layer sits inside retry and fallback, so it sees each attempt on its own::

    ... → fallback → retry → cost → circuit breaker → limits → transport

For every attempt it bounds the cost (input from :func:`~.tokens.input_token_bound`, output
from the ``max_tokens`` sent, at the model's dearest rates), reserves that bound on every hard
budget the call falls under (waiting, FIFO, for calls in flight when that is what stands in the
way), sends, and settles: a ledger record per attempt that was sent, linked to its logical call
by ``call_id``. What is billed when is written down in ``docs/cost/07-billing.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from ...context import Attempt, CallContext
from ...domain.ports import Handler, Layer
from ...errors import (
    APIStatusError,
    APITimeoutError,
    InvalidRequestError,
    LLMError,
    StreamError,
    UnpricedModelError,
)
from ...types import ChatChunk, ChatRequest, ChatResponse, ImagePart, Usage
from .bounds import input_token_bound
from .catalogue import how_to_price
from .fingerprints import prompt_hashes
from .manager import CostManager, sanitize_usage
from .money import ZERO, from_nano, new_id
from .pricing import ModelPrice
from .records import Outcome, Reservation, UsageRecord, trusted_record

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_MAX_OUTPUT_TOKENS", "CostLayer", "cost_layer_factory"]

logger = logging.getLogger("llm_async.cost")

#: The output cap sent (and reserved) when a hard budget applies and the caller set no
#: ``max_tokens`` (lowered to the model's documented maximum output when that is smaller).
DEFAULT_MAX_OUTPUT_TOKENS = 4096

_COST_FIELDS = frozenset({"cost", "cost_estimated"})


class _Plan:
    """What the layer knows about one attempt before sending it."""

    __slots__ = ("bound", "hard", "images", "input_bound", "output_bound", "price",
                 "request")

    def __init__(self, request: ChatRequest, price: ModelPrice | None, hard: bool) -> None:
        self.request = request
        self.price = price
        self.hard = hard
        self.images = 0
        self.input_bound = 0
        self.output_bound = 0
        self.bound: int | None = None

    def compute_bound(self, default_output: int) -> int | None:
        """The attempt's worst case in nano-dollars (``None`` when unpriced)."""
        if self.bound is None and self.price is not None:
            request = self.request
            self.input_bound = input_token_bound(request)
            self.output_bound = request.max_tokens or default_output
            self.images = _images(request)
            self.bound = self.price.worst_case_nano(self.input_bound, self.output_bound,
                                                    images=self.images)
        return self.bound


def _images(request: ChatRequest) -> int:
    return sum(isinstance(p, ImagePart) for m in request.messages
               if isinstance(m.content, list) for p in m.content)


def _outcome(error: BaseException | None, seen: int) -> Outcome:
    if error is None:
        return "complete"
    if isinstance(error, StreamError):
        return "cut"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    if isinstance(error, APITimeoutError | TimeoutError):
        return "timed_out"
    return "cut" if seen else "failed"


class CostLayer(Layer):
    """Reserves each attempt's worst-case cost, sends it, and bills every attempt that was sent.

    Options: ``manager`` (default: the process-wide one); ``default_max_tokens``: the output
    cap sent and reserved when a hard budget applies and the request sets no ``max_tokens``
    (the model's documented maximum output when that is smaller); ``cap_output=True`` sends
    that cap even without a hard budget; ``unknown_price``: ``"reject"`` (the default) refuses
    a call to a model without a price while a hard budget applies, with
    :class:`~llm_async.errors.UnpricedModelError`; ``"allow"`` sends it unchecked (a warning
    is logged; the attempt is recorded with ``cost=None``).

    ``response.cost`` / ``ctx.cost`` is the call's bill so far (every attempt of the call);
    ``cost_estimated`` says part of it was billed at a reserved bound because the provider did
    not report usage.
    """

    def __init__(
        self,
        inner: Handler,
        manager: CostManager | None = None,
        *,
        default_max_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
        cap_output: bool = False,
        unknown_price: Literal["allow", "reject"] = "reject",
    ) -> None:
        super().__init__(inner)
        if manager is None:
            from ._process import get_cost_manager

            manager = get_cost_manager()
        self.manager = manager
        if default_max_tokens <= 0:
            raise InvalidRequestError("default_max_tokens must be > 0",
                                      field="default_max_tokens")
        if unknown_price not in ("allow", "reject"):
            raise InvalidRequestError("unknown_price must be 'allow' or 'reject'",
                                      field="unknown_price")
        self.default_max_tokens = default_max_tokens
        self.cap_output = cap_output
        self.unknown_price = unknown_price

    # -- before sending ------------------------------------------------------------------

    def _plan(self, request: ChatRequest) -> _Plan:
        manager = self.manager
        price = manager.pricing.lookup(request.model, request.provider)
        hard = bool(manager.hard_budgets(request.user_id, request.project_id, request.model))
        if request.max_tokens is None and (hard or self.cap_output):
            cap = self.default_max_tokens
            if price is not None and price.max_output_tokens is not None:
                cap = min(cap, price.max_output_tokens)
            request = request.model_copy(update={"max_tokens": cap})
        return _Plan(request, price, hard)

    async def _reserve(self, plan: _Plan, ctx: CallContext) -> Reservation | None:
        if not plan.hard:
            return None
        request = plan.request
        if plan.price is None:
            if self.unknown_price == "reject":
                raise UnpricedModelError(
                    f"model {request.model!r} (provider {request.provider or 'unknown'}) has "
                    f"no price, so a hard budget cannot bound its cost; nothing was sent. "
                    f"{how_to_price(request.model)} Or pass "
                    f"CostLayer(unknown_price='allow') to send unpriced calls unchecked.",
                    model=request.model)
            self.manager.pricing.warn_unknown(request.model, request.provider)
            logger.warning("sending a call to unpriced model %r unchecked by the hard budgets "
                           "(unknown_price='allow')", request.model)
            return None
        bound = plan.compute_bound(self.default_max_tokens)
        assert bound is not None
        amount = from_nano(bound)
        # What the ledger charges if this attempt's lease runs out (its worker died).
        charge = trusted_record(
            id=new_id(), timestamp=self.manager.now(), provider=request.provider,
            model=request.model, user_id=request.user_id, project_id=request.project_id,
            input_tokens=plan.input_bound, output_tokens=plan.output_bound,
            cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0, images=plan.images,
            cost=amount, computed_cost=amount, provider_cost=None, reserved=amount,
            estimated=True, cache_hit=False, prompt_hash=None, prefix_hash=None,
            prefix_tokens=0, request_id=None, call_id=ctx.call_id,
            attempt=ctx.attempt or len(ctx.attempts) + 1,
            counts_call=ctx.billed_attempts == 0, outcome="lease_expired", flags=())
        return await self.manager.areserve(bound, model=request.model,
                                           user_id=request.user_id,
                                           project_id=request.project_id, charge=charge)

    # -- billing -------------------------------------------------------------------------

    def _record(self, plan: _Plan, ctx: CallContext, attempt: Attempt | None, *,
                usage: Usage | None = None, provider_cost: float | None = None,
                bound: int | None = None, outcome: Outcome = "complete",
                flags: tuple[str, ...] = (), reservation: Reservation | None = None,
                attempt_no: int | None = None, request_id: str | None = None,
                zero: bool = False, cache_hit: bool = False) -> UsageRecord:
        request = plan.request
        model = attempt.model if attempt is not None else request.model
        provider = attempt.provider if attempt is not None else request.provider
        reserved = reservation.amount if reservation is not None else None
        cost: Decimal | None = None
        estimated = False
        if zero:
            usage = usage or Usage()
            cost = ZERO
        elif usage is None or bound is not None:
            # No usage reported (or none to trust): billed at the attempt's upper bound.
            estimated = True
            if bound is None:
                bound = plan.compute_bound(self.default_max_tokens)
            if usage is None:
                usage = Usage(input_tokens=plan.input_bound, output_tokens=plan.output_bound)
            cost = from_nano(bound) if bound is not None else None
        prompt_hash, prefix_hash = prompt_hashes(request)
        return self.manager.build_record(
            model, usage=usage, provider=provider, user_id=request.user_id,
            project_id=request.project_id, images=plan.images, provider_cost=provider_cost,
            estimated=estimated, reserved=reserved, prompt_hash=prompt_hash,
            prefix_hash=prefix_hash, request_id=request_id or (
                attempt.request_id if attempt is not None else None),
            call_id=ctx.call_id, cache_hit=cache_hit,
            attempt=attempt_no or (attempt.number if attempt is not None else 1),
            counts_call=ctx.billed_attempts == 0, outcome=outcome, flags=flags, cost=cost)

    async def _bill(self, record: UsageRecord, reservation: Reservation | None,
                    ctx: CallContext, attempt: Attempt | None) -> UsageRecord:
        try:
            await self.manager.arecord(record, reservation)
        except LLMError:
            # The provider was paid: keep the answer, report the lost record.
            logger.exception("could not record the cost of call %s (%s, $%s)", ctx.call_id,
                             record.model, record.cost)
        ctx.billed_attempts += 1
        if attempt is not None:
            attempt.cost = record.cost
        if record.cost is not None and record.outcome != "provider_error":
            # A refused attempt billed nothing: a call that only met refusals has no cost.
            ctx.cost = record.cost if ctx.cost is None else ctx.cost + record.cost
        if record.estimated:
            ctx.cost_estimated = True
        if ctx.listeners:
            ctx.event("cost", cost=record.cost, estimated=record.estimated,
                      reserved=record.reserved, outcome=record.outcome,
                      attempt=record.attempt)
        return record

    async def _settle(self, plan: _Plan, ctx: CallContext, first: int,
                      reservation: Reservation | None, *, usage: Usage | None,
                      provider_cost: float | None, error: BaseException | None,
                      seen: int, request_id: str | None = None) -> None:
        """Bill every attempt sent since ``first``; release the reservation if none was."""
        attempts = [a for a in ctx.attempts[first:] if a.sent]
        if not attempts:
            if error is None:
                # A handler that does not report attempts answered: one attempt was made.
                attempts_or_none: list[Attempt | None] = [None]
            else:
                await self._release(reservation)
                return
        else:
            attempts_or_none = list(attempts)
        last = len(attempts_or_none) - 1
        for index, attempt in enumerate(attempts_or_none):
            final = index == last
            got = usage if final else None
            if got is None and attempt is not None:
                got = attempt.usage
            err = error if final else (attempt.error if attempt is not None else None)
            record = self._settle_one(plan, ctx, attempt, got, provider_cost if final else None,
                                      err, seen if final else 0,
                                      reservation if index == 0 else None,
                                      request_id if final else None)
            await self._bill(record, reservation if index == 0 else None, ctx, attempt)

    def _settle_one(self, plan: _Plan, ctx: CallContext, attempt: Attempt | None,
                    usage: Usage | None, provider_cost: float | None,
                    error: BaseException | None, seen: int,
                    reservation: Reservation | None, request_id: str | None) -> UsageRecord:
        outcome = _outcome(error, seen)
        if error is not None and usage is None and isinstance(error, APIStatusError) \
                and error.status is not None and error.status >= 400 and not seen:
            # The provider refused with an HTTP error: it generated and bills nothing.
            return self._record(plan, ctx, attempt, outcome="provider_error", zero=True,
                                reservation=reservation, request_id=request_id)
        if usage is not None and usage.total_tokens > 0:
            clean, flags = sanitize_usage(usage)
            if flags:
                logger.warning("odd usage from %s for call %s: %s; billed at the attempt's "
                               "upper bound", attempt.provider if attempt else "the provider",
                               ctx.call_id, "; ".join(flags))
                bound = plan.compute_bound(self.default_max_tokens)
                return self._record(plan, ctx, attempt, usage=clean,
                                    provider_cost=provider_cost, bound=bound,
                                    outcome=outcome, flags=flags, reservation=reservation,
                                    request_id=request_id)
            return self._record(plan, ctx, attempt, usage=clean, provider_cost=provider_cost,
                                outcome=outcome, reservation=reservation,
                                request_id=request_id)
        return self._record(plan, ctx, attempt, provider_cost=provider_cost, outcome=outcome,
                            reservation=reservation, request_id=request_id)

    async def _release(self, reservation: Reservation | None) -> None:
        """Release on the failure path without hiding the call's own error."""
        try:
            await self.manager.arelease(reservation)
        except LLMError:
            logger.exception("could not release budget reservation %s",
                             reservation.id if reservation else "")

    # -- handler -------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        plan = self._plan(request)
        reservation = await self._reserve(plan, ctx) if plan.hard else None
        first = len(ctx.attempts)
        try:
            response = await self.inner.chat(plan.request, ctx)
        except BaseException as exc:
            await self._settle(plan, ctx, first, reservation, usage=None, provider_cost=None,
                               error=exc, seen=0)
            raise
        usage = response.usage
        if (usage is not None and response.provider_cost is None
                and not response.cache_hit and not ctx.cache_hit
                and len(ctx.attempts) - first <= 1
                and not self.manager.backend.blocking
                and self._quick(plan, ctx, first, usage, response.request_id, reservation)):
            pass
        elif (response.cache_hit or ctx.cache_hit) and len(ctx.attempts) == first:
            await self._bill(self._record(plan, ctx, None, outcome="complete", zero=True,
                                          cache_hit=True), reservation, ctx, None)
        else:
            await self._settle(plan, ctx, first, reservation, usage=usage,
                               provider_cost=response.provider_cost, error=None, seen=1,
                               request_id=response.request_id or response.id or None)
        # Written straight into the response the call made (pydantic's __setattr__ is slow).
        fields = response.__dict__
        fields["cost"] = ctx.cost
        fields["cost_estimated"] = ctx.cost_estimated
        response.__pydantic_fields_set__.update(_COST_FIELDS)
        return response

    def _quick(self, plan: _Plan, ctx: CallContext, first: int, usage: Usage,
               request_id: str | None, reservation: Reservation | None) -> bool:
        """Bill the usual attempt (one, answered, priced, sane usage, a ledger that does not
        block) with integer arithmetic and no awaits, settling ``reservation``; ``False`` if it
        is not the usual one."""
        price = plan.price
        inp, out = usage.input_tokens, usage.output_tokens
        cached = usage.cache_read_tokens + usage.cache_write_tokens
        if (price is None or inp + out <= 0 or inp < 0 or out < 0 or cached > inp
                or usage.cache_read_tokens < 0 or usage.cache_write_tokens < 0
                or not 0 <= usage.reasoning_tokens <= out):
            return False
        request = plan.request
        attempt = ctx.attempts[first] if len(ctx.attempts) > first else None
        images = _images(request) if type(request.messages[-1].content) is not str else 0
        nano = price.cost_nano(usage, images=images)
        cost = from_nano(nano)
        manager = self.manager
        prompt_hash, prefix_hash = prompt_hashes(request)
        number = attempt.number if attempt is not None else 1
        if not (cached or usage.reasoning_tokens or images or prefix_hash is not None
                or reservation is not None):
            # The usual attempt: the ledger keeps a row, and makes its record when read.
            try:
                manager.commit_row((
                    manager.now(),
                    attempt.provider if attempt is not None else request.provider,
                    attempt.model if attempt is not None else request.model,
                    request.user_id, request.project_id, inp, out, cost, prompt_hash,
                    request_id or (attempt.request_id if attempt is not None else None),
                    ctx.call_id, number, ctx.billed_attempts == 0), nano)
            except LLMError:
                logger.exception("could not record the cost of call %s (%s, $%s)",
                                 ctx.call_id, request.model, cost)
            self._billed(ctx, attempt, cost, number)
            return True
        record = trusted_record(
            id=new_id(), timestamp=manager.now(),
            provider=attempt.provider if attempt is not None else request.provider,
            model=attempt.model if attempt is not None else request.model,
            user_id=request.user_id, project_id=request.project_id, input_tokens=inp,
            output_tokens=out, cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens, images=images, cost=cost,
            computed_cost=cost, provider_cost=None,
            reserved=reservation.amount if reservation is not None else None, estimated=False,
            cache_hit=False, prompt_hash=prompt_hash, prefix_hash=prefix_hash,
            prefix_tokens=0, request_id=request_id or (
                attempt.request_id if attempt is not None else None),
            call_id=ctx.call_id, attempt=number,
            counts_call=ctx.billed_attempts == 0, outcome="complete", flags=())
        try:
            manager.commit_now(record, nano, plain=not (cached or usage.reasoning_tokens),
                               reservation=reservation)
        except LLMError:
            logger.exception("could not record the cost of call %s (%s, $%s)", ctx.call_id,
                             record.model, cost)
        self._billed(ctx, attempt, cost, number)
        return True

    @staticmethod
    def _billed(ctx: CallContext, attempt: Attempt | None, cost: Decimal, number: int) -> None:
        """Add an exactly billed attempt to the call's bill."""
        ctx.billed_attempts += 1
        if attempt is not None:
            attempt.cost = cost
        ctx.cost = cost if ctx.cost is None else ctx.cost + cost
        if ctx.listeners:
            ctx.event("cost", cost=cost, estimated=False, reserved=None, outcome="complete",
                      attempt=number)

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        plan = self._plan(request)
        reservation = await self._reserve(plan, ctx) if plan.hard else None
        first = len(ctx.attempts)
        usage: Usage | None = None
        provider_cost: float | None = None
        response_id: str | None = None
        seen = 0
        error: BaseException | None = None
        try:
            async with aclosing(self.inner.stream(plan.request, ctx)) as chunks:
                async for chunk in chunks:
                    seen += 1
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if chunk.provider_cost is not None:
                        provider_cost = chunk.provider_cost
                    if chunk.id and response_id is None:
                        response_id = chunk.id
                    yield chunk
        except BaseException as exc:
            error = exc
            raise
        finally:
            # The ledger writes inside are shielded: a cancellation cannot lose the record.
            if (error is None and usage is not None
                    and provider_cost is None and not ctx.cache_hit
                    and len(ctx.attempts) - first <= 1 and not self.manager.backend.blocking
                    and self._quick(plan, ctx, first, usage, response_id, reservation)):
                pass
            elif error is None and ctx.cache_hit and len(ctx.attempts) == first:
                await self._bill(self._record(plan, ctx, None, zero=True, cache_hit=True),
                                 reservation, ctx, None)
            else:
                await self._settle(plan, ctx, first, reservation, usage=usage,
                                   provider_cost=provider_cost, error=error, seen=seen,
                                   request_id=response_id)

    def __repr__(self) -> str:
        return f"CostLayer(manager={self.manager!r}, inner={type(self.inner).__name__})"


def cost_layer_factory(manager: CostManager, **options: Any) -> Callable[[Handler], CostLayer]:
    """A layer factory for :class:`CostLayer` bound to ``manager``."""
    from functools import partial

    return partial(CostLayer, manager=manager, **options)
