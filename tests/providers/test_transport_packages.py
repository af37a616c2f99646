"""The native-API transports are packages (encoder, decoders, transport class); the module
paths the library has always offered still give the same objects."""

from __future__ import annotations

import importlib

import pytest

from llm_async.infrastructure import transports
from llm_async.infrastructure.transports.registry import get_provider

_PACKAGE = "llm_async.infrastructure.transports"

CASES = [
    ("anthropic", "AnthropicTransport"),
    ("bedrock", "BedrockTransport"),
    ("gemini", "GeminiTransport"),
]


@pytest.mark.parametrize("name, cls_name", CASES)
def test_the_old_module_path_re_exports_the_package(name: str, cls_name: str) -> None:
    old = importlib.import_module(f"{_PACKAGE}.{name}_transport")
    new = importlib.import_module(f"{_PACKAGE}.{name}")
    assert cls_name in old.__all__
    assert list(old.__all__) == list(new.__all__)
    for public in new.__all__:
        assert getattr(old, public) is getattr(new, public), public


@pytest.mark.parametrize("name, cls_name", CASES)
def test_registry_and_lazy_export_load_the_same_class(name: str, cls_name: str) -> None:
    cls = getattr(importlib.import_module(f"{_PACKAGE}.{name}.transport"), cls_name)
    assert get_provider(name).load() is cls
    assert getattr(transports, cls_name) is cls
    assert cls.__module__ == f"{_PACKAGE}.{name}.transport"
