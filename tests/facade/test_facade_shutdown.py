"""Clean shutdown: processes that use the facade exit promptly, with nothing on stderr under
``-W error`` (no "unclosed client session", no "event loop is closed", no ResourceWarning),
whether the service is closed explicitly or left to the interpreter's exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

KEY = "sk-shutdown-test-key-0123456789"
# Waits are guards against a hang (the test fails instead of blocking), far above what a loaded
# machine needs; no test here asserts how fast anything is.
HANG = 180

PRELUDE = """
import asyncio, os, sys
from llm_async.context import CallContext
from llm_async.facade import LLMClientService, get_llm_client_service, invoke_chat
HELLO = [{"role": "user", "content": "echo: hello world"}]
"""


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The embedded provider server in a process of its own (long, slow streams)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_async.testing", "--port", "0", "--reply-words", "400",
         "--token-delay", "0.001"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("LISTENING "), line + (proc.stderr.read() if proc.stderr else "")
    try:
        yield line.split()[1] + "/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=HANG)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


def run_script(body: str, server_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LLM_", "OPENAI_", "ANTHROPIC_", "OPENROUTER_"))}
    env.update(LLM_PROVIDER="openai", OPENAI_BASE_URL=server_url, OPENAI_API_KEY=KEY)
    source = PRELUDE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-W", "error", "-c", source], env=env,
                          capture_output=True, text=True, timeout=HANG)


def check(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for marker in expected:
        assert marker in result.stdout


def test_left_open_until_exit(server_url: str) -> None:
    """The process-wide service is never closed, a stream is abandoned mid-way and another is
    left open: atexit closes everything on the service's loop."""
    result = run_script("""
        client = get_llm_client_service()
        print("unary", client.invoke_chat(model="gpt-4", messages=HELLO).text)
        print("module", invoke_chat(model="gpt-4", messages=HELLO).text)
        for i, chunk in enumerate(client.stream_chat(model="gpt-4", messages=HELLO)):
            if i == 2:
                break
        dangling = client.stream_chat(model="gpt-4", messages=HELLO)
        print("dangling", bool(next(dangling).delta))
        print("done")
    """, server_url)
    check(result, "unary hello world", "module hello world", "dangling True", "done")


def test_explicit_close_and_context_manager(server_url: str) -> None:
    result = run_script("""
        with LLMClientService() as service:
            print("with", service.invoke_chat(model="gpt-4", messages=HELLO).text)
            stream = service.stream_chat(model="gpt-4", messages=HELLO)
            next(stream)
        other = LLMClientService()
        print("other", other.invoke_chat(model="gpt-4", messages=HELLO).text)
        other.close()
        print("closed", service.closed, other.closed)
    """, server_url)
    check(result, "with hello world", "other hello world", "closed True True")


def test_called_from_inside_a_running_loop_then_exit(server_url: str) -> None:
    result = run_script("""
        async def main():
            client = get_llm_client_service()
            print("sync", client.invoke_chat(model="gpt-4", messages=HELLO).text)
            reply = await client.ainvoke_chat(model="gpt-4", messages=HELLO)
            print("async", reply.text)
            stream = client.stream_chat(model="gpt-4", messages=HELLO)
            next(stream)

        asyncio.run(main())
        print("exited the loop")
    """, server_url)
    check(result, "sync hello world", "async hello world", "exited the loop")


def test_a_worker_thread_still_calling_at_exit(server_url: str) -> None:
    """Non-daemon threads are joined before atexit, so they finish their calls first."""
    result = run_script("""
        import threading
        client = get_llm_client_service()

        def work():
            for _ in range(5):
                client.invoke_chat(model="gpt-4", messages=HELLO)
            print("worker finished")

        threading.Thread(target=work).start()
        print("main finished")
    """, server_url)
    check(result, "worker finished", "main finished")


def test_ctrl_c_during_a_call_cancels_it_on_the_services_loop() -> None:
    """SIGINT while the main thread waits for a call: KeyboardInterrupt reaches the caller and
    the call's task is cancelled on the service's loop (the provider is not left running)."""
    script = PRELUDE + textwrap.dedent("""
        import threading
        from llm_async.infrastructure.transports.mock import MockLLMTransport

        import sys

        def main_thread_waits_for_the_result():
            frame = sys._current_frames().get(threading.main_thread().ident)
            while frame is not None:
                code = frame.f_code
                if code.co_name == "result" and code.co_filename.endswith("_base.py"):
                    return True
                frame = frame.f_back
            return False

        class Provider(MockLLMTransport):
            cancelled = threading.Event()

            async def chat(self, request, ctx):
                while not main_thread_waits_for_the_result():
                    await asyncio.sleep(0.001)
                print("in the provider", flush=True)  # the caller waits in future.result()
                try:
                    return await super().chat(request, ctx)
                except asyncio.CancelledError:
                    self.cancelled.set()
                    raise

        transport = Provider(latency=120.0)
        service = LLMClientService(provider="mock", transport=transport, layers=[])
        try:
            service.invoke_chat(model="m", messages=HELLO)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print("cancelled on the loop", transport.cancelled.wait(180), flush=True)
        service.close()
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_")}
    proc = subprocess.Popen([sys.executable, "-W", "error", "-c", script], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "in the provider\n"
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline()
        proc.wait(timeout=HANG)
        out = proc.stdout.read()  # not communicate(): it would skip what readline() buffered
        err = proc.stderr.read() if proc.stderr is not None else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert line == "interrupted\n", err
    assert (out, err) == ("cancelled on the loop True\n", "")
    assert proc.returncode == 0
