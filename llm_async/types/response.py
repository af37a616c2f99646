"""The answer: :class:`ChatResponse` (and its other :class:`Choice` s), token :class:`Usage`,
log probabilities and refusals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Generic, Literal

from pydantic import ConfigDict, Field
from typing_extensions import TypeVar

from ._base import _FastConstruct
from .content import Citation, ContentPart, Message, ReasoningPart, TextPart
from .tools import ToolCall

__all__ = [
    "ChatResponse",
    "Choice",
    "FinishReason",
    "ParsedT",
    "Refusal",
    "TokenLogprob",
    "TopLogprob",
    "Usage",
]

#: Finish reasons normalised across providers.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class Usage(_FastConstruct):
    """Token usage, normalised across providers.

    ``input_tokens`` counts every prompt token, cached ones included (OpenAI's ``prompt_tokens``;
    for Anthropic the sum of uncached, cache-read and cache-write tokens). ``cache_read_tokens``
    and ``cache_write_tokens`` are parts of it; ``reasoning_tokens`` is part of ``output_tokens``.
    """

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        return max(0, self.input_tokens - self.cache_read_tokens - self.cache_write_tokens)

    @property
    def cached_input_tokens(self) -> int:
        """Alias of ``cache_read_tokens``."""
        return self.cache_read_tokens


class TopLogprob(_FastConstruct):
    """One of the most likely tokens at a position, with its log probability."""

    model_config = ConfigDict(extra="forbid")

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(_FastConstruct):
    """The log probability of one output token (and the ``top_logprobs`` alternatives)."""

    model_config = ConfigDict(extra="forbid")

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class Refusal(_FastConstruct):
    """The model declined to answer.

    ``text`` is what it said instead (OpenAI's ``refusal``, Anthropic's ``stop_details``
    explanation; "" when the provider gives no words), ``category`` the provider's reason when
    it names one (Anthropic ``stop_details.category``: ``cyber``, ``bio`` ...).
    """

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    category: str | None = None


def _joined_reasoning(parts: list[Any]) -> str:
    return "".join(p.text for p in parts if isinstance(p, ReasoningPart))


def _citations(parts: list[Any]) -> list[Citation]:
    return [c for p in parts if isinstance(p, TextPart) and p.citations for c in p.citations]


def _assistant_message(content: str | None, parts: list[Any], tool_calls: list[ToolCall],
                       refusal: Refusal | None) -> Message:
    if parts:
        body: str | list[Any] | None = list(parts)
    elif content or not tool_calls:
        # A refusal goes back as what the model said (there is no other content).
        body = content or (refusal.text if refusal is not None else "") or ""
    else:
        body = None
    return Message(role="assistant", content=body, tool_calls=list(tool_calls) or None)


class Choice(_FastConstruct):
    """One of the ``n`` answers of a call (``response.choices``; choice 0 is the response's
    own fields)."""

    model_config = ConfigDict(extra="forbid")

    index: int = 0
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    parts: list[ContentPart] = Field(default_factory=list)
    refusal: Refusal | None = None
    logprobs: list[TokenLogprob] | None = None

    @property
    def text(self) -> str:
        return self.content or ""

    @property
    def reasoning(self) -> str:
        return _joined_reasoning(self.parts)

    @property
    def message(self) -> Message:
        """This choice as an assistant :class:`Message`, to append to the conversation."""
        return _assistant_message(self.content, self.parts, self.tool_calls, self.refusal)


#: The type of :attr:`ChatResponse.parsed` (the model class a call asked for; ``Any`` unsaid).
ParsedT = TypeVar("ParsedT", default=Any)


class ChatResponse(_FastConstruct, Generic[ParsedT]):
    """A complete answer, from a unary call or assembled from a stream.

    ``parsed`` holds the structured output when the call gave ``response_format``: an instance
    of the pydantic model it named (so ``chat(..., response_format=City)`` is typed
    ``ChatResponse[City]``), or the parsed JSON for a JSON-schema dict.

    ``content`` is the reply's text and ``tool_calls`` the functions it calls. ``parts`` holds
    the reply's content blocks in the provider's order when there is more to it than text:
    reasoning (with signatures), text with citations, provider-run tools and their results,
    images. ``message`` turns all of it into the assistant :class:`Message` to send back in the
    next turn. ``refusal`` is set when the model declined; ``logprobs`` when they were asked
    for; ``extras`` keeps provider fields this model has no place for (Azure
    ``content_filter_results``, ``system_fingerprint``, ``service_tier`` ...).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    id: str = ""
    model: str = ""
    provider: str = ""
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage = Field(default_factory=Usage)
    latency: float = 0.0
    time_to_first_chunk: float | None = None
    request_id: str | None = None
    requested_model: str | None = None
    cache_hit: bool = False
    cost: Decimal | None = None
    cost_estimated: bool = False
    provider_cost: float | None = None
    parsed: ParsedT | None = None
    parts: list[ContentPart] = Field(default_factory=list)
    refusal: Refusal | None = None
    logprobs: list[TokenLogprob] | None = None
    other_choices: list[Choice] = Field(default_factory=list)
    extras: dict[str, Any] = Field(default_factory=dict)
    raw: Any = Field(default=None, repr=False)

    @property
    def text(self) -> str:
        """The reply's text ("" when the model only called tools)."""
        return self.content or ""

    @property
    def reasoning(self) -> str:
        """The readable reasoning of the reply ("" when there is none or it is encrypted)."""
        return _joined_reasoning(self.parts)

    @property
    def reasoning_parts(self) -> list[ReasoningPart]:
        return [p for p in self.parts if isinstance(p, ReasoningPart)]

    @property
    def citations(self) -> list[Citation]:
        """Every source cited in the reply's text, in order."""
        return _citations(self.parts)

    @property
    def choices(self) -> list[Choice]:
        """Every answer when ``n`` > 1 was asked for; ``choices[0]`` is this response's own."""
        first = Choice.model_construct(
            index=0, content=self.content, tool_calls=self.tool_calls,
            finish_reason=self.finish_reason, parts=self.parts, refusal=self.refusal,
            logprobs=self.logprobs)
        return [first, *self.other_choices]

    @property
    def message(self) -> Message:
        """The reply as an assistant :class:`Message`, ready to append to ``messages``: with its
        reasoning blocks and signatures, citations and provider-tool blocks, which providers
        require back in the next turn of a tool loop."""
        return _assistant_message(self.content, self.parts, self.tool_calls, self.refusal)

