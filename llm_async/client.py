"""``AsyncLLMClient``: builds the handler stack once and turns keyword calls into typed requests.

::

    async with AsyncLLMClient(provider="openai", base_url=server.base_url) as client:
        reply = await client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
        async for chunk in client.stream(model="gpt-4o-mini", messages=[...]):
            print(chunk.delta, end="")
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, overload

from pydantic import BaseModel
from typing_extensions import TypeVar, Unpack

from ._params import CHAT_KEYWORDS, ChatParams, MessagesParam, unexpected_keyword
from .chat_stream import ChatStream
from .config import DEFAULT, Settings
from .context import CallContext
from .domain.ports import Handler, LayerFactory, build_stack, find_layer, iter_stack
from .errors import ConfigurationError, InvalidRequestError
from .infrastructure.transports import registry
from .infrastructure.transports.router import ProviderRouter, split_model
from .options import ClientOptions, SSLOption, ssl_context
from .types import (
    ChatRequest,
    ChatResponse,
    RequestMetadata,
    Timeout,
    build_request,
)

if TYPE_CHECKING:
    from .application.cost_manager import CostManager
    from .optimization.batching.many import BatchResults

__all__ = [
    "DEFAULT",
    "AsyncLLMClient",
    "ChatParams",
    "ChatStream",
    "ClientOptions",
    "MessagesParam",
    "make_transport",
]

T = TypeVar("T")
P = ParamSpec("P")
#: The type of ``response.parsed``: the model class given as ``response_format``.
M = TypeVar("M", bound=BaseModel)


def make_transport(provider: str, *, api_key: str | None = None, base_url: str | None = None,
                   settings: Settings | None = None, **kwargs: Any) -> Handler:
    """A transport for ``provider`` (from the provider registry; its module is imported on
    first use, so unused providers cost nothing). Key and base URL default to the settings."""
    settings = settings or Settings.model_validate({})
    api_key = api_key if api_key is not None else settings.api_key(provider)
    base_url = base_url if base_url is not None else settings.base_url(provider)
    return registry.make_transport(provider, api_key=api_key, base_url=base_url, **kwargs)


def _strict_keywords(func: Callable[P, T]) -> Callable[P, T]:
    """Reject unknown keyword arguments with a :class:`TypeError` that names the closest valid
    one (``max_retires`` -> ``did you mean 'max_retries'?``)."""
    valid = frozenset(name for name, param in inspect.signature(func).parameters.items()
                      if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)
                      and name != "self")
    where = func.__qualname__.replace(".__init__", "")

    @functools.wraps(func)
    def checked(*args: P.args, **kwargs: P.kwargs) -> T:
        if not valid.issuperset(kwargs):
            raise unexpected_keyword(kwargs.keys() - valid, valid, where)
        return func(*args, **kwargs)

    return checked


#: What each entry of ``providers={...}`` may set.
_PROVIDER_KEYS = frozenset({"api_key", "base_url", "headers", "timeout", "max_connections"})


class AsyncLLMClient:
    """An asyncio LLM client: a stack of layers around one transport per provider.

    Connection
        ``provider`` (default: ``LLM_PROVIDER``, else the provider whose key is set),
        ``api_key``, ``base_url``, ``model`` (the default model), ``timeout`` (seconds or a
        :class:`~llm_async.types.Timeout`), ``headers`` (sent with every request),
        ``max_connections``; ``settings`` replaces the environment.
    Network
        ``ssl`` (or its synonym ``verify``): ``True`` verifies certificates against the system's
        CAs, ``False`` does not, a path trusts that CA bundle, an :class:`ssl.SSLContext` is used
        as given. ``trust_env`` (on by default): the proxy from ``HTTPS_PROXY`` /
        ``HTTP_PROXY``, unless ``NO_PROXY`` names the host. ``http_session``: your own
        ``aiohttp.ClientSession`` for every transport the client makes (then ``ssl``,
        ``trust_env`` and ``max_connections`` are the session's own, and the client does not
        close it).
    Handlers
        ``transport`` (the provider's handler), ``transports={"openai": ..., ...}`` (several
        providers, routed by a ``provider/model`` prefix), ``providers={"anthropic":
        {"api_key": ..., "base_url": ...}, ...}`` (more providers built from the registry, each
        with its own ``api_key``, ``base_url``, ``headers``, ``timeout``, ``max_connections``),
        ``layers`` (layer factories, outermost first; ``None`` builds the default pipeline of
        :mod:`llm_async.pipeline`, ``[]`` none).
    Retries
        ``retry_config`` (``DEFAULT``: from ``LLM_MAX_RETRIES``; ``None``: off; a
        ``RetryConfig`` or ``RetryStrategy``), ``max_retries`` (retries after the first attempt;
        ``0``: none), ``retry_budget`` (``"per_provider"``, a shared ``RetryBudget`` or ``None``).
    Circuit breakers
        ``circuit_breaker_config`` (``DEFAULT``: from the environment; ``None``: off),
        ``circuit_breaker_factory`` (other breakers, e.g. Redis-backed),
        ``shared_circuit_breakers`` (use the process-wide registry).
    Limits and fallback
        ``max_concurrency`` (calls in flight per provider), ``rate_limit`` (a
        ``RateLimitConfig`` or a dict of its fields), ``rate_limit_store`` (shared buckets),
        ``fallback_models`` (tried in order when a model fails), ``fallback_max_depth``.
    Cost
        ``cost_manager`` (``DEFAULT``: the process-wide one; ``None``: off), ``track_cost``,
        ``cost_options`` (``CostLayer`` options such as ``cap_output``).
    Cache and dedup
        ``cache_enabled`` (``None``: on when ``cache`` is given or ``LLM_CACHE_ENABLED`` is set),
        ``cache_ttl``, ``cache`` (a ``ResponseCache`` or backend), ``cache_config``
        (a ``CacheConfig``), ``dedup_enabled``, ``dedup_config`` (a ``DedupConfig``).
    Observability
        ``tracing``, ``capture_content`` (message text on spans; off by default),
        ``tracer_provider``, ``meter_provider``, ``observability``.
    Time
        ``clock``: the clock layers sleep and measure on (tests pass a ``FakeClock``).

    An unknown keyword is a :class:`TypeError` naming the closest valid one. A client that is
    never closed warns once, with a :class:`ResourceWarning` naming it, when it is collected.
    """

    _closed = True  # until __init__ has built the stack (so a failed __init__ never warns)
    _warned = False

    @_strict_keywords
    def __init__(
        self,
        provider: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        transport: Handler | None = None,
        transports: Mapping[str, Handler] | None = None,
        layers: Sequence[LayerFactory] | None = None,
        timeout: float | Timeout | None = None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 256,
        ssl: SSLOption | None = None,
        verify: SSLOption | None = None,
        trust_env: bool = True,
        http_session: Any = None,
        providers: Mapping[str, Mapping[str, Any]] | None = None,
        settings: Settings | None = None,
        retry_config: Any = DEFAULT,
        max_retries: int | None = None,
        retry_budget: Any = "per_provider",
        circuit_breaker_config: Any = DEFAULT,
        circuit_breaker_factory: Any = None,
        shared_circuit_breakers: bool = False,
        max_concurrency: int | None = None,
        rate_limit: Any = None,
        rate_limit_store: Any = None,
        fallback_models: Sequence[str] | None = None,
        fallback_max_depth: int = 3,
        cost_manager: Any = DEFAULT,
        track_cost: bool = True,
        cost_options: Mapping[str, Any] | None = None,
        cache_enabled: bool | None = None,
        cache_ttl: float | None = None,
        cache: Any = None,
        cache_config: Any = None,
        dedup_enabled: bool = False,
        dedup_config: Any = None,
        tracing: bool = True,
        capture_content: bool = False,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        observability: Any = None,
        clock: Any = None,
    ) -> None:
        self.settings = settings = settings or Settings.from_env()
        if provider is None:
            provider = settings.effective_provider
        elif settings.force_mock:
            provider = "mock"
        if max_retries is not None and (isinstance(max_retries, bool)
                                        or not isinstance(max_retries, int) or max_retries < 0):
            raise ConfigurationError(f"max_retries must be an int >= 0, got {max_retries!r}",
                                     variable="max_retries")
        self.provider = provider
        self.model = model or settings.model
        self.timeout = Timeout.coerce(timeout if timeout is not None else settings.timeout)
        self.options = ClientOptions(
            settings=settings, retry_config=retry_config, max_retries=max_retries,
            retry_budget=retry_budget, circuit_breaker_config=circuit_breaker_config,
            circuit_breaker_factory=circuit_breaker_factory,
            shared_circuit_breakers=shared_circuit_breakers, max_concurrency=max_concurrency,
            rate_limit=rate_limit, rate_limit_store=rate_limit_store,
            fallback_models=fallback_models, fallback_max_depth=fallback_max_depth,
            cost_manager=cost_manager, track_cost=track_cost, cost_options=cost_options,
            cache_enabled=cache_enabled, cache_ttl=cache_ttl, cache=cache,
            cache_config=cache_config, dedup_enabled=dedup_enabled, dedup_config=dedup_config,
            tracing=tracing, capture_content=capture_content, tracer_provider=tracer_provider,
            meter_provider=meter_provider, observability=observability, clock=clock,
        )
        network: dict[str, Any] = {"ssl": ssl_context(ssl, verify), "trust_env": trust_env}
        if http_session is not None:
            network = {"session": http_session}
        # Provider error text may echo the prompt: the transports keep it only when asked.
        network["capture_content"] = capture_content
        found: dict[str, Handler] = dict(transports or {})
        if transport is not None:
            found[provider] = transport
        for name, given in (providers or {}).items():
            if name in found:
                raise ConfigurationError(f"provider {name!r} is given twice (in providers= and "
                                         "as a transport)", variable="providers")
            if not isinstance(given, Mapping):
                raise ConfigurationError(f"providers[{name!r}] must be a dict of "
                                         f"{sorted(_PROVIDER_KEYS)}", variable="providers")
            if not _PROVIDER_KEYS.issuperset(given):
                raise unexpected_keyword(given.keys() - _PROVIDER_KEYS, _PROVIDER_KEYS,
                                         f"providers[{name!r}]")
            entry = dict(given)
            entry["timeout"] = Timeout.coerce(entry.get("timeout", self.timeout))
            entry.setdefault("max_connections", max_connections)
            found[name] = make_transport(name, settings=settings, **network, **entry)
        if provider not in found:
            found[provider] = make_transport(
                provider, api_key=api_key, base_url=base_url, settings=settings,
                timeout=self.timeout, headers=headers, max_connections=max_connections,
                **network)
        self.transports = found
        innermost: Handler = (found[provider] if len(found) == 1
                              else ProviderRouter(found, default=provider))
        if layers is None:
            from .pipeline import default_layers

            layers = default_layers(self)
        self.layers: tuple[LayerFactory, ...] = tuple(layers)
        self.handler: Handler = build_stack(innermost, self.layers)
        self._closed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> AsyncLLMClient:
        """A client configured from the environment; ``kwargs`` override it."""
        return cls(settings=Settings.from_env(environ), **kwargs)

    # -- requests ---------------------------------------------------------------------------

    def resolve(self, model: str) -> tuple[str, str]:
        """``(provider, model)`` that a model id routes to."""
        return split_model(model, self.transports, self.provider)

    def build_request(self, model: str | None, messages: Any, params: dict[str, Any],
                      *, stream: bool) -> ChatRequest:
        """Validate a call's arguments into a :class:`ChatRequest` (nothing is sent)."""
        request = params.pop("request", None)
        if isinstance(request, ChatRequest):
            if params or messages is not None:
                raise InvalidRequestError("pass either request= or keyword arguments, not both")
            if request.stream != stream:
                request = request.model_copy(update={"stream": stream})
            return request
        model = model or self.model
        if not model:
            raise InvalidRequestError("model is required (pass model= or set LLM_MODEL)",
                                      field="model")
        if messages is None:
            raise InvalidRequestError("messages is required", field="messages")
        timeout = params.pop("timeout", None)
        if timeout is not None:
            params["timeout"] = Timeout.coerce(timeout, self.timeout)
        user_id = params.pop("user_id", None)
        project_id = params.pop("project_id", None)
        if user_id is not None or project_id is not None:
            meta = params.get("metadata")
            meta = dict(meta.model_dump(exclude_none=True) if isinstance(meta, RequestMetadata)
                        else meta or {})
            if user_id is not None:
                meta["user_id"] = user_id
            if project_id is not None:
                meta["project_id"] = project_id
            params["metadata"] = meta
        provider, bare = self.resolve(model)
        return build_request(model=bare, provider=provider, messages=messages, stream=stream,
                             **params)

    @overload
    async def chat(self, model: str | None = None, messages: MessagesParam | None = None, *,
                   response_format: type[M],
                   **params: Unpack[ChatParams]) -> ChatResponse[M]: ...

    @overload
    async def chat(self, model: str | None = None, messages: MessagesParam | None = None, *,
                   response_format: Mapping[str, Any] | None = None,
                   **params: Unpack[ChatParams]) -> ChatResponse[Any]: ...

    async def chat(self, model: str | None = None, messages: MessagesParam | None = None, *,
                   response_format: Any = None, **params: Any) -> ChatResponse[Any]:
        """Send one chat request and return the whole answer.

        ``params`` (:class:`~llm_async.ChatParams`) are request fields (``temperature``,
        ``max_tokens``, ``tools``, ...) and the per-call keywords ``timeout``,
        ``extra_headers``, ``extra_body``, ``user_id``, ``project_id``, ``metadata`` and
        ``options``; ``context=CallContext()`` lets the caller watch this call's events,
        attempts and cost (a context serves one call only). With a pydantic model class as
        ``response_format``, ``response.parsed`` is an instance of it (and typed so).
        An unknown keyword is a :class:`TypeError`; a bad value an ``InvalidRequestError``.
        """
        if self._closed:
            raise InvalidRequestError("the client is closed")
        ctx = self._start(params, response_format, "chat")
        request = self.build_request(model, messages, params, stream=False)
        response = await self.handler.chat(request, ctx)
        if request.response_format is not None:
            from .structured import apply_structured_output

            apply_structured_output(response, request)  # sets .parsed or raises
        return response

    @overload
    def stream(self, model: str | None = None, messages: MessagesParam | None = None, *,
               response_format: type[M], **params: Unpack[ChatParams]) -> ChatStream[M]: ...

    @overload
    def stream(self, model: str | None = None, messages: MessagesParam | None = None, *,
               response_format: Mapping[str, Any] | None = None,
               **params: Unpack[ChatParams]) -> ChatStream[Any]: ...

    def stream(self, model: str | None = None, messages: MessagesParam | None = None, *,
               response_format: Any = None, **params: Any) -> ChatStream[Any]:
        """Stream an answer: ``async for chunk in client.stream(...)`` or ``async with``.

        Takes what :meth:`chat` takes. The request is validated now, so bad input raises here,
        before anything is sent.
        """
        if self._closed:
            raise InvalidRequestError("the client is closed")
        ctx = self._start(params, response_format, "stream")
        request = self.build_request(model, messages, params, stream=True)
        return ChatStream(self.handler, request, ctx)

    @staticmethod
    def _start(params: dict[str, Any], response_format: Any, where: str) -> CallContext:
        """Check a call's keywords and make its context."""
        if not CHAT_KEYWORDS.issuperset(params):
            raise unexpected_keyword(params.keys() - CHAT_KEYWORDS, CHAT_KEYWORDS,
                                     f"AsyncLLMClient.{where}")
        if response_format is not None:
            params["response_format"] = response_format
        return _context(params.pop("context", None))

    async def chat_many(self, requests: Iterable[ChatRequest | Mapping[str, Any]], *,
                        concurrency: int = 8, progress: Any = None,
                        **options: Any) -> BatchResults:
        """Run many requests with bounded ``concurrency``; every outcome is kept, in order.

        Returns a :class:`~llm_async.optimization.batching.many.BatchResults` (a list holding a
        ``ChatResponse`` or an ``LLMError`` per request). ``progress=True`` draws a progress line
        on stderr; a callable receives each ``BatchProgress``. ``batch_api=True`` sends them as
        provider batch jobs instead (see :func:`~llm_async.optimization.batching.chat_many`).
        """
        from .optimization.batching.many import chat_many

        return await chat_many(self, requests, concurrency=concurrency, progress=progress,
                               **options)

    # -- introspection ----------------------------------------------------------------------

    def layer(self, kind: type[T]) -> T | None:
        """The outermost layer of type ``kind`` in this client's stack, or ``None``."""
        return find_layer(self.handler, kind)

    @property
    def stack(self) -> list[Any]:
        """Every handler of the stack, outermost first, down to the transport (or router)."""
        return list(iter_stack(self.handler))

    @property
    def cost_manager(self) -> CostManager | None:
        """The cost manager this client records to: the one passed as ``cost_manager=``, else
        the process-wide ``get_cost_manager()`` (``None`` when ``cost_manager=None``)."""
        manager = self.options.cost_manager
        if manager is DEFAULT:
            from .application.cost_manager import get_cost_manager

            return get_cost_manager()
        return manager  # type: ignore[no-any-return]

    # -- lifecycle --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every layer and transport (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self.handler.aclose()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        """An unclosed client warns once, naming itself, and quietly releases the connection
        pools it made (so aiohttp adds no anonymous "Unclosed client session" of its own)."""
        if self._closed or self._warned:
            return
        self._warned = True
        try:
            _warn(f"{self!r} was never closed; use 'async with AsyncLLMClient(...)' or "
                  "'await client.aclose()'", ResourceWarning, source=self)
        finally:
            for transport in getattr(self, "transports", {}).values():
                _release_pool(transport)

    async def __aenter__(self) -> AsyncLLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        names = [type(h).__name__ for h in iter_stack(self.handler)]
        return f"AsyncLLMClient(provider={self.provider!r}, stack={' -> '.join(names)})"


def _release_pool(transport: Any) -> None:
    """Close, without awaiting, the aiohttp session a transport made for itself (one it was
    given belongs to its owner)."""
    session = getattr(transport, "_session", None)
    if session is None or not getattr(transport, "_owns_session", False) or session.closed:
        return
    connector = session.connector
    session.detach()  # the session is now closed and will not warn
    close = getattr(connector, "_close", None)
    if callable(close):
        with contextlib.suppress(Exception):  # the interpreter may be shutting down
            close()  # closes the sockets now; the connector will not warn either


def _context(given: Any) -> CallContext:
    """The call's context: a fresh one, or the caller's own fresh ``context=`` (to watch the
    call's events, attempts and cost); a context serves exactly one call."""
    if given is None:
        return CallContext()
    if not isinstance(given, CallContext):
        raise InvalidRequestError(f"context must be a CallContext, got {type(given).__name__}",
                                  field="context")
    if given.claimed:
        raise InvalidRequestError("this CallContext already served a call; pass a new one",
                                  field="context")
    given.claimed = True
    return given


LayerBuilder = Callable[[AsyncLLMClient], list[LayerFactory]]
