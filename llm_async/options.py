"""What a client is configured with: :class:`ClientOptions` (what the default pipeline is built
from), ``ssl=`` coerced by :func:`ssl_context`, and the :class:`ClientView` protocol (what the
pipeline and ``chat_many`` read of a client, so that neither imports the client itself)."""

from __future__ import annotations

import os
import ssl as _ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .config import DEFAULT, Settings
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .application.cost_manager import CostManager
    from .types import ChatRequest, ChatResponse

__all__ = ["ClientOptions", "ClientView", "SSLOption", "ssl_context"]

#: What ``ssl=`` takes: verify (``True``), don't (``False``), a CA bundle path, or a context.
SSLOption = bool | str | os.PathLike[str] | _ssl.SSLContext


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


def ssl_context(ssl: SSLOption | None, verify: SSLOption | None) -> bool | _ssl.SSLContext:
    """What the connector gets from ``ssl=`` / ``verify=``: ``True`` (verify against the
    system's CAs), ``False`` (no verification), or an :class:`ssl.SSLContext` (a given context,
    or one trusting the CA bundle at a given path)."""
    if ssl is not None and verify is not None:
        raise ConfigurationError("pass ssl= or verify=, not both (they are the same option)",
                                 variable="ssl")
    value = ssl if ssl is not None else verify
    if value is None or value is True:
        return True
    if value is False or isinstance(value, _ssl.SSLContext):
        return value
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if not os.path.exists(path):
            raise ConfigurationError(f"CA bundle not found: {path!r}", variable="ssl")
        try:
            if os.path.isdir(path):
                return _ssl.create_default_context(capath=path)
            return _ssl.create_default_context(cafile=path)
        except (_ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot load the CA bundle {path!r}: {exc}",
                                     variable="ssl") from exc
    raise ConfigurationError("ssl must be True, False, a CA bundle path or an ssl.SSLContext, "
                             f"got {type(value).__name__}", variable="ssl")
