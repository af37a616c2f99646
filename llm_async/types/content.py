"""Messages and their content parts: text (with citations), images, reasoning, provider-run
tools and their results, and blocks kept verbatim for their provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ._base import _Model
from .tools import ToolCall

__all__ = [
    "Citation",
    "ContentPart",
    "ImagePart",
    "ImageURL",
    "Message",
    "ProviderBlockPart",
    "ReasoningPart",
    "Role",
    "ServerToolCallPart",
    "ServerToolResultPart",
    "TextPart",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]


class Citation(_Model):
    """A source the model cited for a piece of text.

    ``type`` is the provider's kind of citation (``url_citation`` for OpenAI annotations;
    ``web_search_result_location``, ``char_location``, ``page_location`` ... for Anthropic).
    ``start_index``/``end_index`` locate the cited span in the text when the provider says so.
    ``extras`` keeps the provider's other fields verbatim (``encrypted_index``,
    ``document_index`` ...), so a reply with citations can be sent back in a conversation.
    """

    type: str = "url_citation"
    url: str | None = None
    title: str | None = None
    cited_text: str | None = None
    start_index: int | None = None
    end_index: int | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


class TextPart(_Model):
    """A text part of a message's content, with the sources the model cited for it."""

    type: Literal["text"] = "text"
    text: str
    citations: list[Citation] | None = None


class ImageURL(_Model):
    """An image by URL or ``data:`` URL (base64)."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Model):
    """An image part of a message's content (OpenAI shape; other providers are translated)."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class ReasoningPart(_Model):
    """The model's reasoning (Anthropic thinking, DeepSeek/vLLM ``reasoning_content``,
    OpenRouter ``reasoning_details``, Mistral ``thinking`` parts).

    ``text`` is the readable reasoning ("" when the provider hides it). ``signature`` is the
    provider's opaque proof that the text is unmodified (Anthropic requires it back with the
    thinking in the next turn of a tool loop). ``encrypted`` is reasoning the provider only
    hands out encrypted (Anthropic ``redacted_thinking``, OpenRouter ``reasoning.encrypted``).
    ``format`` names the provider's reasoning format when it gives one (OpenRouter).
    """

    type: Literal["reasoning"] = "reasoning"
    text: str = ""
    signature: str | None = None
    encrypted: str | None = None
    format: str | None = None

    @property
    def redacted(self) -> bool:
        """Whether the reasoning is only available encrypted."""
        return self.encrypted is not None and not self.text


class ServerToolCallPart(_Model):
    """A tool the provider ran itself (Anthropic ``server_tool_use``: web search, code
    execution, web fetch ...). ``kind`` is the provider's block type; ``extras`` keeps its
    other fields verbatim."""

    type: Literal["server_tool_call"] = "server_tool_call"
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    kind: str = "server_tool_use"
    extras: dict[str, Any] = Field(default_factory=dict)


class ServerToolResultPart(_Model):
    """The result of a provider-run tool (Anthropic ``web_search_tool_result``,
    ``code_execution_tool_result`` ...). ``content`` is the provider's result as sent (for web
    search: the list of results, each with its opaque ``encrypted_content``)."""

    type: Literal["server_tool_result"] = "server_tool_result"
    tool_call_id: str
    kind: str = "web_search_tool_result"
    content: Any = None
    extras: dict[str, Any] = Field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        """The URLs of a web search's results."""
        if not isinstance(self.content, list):
            return []
        return [str(item["url"]) for item in self.content
                if isinstance(item, Mapping) and isinstance(item.get("url"), str)]


class ProviderBlockPart(_Model):
    """A content block of a kind this library has no type for (Anthropic ``compaction``,
    ``container_upload`` ...), kept verbatim so that it can be sent back to ``provider``."""

    type: Literal["provider_block"] = "provider_block"
    provider: str
    block: dict[str, Any]


ContentPart = Annotated[
    TextPart | ImagePart | ReasoningPart | ServerToolCallPart | ServerToolResultPart
    | ProviderBlockPart,
    Field(discriminator="type"),
]


class Message(_Model):
    """One chat message. ``content`` is text or a list of parts; assistants may add tool calls."""

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.role == "assistant":
            if self.content is None and not self.tool_calls:
                raise ValueError("an assistant message needs content or tool_calls")
        elif self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    @property
    def text(self) -> str:
        """The message's text: the content string, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

