"""What the default pipeline and ``chat_many`` read of a client: its options
(:class:`ClientOptions`) and the :class:`ClientView` protocol, so that neither imports the client
itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .config import DEFAULT, Settings

if TYPE_CHECKING:
    from .application.cost_manager import CostManager
    from .types import ChatRequest, ChatResponse

__all__ = ["ClientOptions", "ClientView"]


@dataclass(frozen=True)
class ClientOptions:
    """What the default pipeline is built from (every option of :class:`AsyncLLMClient` that
    configures a layer; see its docstring). ``DEFAULT`` means "from the environment"."""

    settings: Settings
    retry_config: Any = DEFAULT
    max_retries: int | None = None
    retry_budget: Any = "per_provider"
    circuit_breaker_config: Any = DEFAULT
    circuit_breaker_factory: Any = None
    shared_circuit_breakers: bool = False
    max_concurrency: int | None = None
    rate_limit: Any = None
    rate_limit_store: Any = None
    fallback_models: Sequence[str] | None = None
    fallback_max_depth: int = 3
    cost_manager: Any = DEFAULT
    track_cost: bool = True
    cost_options: Mapping[str, Any] | None = None
    cache_enabled: bool | None = None
    cache_ttl: float | None = None
    cache: Any = None
    cache_config: Any = None
    dedup_enabled: bool = False
    dedup_config: Any = None
    tracing: bool = True
    capture_content: bool = False
    tracer_provider: Any = None
    meter_provider: Any = None
    observability: Any = None
    clock: Any = None


class ClientView(Protocol):
    """The parts of :class:`~llm_async.AsyncLLMClient` that the pipeline's layer builders and
    ``chat_many`` use."""

    @property
    def options(self) -> ClientOptions: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def provider(self) -> str: ...

    @property
    def transports(self) -> Mapping[str, Any]: ...

    @property
    def cost_manager(self) -> CostManager | None: ...

    def resolve(self, model: str) -> tuple[str, str]: ...

    def build_request(self, model: str | None, messages: Any, params: dict[str, Any],
                      *, stream: bool) -> ChatRequest: ...

    @property
    def chat(self) -> Callable[..., Awaitable[ChatResponse[Any]]]: ...
