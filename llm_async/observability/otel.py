"""The optional OpenTelemetry imports, and the span helpers shared by the tracing layer and the
facade.

OpenTelemetry is optional: without it ``HAVE_OTEL`` is false and every helper here returns
``None`` or does nothing. With the API but no SDK configured, :func:`tracer_for` returns
``None`` as well, so no span object is ever created for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import redact
from .classify import error_type

try:
    from opentelemetry import context as otel_context, trace as otel_trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    HAVE_OTEL = True
except ImportError:  # pragma: no cover - exercised in a subprocess test
    HAVE_OTEL = False

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = [
    "HAVE_OTEL",
    "INSTRUMENTATION",
    "attribute_value",
    "end_operation_span",
    "event_attributes",
    "server_endpoint",
    "start_operation_span",
    "tracer_for",
]

#: The instrumentation scope of every tracer and meter of the package.
INSTRUMENTATION = "llm_async"

#: Event attribute keys that are never recorded, whatever a layer reports.
_SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "headers", "password", "secret",
                          "x-api-key"})


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


_tracers: dict[int, tuple[Any, Tracer]] = {}
_UNKNOWN = object()


def tracer_for(provider: TracerProvider | None) -> Tracer | None:
    """A tracer of ``provider`` (or of the global provider), or ``None`` when no SDK is set."""
    if not HAVE_OTEL:
        return None
    if provider is None:
        # Fast path: the API keeps the global provider in a module variable; while it is unset
        # (no SDK configured), skip get_tracer_provider()'s environment lookup.
        if getattr(otel_trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
            return None
        provider = otel_trace.get_tracer_provider()
        if isinstance(provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider):
            return None
    cached = _tracers.get(id(provider))
    if cached is not None and cached[0] is provider:
        return cached[1]
    from .._version import __version__

    tracer = provider.get_tracer(INSTRUMENTATION, __version__)
    if len(_tracers) > 64:
        _tracers.clear()
    _tracers[id(provider)] = (provider, tracer)
    return tracer


def start_operation_span(provider: TracerProvider | None, name: str,
                         attributes: Mapping[str, Any]) -> Span | None:
    """An INTERNAL span for a user operation of the facade, or ``None`` without an SDK."""
    tracer = tracer_for(provider)
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


def attach_span(span: Span) -> object:
    """Make ``span`` current; returns the token for :func:`detach`."""
    return otel_context.attach(otel_trace.set_span_in_context(span))


def detach(token: object) -> None:
    """Undo :func:`attach_span`."""
    otel_context.detach(token)  # type: ignore[arg-type]
