"""The keyword arguments of ``AsyncLLMClient.chat`` / ``stream``, typed for checkers and IDEs.

``ChatParams`` lists every keyword a call takes besides ``model``, ``messages`` and
``response_format``; ``MessageParam`` is the shape of one message written as a dict. At run time
an unknown keyword is a :class:`TypeError` naming the closest valid one (see
:func:`unexpected_keyword`); a bad value stays an :class:`~llm_async.errors.InvalidRequestError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from typing_extensions import NotRequired, Required, TypedDict

if TYPE_CHECKING:
    from .context import CallContext
    from .types import ChatRequest, Message, RequestMetadata, Timeout, Tool, ToolCall

__all__ = ["ChatParams", "MessageParam", "MessagesParam", "unexpected_keyword"]


class MessageParam(TypedDict, total=False):
    """One message as a dict: ``{"role": "user", "content": "Hi"}``."""

    role: Required[Literal["system", "developer", "user", "assistant", "tool"]]
    content: str | Sequence[Mapping[str, Any]] | None
    name: str
    tool_calls: Sequence[ToolCall | Mapping[str, Any]]
    tool_call_id: str


#: What ``messages=`` takes: a list of :class:`~llm_async.types.Message` objects or dicts.
MessagesParam = Sequence["Message | MessageParam | Mapping[str, Any]"]


class ChatParams(TypedDict, total=False):
    """Every keyword of ``chat`` / ``stream`` besides ``model``, ``messages`` and
    ``response_format``: the request's sampling parameters, tools, per-call layer ``options``,
    the call's ``timeout``, headers and body extras, who the call is for (``user_id``,
    ``project_id``, ``metadata``), a ``context`` to watch it, or a whole ``request``."""

    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    stop: str | Sequence[str] | None
    tools: Sequence[Tool | Mapping[str, Any]] | None
    tool_choice: Literal["auto", "none", "required"] | Mapping[str, Any] | None
    seed: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    n: int | None
    logprobs: bool | None
    top_logprobs: int | None
    metadata: RequestMetadata | Mapping[str, Any] | None
    extra_body: Mapping[str, Any]
    extra_headers: Mapping[str, str]
    timeout: float | Timeout | None
    options: Mapping[str, Any]
    user_id: str | None
    project_id: str | None
    context: NotRequired[CallContext]
    request: NotRequired[ChatRequest]


#: The keywords ``chat`` / ``stream`` accept (checked at run time too).
CHAT_KEYWORDS: frozenset[str] = frozenset(
    {*ChatParams.__annotations__, "model", "messages", "response_format"})


def unexpected_keyword(names: Iterable[str], valid: Iterable[str], where: str) -> TypeError:
    """``TypeError: where() got an unexpected keyword argument 'x' (did you mean 'y'?)``."""
    name = sorted(names)[0]
    message = f"{where}() got an unexpected keyword argument {name!r}"
    close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return TypeError(message)
