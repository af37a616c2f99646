"""The import budget: what ``import llm_async`` (and the first steps of using it) load.

Asserts sets of modules, never times, so the budget cannot regress silently in CI: the time and
memory figures are measured by ``benchmarks/imports.py``. Each case runs in a fresh interpreter.

* ``import llm_async`` loads the package's ``__init__`` and its lazy-export helper only (every
  public name is lazy).
* ``from llm_async import AsyncLLMClient, ...`` loads the core (types, errors, client, config,
  the router) and nothing of any feature, provider, telemetry or cache backend.
* Building a default client for one provider loads that provider's transport and the default
  layers, but no other provider, no OpenTelemetry SDK, no aiocache backend, no Redis, and none
  of the peer SDKs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import sys, json
before = set(sys.modules)
{code}
print(json.dumps(sorted(set(sys.modules) - before)))
"""

#: Never loaded by the cases below; each lazily loads when something asks for it.
ALWAYS_LAZY = (
    "llm_async.infrastructure.transports.anthropic_transport",
    "llm_async.infrastructure.transports.anthropic",
    "llm_async.infrastructure.transports.openrouter_transport",
    "llm_async.testing",
    "llm_async.facade",
    "llm_async.cli",
    "llm_async.observability.dashboard",
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "aiocache",
    "redis",
    "openai",
    "anthropic",
    "litellm",
    "httpx",
    "numpy",
    "tiktoken",
    "rich",
    "prometheus_client",
)

#: What ``import llm_async`` may load from the package.
BARE_MODULES = {"llm_async", "llm_async._lazy", "llm_async._version"}

#: What a bare ``from llm_async import <core names>`` may load from the package.
CORE_MODULES = {
    *BARE_MODULES,
    "llm_async._clock",
    "llm_async._json",
    "llm_async._params",
    "llm_async.client",
    "llm_async.config",
    "llm_async.context",
    "llm_async.options",
    "llm_async.chat_stream",
    "llm_async.domain",
    "llm_async.domain.ports",
    "llm_async.errors",
    "llm_async.errors.base",
    "llm_async.errors.classify",
    "llm_async.errors.kinds",
    "llm_async.errors.mapping",
    "llm_async.errors.policy",
    "llm_async.errors.provider",
    "llm_async.errors.redaction",
    "llm_async.errors.validation",
    "llm_async.infrastructure",
    "llm_async.infrastructure.transports",
    "llm_async.infrastructure.transports.registry",
    "llm_async.infrastructure.transports.router",
    "llm_async.types",
    "llm_async.types._base",
    "llm_async.types.content",
    "llm_async.types.request",
    "llm_async.types.response",
    "llm_async.types.stream",
    "llm_async.types.tools",
}


def loaded(code: str) -> set[str]:
    """The modules that ``code`` adds to a fresh interpreter's ``sys.modules``."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(code=code)], capture_output=True, text=True,
        cwd=ROOT, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    modules: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return set(modules)


def offenders(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_a_bare_import_loads_only_the_package_init() -> None:
    modules = loaded("import llm_async")
    ours = {m for m in modules if m.split(".")[0] == "llm_async"}
    assert ours == BARE_MODULES
    heavy = offenders(modules, ("pydantic", "aiohttp", "asyncio", "yarl", "multidict",
                                *ALWAYS_LAZY))
    assert heavy == []


def test_the_public_core_names_load_only_the_core() -> None:
    modules = loaded("from llm_async import AsyncLLMClient, ChatRequest, ChatResponse, "
                     "LLMError, Settings, Timeout")
    ours = {m for m in modules if m.split(".")[0] == "llm_async"}
    assert ours <= CORE_MODULES, f"newly eager: {sorted(ours - CORE_MODULES)}"
    assert {"llm_async.client", "llm_async.types", "llm_async.errors"} <= ours
    # No feature, provider, telemetry, cache backend or pricing catalogue yet; not even aiohttp.
    assert offenders(modules, (*ALWAYS_LAZY, "aiohttp", "opentelemetry",
                               "llm_async.application", "llm_async.optimization",
                               "llm_async.observability", "llm_async.data")) == []


def test_a_default_client_loads_one_provider_and_no_backends() -> None:
    modules = loaded(
        "from llm_async import AsyncLLMClient, Settings\n"
        "client = AsyncLLMClient(provider='openai', api_key='sk-budget-000000',\n"
        "                        base_url='http://127.0.0.1:9/v1', settings=Settings())\n"
        "assert client.stack"
    )
    assert "llm_async.infrastructure.transports.openai" in modules
    assert offenders(modules, ALWAYS_LAZY) == []


@pytest.mark.parametrize("name, module", [
    ("RetryConfig", "llm_async.application.retry_strategy"),
    ("MockProviderServer", "llm_async.testing"),
])
def test_a_lazy_name_loads_its_module_on_first_use(name: str, module: str) -> None:
    """The lazy exports really resolve (so the budget above is not met by missing names)."""
    modules = loaded(f"import llm_async\nllm_async.{name}")
    if module not in modules:
        pytest.fail(f"llm_async.{name} did not load {module}")
