"""Shared fixtures: the embedded provider server, a client on it, a fake clock, a real Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from llm_async import AsyncLLMClient, FakeClock
from llm_async.testing import MockProviderServer


@pytest.fixture
async def mock_server() -> AsyncIterator[MockProviderServer]:
    """A started embedded provider server on a free loopback port."""
    async with MockProviderServer() as server:
        yield server


@pytest.fixture
async def openai_client(mock_server: MockProviderServer) -> AsyncIterator[AsyncLLMClient]:
    """An OpenAI-protocol client with no layers, talking to ``mock_server``."""
    async with AsyncLLMClient(provider="openai", api_key="sk-test-key-123456",
                              base_url=mock_server.base_url, layers=[]) as client:
        yield client


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: ``LLM_ASYNC_REDIS_URL`` if set, else a redis-server started for the session.

    Without either, the test is skipped locally and fails in CI (CI=true), so CI cannot pass
    without exercising Redis.
    """
    url = os.environ.get("LLM_ASYNC_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide redis-server (LLM_ASYNC_REDIS_URL or on PATH)")
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
