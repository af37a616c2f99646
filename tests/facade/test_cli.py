"""The ``llm-async`` command line: chat (whole and streamed), bench, the delegated commands,
exit codes and one-line errors."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from llm_async.cli import main

if TYPE_CHECKING:
    from conftest import ThreadedServer

KEY = "sk-cli-secret-key-0123456789"
# Subprocess waits are guards against a hang (the test fails instead of blocking), set far above
# what a loaded machine needs; no test asserts how fast anything is.
HANG = 180


class TTY(io.StringIO):
    """A StringIO that says it is a terminal (progress bars and tables draw on it)."""

    def isatty(self) -> bool:
        return True


def run(*argv: str, stdin: str | None = None, tty: bool = False) -> tuple[int, str, str]:
    out = TTY() if tty else io.StringIO()
    err = TTY() if tty else io.StringIO()
    code = main(list(argv), stdin=io.StringIO(stdin or ""), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# -- chat -----------------------------------------------------------------------------------


def test_chat_with_the_embedded_server(clean_env: pytest.MonkeyPatch) -> None:
    code, out, err = run("chat", "--mock", "echo:", "hello", "world")
    assert (code, out, err) == (0, "hello world\n", "")


def test_chat_streams_tokens_as_they_arrive(clean_env: pytest.MonkeyPatch) -> None:
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return super().write(text)

    out = Recorder()
    err = io.StringIO()
    code = main(["chat", "--mock", "--stream", "--usage", "echo: one two three"],
                stdin=io.StringIO(), stdout=out, stderr=err)
    assert code == 0
    assert out.getvalue() == "one two three\n"
    assert writes[:3] == ["one", " two", " three"]  # one write per token, flushed as it came
    assert "input_tokens=" in err.getvalue() and "output_tokens=3" in err.getvalue()


def test_chat_reads_the_prompt_from_stdin_and_prints_json(clean_env: pytest.MonkeyPatch) -> None:
    code, out, _ = run("chat", "--mock", "--json", "--system", "be brief", "-",
                       stdin="echo: from stdin\n")
    assert code == 0
    data = json.loads(out)
    assert data["content"] == "from stdin" and data["finish_reason"] == "stop"


def test_chat_against_a_base_url(threaded_server: ThreadedServer,
                                 clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", KEY)
    code, out, _ = run("chat", "--base-url", threaded_server.base_url, "--model", "gpt-4",
                       "--max-tokens", "2", "hello")
    assert code == 0 and len(out.split()) == 2
    assert threaded_server.stats()["requests"] == 1


def test_chat_with_the_mock_provider(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LLM_FORCE_MOCK", "1")
    code, out, _ = run("chat", "--provider", "openai", "hello")
    assert (code, out) == (0, "This is a mock response.\n")


def test_provider_errors_exit_1_in_one_line(threaded_server: ThreadedServer,
                                           clean_env: pytest.MonkeyPatch) -> None:
    from llm_async.testing import Fault

    clean_env.setenv("OPENAI_API_KEY", KEY)
    clean_env.setenv("LLM_MAX_RETRIES", "0")
    threaded_server.add_fault(Fault(status=401, times=None))
    code, out, err = run("chat", "--base-url", threaded_server.base_url, "hello")
    assert code == 1 and out == ""
    assert err.startswith("llm-async: error: AuthenticationError") and err.count("\n") == 1
    assert "Traceback" not in err and KEY not in err


@pytest.mark.parametrize(("argv", "env", "needle"), [
    (["chat", "hi"], {}, "no provider is configured: set the API key of one "
                         "(OPENROUTER_API_KEY, OPENAI_API_KEY, ANTHROPIC_API_KEY"),
    (["chat", "--provider", "openai", "hi"], {}, "OPENAI_API_KEY is not set"),
    (["chat", "--mock", "hi"], {"LLM_MAX_RETRIES": "lots"}, "LLM_MAX_RETRIES='lots'"),
    (["chat", "--mock", "hi"], {"LLM_PROVIDER": "acme"}, "LLM_PROVIDER='acme'"),
    (["chat", "--mock"], {}, "the prompt is empty"),
    (["chat", "--mock", "--temperature", "9", "hi"], {}, "temperature"),
    (["chat", "--mock", "--frobnicate", "hi"], {}, "unrecognized arguments: --frobnicate"),
])
def test_usage_and_configuration_errors_exit_2(clean_env: pytest.MonkeyPatch, argv: list[str],
                                               env: dict[str, str], needle: str) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    code, out, err = run(*argv)
    assert code == 2 and out == ""
    assert err.startswith("llm-async: error: ") and needle in err and err.count("\n") == 1


def test_configuration_errors_never_print_keys(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", KEY)
    clean_env.setenv("OPENAI_BASE_URL", "not a url")
    code, _, err = run("chat", "hi")
    assert code == 2 and "OPENAI_BASE_URL" in err and KEY not in err


def test_argparse_usage_errors_exit_2(clean_env: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run("bench", "-n", "0")[0] == 2
    assert "expected a number >= 1, got 0" in capsys.readouterr().err
    assert run("frobnicate")[0] == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
    assert run()[0] == 2
    assert "usage: llm-async" in capsys.readouterr().err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--help")[0] == 0
    text = capsys.readouterr().out
    for command in ("chat", "mock-server", "bench", "cost", "dashboard"):
        assert command in text
    assert run("chat", "--help")[0] == 0
    assert "--stream" in capsys.readouterr().out
    assert run("mock-server", "--help")[0] == 0
    assert "llm-async mock-server" in capsys.readouterr().out
    assert run("dashboard", "--help")[0] == 0
    assert "llm-async dashboard" in capsys.readouterr().out
    assert run("--version")[0] == 0
    assert capsys.readouterr().out.startswith("llm-async ")


def test_debug_shows_the_traceback(clean_env: pytest.MonkeyPatch) -> None:
    from llm_async import ConfigurationError

    clean_env.setenv("LLM_MAX_RETRIES", "lots")
    with pytest.raises(ConfigurationError):
        run("--debug", "chat", "--mock", "hi")


# -- bench ----------------------------------------------------------------------------------


def test_bench_json_against_the_embedded_server(clean_env: pytest.MonkeyPatch) -> None:
    code, out, _ = run("bench", "-n", "40", "-c", "8", "--reply-words", "5", "--json")
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    assert data["succeeded"] == 40 and data["failed"] == 0
    assert data["output_tokens"] == 40 * 5
    assert data["requests_per_second"] > 0
    assert data["latency_ms"]["p50"] <= data["latency_ms"]["p99"] <= data["latency_ms"]["p100"]
    assert "first_chunk_ms" not in data


def test_bench_streamed_with_progress_and_a_table(clean_env: pytest.MonkeyPatch) -> None:
    code, out, err = run("bench", "-n", "20", "-c", "4", "--stream", "--layers", "none",
                         tty=True)
    assert code == 0
    for metric in ("throughput", "latency p99", "first chunk p50", "succeeded"):
        assert metric in out
    assert "20" in err  # the progress bar reached 20/20


def test_bench_against_a_base_url_counts_failures(threaded_server: ThreadedServer,
                                                  clean_env: pytest.MonkeyPatch) -> None:
    from llm_async.testing import Fault

    clean_env.setenv("OPENAI_API_KEY", KEY)
    threaded_server.add_fault(Fault(status=400, times=3))
    code, out, _ = run("bench", "--base-url", threaded_server.base_url, "-n", "12", "-c", "1",
                       "--layers", "none", "--json", "--no-progress")
    data = json.loads(out)
    assert code == 1  # some calls failed
    assert data["succeeded"] == 9 and data["errors"] == {"BadRequestError": 3}
    assert threaded_server.stats()["requests"] == 12


def test_plain_output_without_rich(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setitem(sys.modules, "rich", None)  # type: ignore[arg-type]
    clean_env.setitem(sys.modules, "rich.console", None)  # type: ignore[arg-type]
    clean_env.setitem(sys.modules, "rich.progress", None)  # type: ignore[arg-type]
    clean_env.setitem(sys.modules, "rich.table", None)  # type: ignore[arg-type]
    code, out, err = run("bench", "-n", "10", "-c", "2", tty=True)
    assert code == 0
    assert "throughput" in out and "req/s" in out
    assert "bench [" in err and "10/10" in err


# -- the console script and the delegated servers --------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("LLM_", "OPENAI_", "ANTHROPIC_", "OPENROUTER_"))}


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "llm_async", "chat", "--mock", "echo: hi"],
                            capture_output=True, text=True, timeout=HANG, env=_env())
    assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "")
    result = subprocess.run([sys.executable, "-m", "llm_async", "chat", "hi"],
                            capture_output=True, text=True, timeout=HANG, env=_env())
    assert result.returncode == 2 and result.stderr.count("\n") == 1


@pytest.mark.parametrize(("argv", "banner"), [
    (["mock-server", "--port", "0"], "LISTENING http://127.0.0.1:"),
    (["dashboard", "--demo", "--port", "0", "--rate", "50"], "llm_async dashboard: http://"),
])
def test_servers_start_and_stop_on_sigint(argv: list[str], banner: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "llm_async", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(banner), line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=HANG) == 0  # a guard against a hang, not a speed check
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


# -- cost -----------------------------------------------------------------------------------


def _fill(manager: Any) -> None:
    manager.track_usage(model="gpt-4", input_tokens=1000, output_tokens=500, user_id="u1")
    manager.track_usage(model="gpt-4", input_tokens=1000, output_tokens=500, user_id="u2")


def test_cost_reports_a_sqlite_ledger_and_its_budgets(tmp_path: Any,
                                                     clean_env: pytest.MonkeyPatch) -> None:
    from llm_async.application.cost_manager import CostManager
    from llm_async.infrastructure.ledger_sqlite import SQLiteLedger

    path = tmp_path / "costs.db"
    manager = CostManager(backend=SQLiteLedger(path))
    _fill(manager)
    manager.close()

    clean_env.setenv("LLM_DAILY_BUDGET", "100")
    code, out, _ = run("cost", "--sqlite", str(path), "--json", "--recent", "5")
    assert code == 0
    report = json.loads(out)
    assert report["metrics"]["total_cost"] == "0.12" and report["metrics"]["requests"] == 2
    assert report["metrics"]["by_user"] == {"u1": "0.06", "u2": "0.06"}
    daily = report["budgets"]["daily"]
    assert daily["spent"] == "0.12" and daily["percentage"] == 0.12 and not daily["exceeded"]
    assert [r["user_id"] for r in report["recent"]] == ["u1", "u2"]

    code, out, _ = run("cost", "--sqlite", str(path))
    assert code == 0
    assert "$0.120000" in out and "model gpt-4" in out and "budget daily" in out

    clean_env.setenv("LLM_DAILY_BUDGET", "0.1")
    code, out, _ = run("cost", "--sqlite", str(path), "--fail-over-budget")
    assert code == 1 and "EXCEEDED" in out
    assert run("cost", "--sqlite", str(path))[0] == 0  # exceeded, but not asked to fail


def test_cost_reports_a_redis_ledger(redis_url: str, clean_env: pytest.MonkeyPatch) -> None:
    import uuid

    from llm_async.application.cost_manager import CostManager
    from llm_async.infrastructure.ledger_redis import RedisLedger

    prefix = "{cli-test-" + uuid.uuid4().hex + "}"
    ledger = RedisLedger(redis_url, prefix=prefix)
    manager = CostManager(backend=ledger)
    _fill(manager)
    try:
        code, out, _ = run("cost", "--redis-url", redis_url, "--redis-prefix", prefix, "--json")
        assert code == 0
        assert json.loads(out)["metrics"]["total_cost"] == "0.12"
    finally:
        manager.reset()
        manager.close()


def test_cost_without_a_ledger_and_with_a_missing_one(tmp_path: Any,
                                                      clean_env: pytest.MonkeyPatch) -> None:
    code, out, _ = run("cost")
    assert code == 0 and "in-memory ledger" in out and "budgets" in out
    code, out, err = run("cost", "--sqlite", str(tmp_path / "missing.db"))
    assert code == 2 and out == "" and "no ledger at" in err
    assert run("cost", "--sqlite", "a.db", "--redis-url", "redis://x")[0] == 2


# -- details a terminal user sees ------------------------------------------------------------


def test_a_stream_error_gets_a_line_of_its_own(threaded_server: ThreadedServer,
                                               clean_env: pytest.MonkeyPatch) -> None:
    from llm_async.testing import Fault

    clean_env.setenv("OPENAI_API_KEY", KEY)
    threaded_server.add_fault(Fault(cut_after=3, times=None))
    code, out, err = run("chat", "--stream", "--base-url", threaded_server.base_url,
                         "echo: one two three four five six")
    assert code == 1
    assert out == "one two three\n"  # the partial answer, its line ended before the error
    assert err.startswith("llm-async: error: StreamError") and err.count("\n") == 1


@pytest.mark.parametrize("url", ["ftp://example.test/v1", "not a url", "http://", "localhost:8000"])
def test_a_bad_base_url_is_a_configuration_error(clean_env: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 url: str) -> None:
    clean_env.setenv("OPENAI_API_KEY", KEY)
    assert run("chat", "--base-url", url, "hi")[0] == 2
    assert run("bench", "--base-url", url, "-n", "1")[0] == 2
    err = capsys.readouterr().err
    assert "argument --base-url: expected an http:// or https:// URL with a host" in err
    assert KEY not in err


def test_every_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    from llm_async.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        for action in sub._actions:
            if action.option_strings and sub.add_help:
                assert action.help, f"{name} {action.option_strings[0]} has no help text"
    assert run("chat", "--help")[0] == 0
    text = capsys.readouterr().out
    assert "sampling temperature" in text and "the most tokens the answer may have" in text
    assert run("bench", "--help")[0] == 0
    assert "the user message of every call" in capsys.readouterr().out


def test_the_mock_server_script_names_itself(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    module, _, name = scripts["llm-async-mock-server"].partition(":")
    entry = getattr(importlib.import_module(module), name)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/llm-async-mock-server", "--help"])
    with pytest.raises(SystemExit) as exit_:
        entry()
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: llm-async-mock-server ") and "python -m" not in out
    monkeypatch.setattr(sys, "argv", ["llm-async-mock-server", "--port", "x"])
    with pytest.raises(SystemExit):
        entry()
    assert capsys.readouterr().err.count("llm-async-mock-server: error:") == 1


def test_library_warnings_show_with_a_level_prefix(clean_env: pytest.MonkeyPatch) -> None:
    code, out, err = run("chat", "--mock", "--model", "no-such-priced-model", "echo: hi")
    assert (code, out) == (0, "hi\n")
    assert err.startswith("llm-async: warning: no price for model 'no-such-priced-model'")
    assert err.count("\n") == 1
    import logging

    handlers = logging.getLogger("llm_async").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]  # the CLI's one is gone again


def test_an_interrupted_bench_prints_partial_results(slow_stream_server: ThreadedServer) -> None:
    env = {**_env(), "OPENAI_API_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_async", "bench", "--base-url", slow_stream_server.base_url,
         "--stream", "-n", "1000", "-c", "2", "--layers", "none", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while slow_stream_server.stats()["requests"] < 4:  # two calls have completed
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert 2 <= report["succeeded"] < 1000 and report["wall_seconds"] > 0
    assert report["latency_ms"]["p50"] is not None
    assert err.strip().endswith("llm-async: error: interrupted")


def test_a_base_url_alone_means_an_openai_compatible_server(threaded_server: ThreadedServer,
                                                            clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENROUTER_API_KEY", KEY)  # would make OpenRouter the provider otherwise
    code, out, err = run("chat", "--base-url", threaded_server.base_url, "--model", "gpt-4",
                         "echo: compatible")
    assert (code, out, err) == (0, "compatible\n", "")
    assert threaded_server.stats()["requests"] == 1
