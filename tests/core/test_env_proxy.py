"""Proxies from the environment, as curl, requests and httpx read them, through a real
forwarding proxy on loopback: ``ALL_PROXY`` when no proxy is set for the scheme, ``NO_PROXY``,
credentials from the proxy URL or from ``.netrc``, and a clear error for a proxy aiohttp
cannot use."""

from __future__ import annotations

import base64
import pickle
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from llm_async import AsyncLLMClient
from llm_async.errors import ConfigurationError, LLMError
from llm_async.infrastructure.transports.batch_api import batch_api_for
from llm_async.testing import MockProviderServer
from llm_async.types import build_request

KEY = "sk-env-proxy-key-0001"
MSGS = [{"role": "user", "content": "echo: via whatever way"}]
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY",
                   "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NETRC", "REQUEST_METHOD")


class ForwardProxy:
    """A small HTTP forward proxy: it takes absolute-form requests, forwards them to their
    target with its own session, and records each request line and ``Proxy-Authorization``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.port = 0

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}"

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        target = request.url  # the absolute-form target of the request line
        self.seen.append((f"{request.method} {target}",
                          request.headers.get("Proxy-Authorization")))
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "proxy-authorization", "proxy-connection",
                                        "content-length", "transfer-encoding")}
        async with self.session.request(request.method, target, headers=headers,
                                        data=await request.read(),
                                        allow_redirects=False) as upstream:
            body = await upstream.read()
            keep = {k: v for k, v in upstream.headers.items()
                    if k.lower() in ("content-type", "x-request-id")}
            return web.Response(status=upstream.status, body=body, headers=keep)

    async def __aenter__(self) -> ForwardProxy:
        self.session = aiohttp.ClientSession(trust_env=False, auto_decompress=False)
        server = web.Server(self.forward)
        self.runner = web.ServerRunner(server)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None and self.session is not None
        await self.runner.cleanup()
        await self.session.close()


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    yield


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer(require_api_key=KEY) as s:
        yield s


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy() as p:
        yield p


def client(server: MockProviderServer, **options: object) -> AsyncLLMClient:
    return AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url, layers=[],
                          **options)  # type: ignore[arg-type]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("name", ["ALL_PROXY", "all_proxy"])
async def test_all_proxy_carries_calls_when_no_scheme_proxy_is_set(
        server: MockProviderServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch,
        name: str) -> None:
    monkeypatch.setenv(name, proxy.url())
    async with client(server) as c:
        reply = await c.chat(model="gpt-4o-mini", messages=MSGS)
        chunks = [chunk.delta async for chunk in c.stream(model="gpt-4o-mini", messages=MSGS)]
    assert reply.text == "via whatever way" and "".join(chunks) == "via whatever way"
    assert [line for line, _ in proxy.seen] == [
        f"POST {server.base_url}/chat/completions"] * 2
    assert server.request_count == 2  # the provider got both, through the proxy


async def test_a_scheme_proxy_wins_over_all_proxy(server: MockProviderServer,
                                                  proxy: ForwardProxy,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    async with ForwardProxy() as other:
        monkeypatch.setenv("ALL_PROXY", other.url())
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        async with client(server) as c:
            await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert len(proxy.seen) == 1 and other.seen == []


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
async def test_no_proxy_bypasses_all_proxy(server: MockProviderServer, proxy: ForwardProxy,
                                           monkeypatch: pytest.MonkeyPatch,
                                           no_proxy: str) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.url())
    monkeypatch.setenv("NO_PROXY", no_proxy)
    async with client(server) as c:
        await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert proxy.seen == [] and server.request_count == 1


async def test_trust_env_false_ignores_all_proxy(server: MockProviderServer,
                                                 proxy: ForwardProxy,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.url())
    async with client(server, trust_env=False) as c:
        await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert proxy.seen == []


async def test_credentials_in_the_proxy_url(server: MockProviderServer, proxy: ForwardProxy,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.url("corp%40user:p%3Ass-word-1@"))
    async with client(server) as c:
        await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert proxy.seen[0][1] == basic("corp@user", "p:ss-word-1")


@pytest.mark.parametrize("variable", ["ALL_PROXY", "HTTP_PROXY"])
async def test_proxy_credentials_from_netrc(server: MockProviderServer, proxy: ForwardProxy,
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            variable: str) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-pass-9\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv(variable, proxy.url())
    async with client(server) as c:
        await c.chat(model="gpt-4o-mini", messages=MSGS)
    # the URL's own credentials win over .netrc
    monkeypatch.setenv(variable, proxy.url("url-user:url-pass-9@"))
    async with client(server) as c:
        await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert [auth for _, auth in proxy.seen] == [basic("netrc-user", "netrc-pass-9"),
                                                basic("url-user", "url-pass-9")]
    # the provider never sees the proxy's credentials
    assert all("Proxy-Authorization" not in r.headers for r in server.requests)


async def test_the_proxy_password_never_shows_in_an_error(
        server: MockProviderServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # nothing listens on port 9: the connection to the proxy fails
    monkeypatch.setenv("ALL_PROXY", "http://user:proxy-secret-pw@127.0.0.1:9")
    async with client(server, max_retries=0) as c:
        with pytest.raises(LLMError) as caught:
            await c.chat(model="gpt-4o-mini", messages=MSGS)
    err = caught.value
    assert "proxy-secret-pw" not in str(err) and "proxy-secret-pw" not in repr(vars(err))
    assert b"proxy-secret-pw" not in pickle.dumps(err)


@pytest.mark.parametrize(("variable", "value"), [
    ("ALL_PROXY", "socks5://127.0.0.1:1080"),
    ("all_proxy", "socks5h://127.0.0.1:1080"),
    ("HTTP_PROXY", "socks4://127.0.0.1:1080"),
])
def test_a_proxy_aiohttp_cannot_use_is_a_configuration_error(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable) as caught:
        AsyncLLMClient("openai", api_key=KEY, base_url="http://127.0.0.1:9/v1", layers=[])
    assert caught.value.variable == variable
    # with trust_env=False the environment is not read
    AsyncLLMClient("openai", api_key=KEY, base_url="http://127.0.0.1:9/v1", layers=[],
                   trust_env=False)


async def test_a_proxy_without_a_scheme_is_http(server: MockProviderServer,
                                                proxy: ForwardProxy,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", f"127.0.0.1:{proxy.port}")
    async with client(server) as c:
        await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert len(proxy.seen) == 1


async def test_batch_api_calls_go_through_the_proxy(server: MockProviderServer,
                                                    proxy: ForwardProxy,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_async import FakeClock

    monkeypatch.setenv("ALL_PROXY", proxy.url())
    async with client(server) as c:
        api = batch_api_for(c.transports["openai"], clock=FakeClock())
        request = build_request(model="gpt-4o-mini", messages=MSGS)
        (answer,) = await api.run([request])
    assert getattr(answer, "text", None) == "via whatever way"
    paths = [line.split(" ", 1)[1].removeprefix(server.base_url) for line, _ in proxy.seen]
    assert paths[:2] == ["/files", "/batches"] and any(p.endswith("/content") for p in paths)
