"""The library logs through ``logging`` only, on the ``llm_async`` loggers, and is silent until
the application configures logging (a ``NullHandler`` on the package logger)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_WARN = """
import logging
import llm_async
from llm_async.application.circuit_breaker import CircuitBreaker, CircuitBreakerConfig

breaker = CircuitBreaker("svc", CircuitBreakerConfig(failure_threshold=1))
def boom():
    raise RuntimeError("down")
try:
    breaker.call(boom)
except RuntimeError:
    pass
print(breaker.state.value)
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)


def test_silent_until_the_application_configures_logging() -> None:
    result = _run(_WARN)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "open\n"
    assert result.stderr == ""  # the breaker opened, but no bare line on stderr


def test_records_reach_the_application_with_the_library_logger_names() -> None:
    code = ("import logging\n"
            "logging.basicConfig(format='%(levelname)s %(name)s: %(message)s')\n" + _WARN)
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert "WARNING llm_async.circuit: circuit 'svc': closed -> open" in result.stderr


def test_no_print_or_stderr_writes_in_library_code() -> None:
    """Messages of the library go through ``logging``; only the command-line entry points
    (the CLI, the demo, the servers' banners) write to the terminal themselves."""
    entry_points = {"cli.py", "demo.py", "__main__.py", "dashboard.py"}
    offenders = []
    for path in (ROOT / "llm_async").rglob("*.py"):
        if path.name in entry_points:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in ("print", "sys.stderr.write", "sys.stdout.write", "warnings.warn"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...)")
    assert not offenders, offenders
