"""The sync facade across ``os.fork()`` (gunicorn, celery, multiprocessing's fork start method).

Each case runs a script in a process of its own that forks for real: the parent uses the
service, the child uses it too (or never does) and exits the ordinary way, through the
interpreter's exit and its ``atexit`` handlers. The provider is the embedded server in a third
process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

KEY = "sk-fork-test-key-0123456789"

PRELUDE = """
import os, sys
from llm_async.facade import LLMClientService, get_llm_client_service, invoke_chat, stream_chat
HELLO = [{"role": "user", "content": "echo: hello world"}]


def wait_child(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
"""

# A safety net against a deadlock (the failure this file is about), not a speed assertion.
HANG = 120


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "llm_async.testing", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    args = [sys.executable, "-W", "error", "-c", PRELUDE + textwrap.dedent(body)]
    # A session of its own, so a hung forked child is killed with its parent.
    with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=HANG)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"the script hung:\n{out}\n{err}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_the_facade_works_in_a_forked_child(server_url: str) -> None:
    result = run_script("""
        service = get_llm_client_service()
        print("parent", invoke_chat(model="gpt-4", messages=HELLO).text, flush=True)
        pid = os.fork()
        if pid == 0:
            print("child", invoke_chat(model="gpt-4", messages=HELLO).text, flush=True)
            text = "".join(c.delta for c in stream_chat(model="gpt-4", messages=HELLO))
            print("child stream", text.strip(), flush=True)
            print("child same service", get_llm_client_service() is service, flush=True)
            print("child closed", service.closed, flush=True)
            sys.exit(0)  # the interpreter's own exit, atexit handlers and all
        print("child exit", wait_child(pid), flush=True)
        print("parent again", service.invoke_chat(model="gpt-4", messages=HELLO).text)
    """, server_url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for line in ("parent hello world", "child hello world", "child stream hello world",
                 "child same service True", "child closed False", "child exit 0",
                 "parent again hello world"):
        assert line in result.stdout.splitlines(), result.stdout


def test_a_child_that_never_uses_the_facade_exits(server_url: str) -> None:
    result = run_script("""
        service = get_llm_client_service()
        stream = service.stream_chat(model="gpt-4", messages=HELLO)
        next(stream)  # a stream left open in the parent, holding a connection
        pid = os.fork()
        if pid == 0:
            print("child done", flush=True)
            sys.exit(0)
        print("child exit", wait_child(pid), flush=True)
        stream.close()
        print("parent", service.invoke_chat(model="gpt-4", messages=HELLO).text)
    """, server_url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == ["child done", "child exit 0", "parent hello world"]


def test_an_explicit_service_is_rebuilt_in_the_child_and_closes_there(server_url: str) -> None:
    result = run_script("""
        with LLMClientService() as service:
            print("parent", service.invoke_chat(model="gpt-4", messages=HELLO).text, flush=True)
            pid = os.fork()
            if pid == 0:
                with service:
                    print("child", service.invoke_chat(model="gpt-4",
                                                       messages=HELLO).text, flush=True)
                print("child closed", service.closed, flush=True)
                sys.exit(0)
            print("child exit", wait_child(pid), flush=True)
            print("parent again", service.invoke_chat(model="gpt-4", messages=HELLO).text)
        print("parent closed", service.closed)
    """, server_url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "parent hello world", "child hello world", "child closed True", "child exit 0",
        "parent again hello world", "parent closed True"]
