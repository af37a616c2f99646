"""Client options that exist do what they say; unknown ones are a TypeError naming the closest.

Real parts only: the embedded provider server on loopback, a TLS front for it with a
self-signed certificate made by ``openssl``, and a tiny loopback proxy that records what it is
asked for.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from llm_async import APIConnectionError, AsyncLLMClient, InvalidRequestError, RetryConfig
from llm_async.application.retry_strategy import RetryLayer
from llm_async.errors import ConfigurationError, LLMError
from llm_async.testing import Fault, MockProviderServer

KEY = "sk-test-options-key-0001"
MSGS = [{"role": "user", "content": "Hi"}]
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
              "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer() as s:
        yield s


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def client(server: MockProviderServer, **options: object) -> AsyncLLMClient:
    return AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url, layers=[],
                          **options)  # type: ignore[arg-type]


# -- unknown options --------------------------------------------------------------------------


def test_a_misspelled_client_option_is_a_type_error_naming_the_right_one() -> None:
    with pytest.raises(TypeError) as info:
        AsyncLLMClient("openai", api_key=KEY, max_retires=2)  # type: ignore[call-arg]
    assert str(info.value) == ("AsyncLLMClient() got an unexpected keyword argument "
                               "'max_retires' (did you mean 'max_retries'?)")


def test_an_unknown_option_with_nothing_close_is_still_named() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'wibble'$"):
        AsyncLLMClient("openai", api_key=KEY, wibble=1)  # type: ignore[call-arg]


async def test_misspelled_call_keywords_are_type_errors_bad_values_stay_invalid(
        server: MockProviderServer) -> None:
    async with client(server) as c:
        with pytest.raises(TypeError, match=r"'temprature' \(did you mean 'temperature'\?\)"):
            await c.chat(model="gpt-4o-mini", messages=MSGS, temprature=0.2)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match=r"'max_token' \(did you mean 'max_tokens'\?\)"):
            c.stream(model="gpt-4o-mini", messages=MSGS, max_token=5)  # type: ignore[call-overload]
        with pytest.raises(InvalidRequestError):
            await c.chat(model="gpt-4o-mini", messages=MSGS, temperature=9)
        assert server.request_count == 0


# -- max_retries ------------------------------------------------------------------------------


async def test_max_retries_zero_means_one_attempt(server: MockProviderServer) -> None:
    server.add_fault(Fault(status=500, times=5))
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url, max_retries=0,
                              tracing=False, cost_manager=None, circuit_breaker_config=None,
                              ) as c:
        with pytest.raises(Exception):  # noqa: B017 - the server error itself
            await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert server.request_count == 1


async def test_max_retries_sets_the_attempts_of_the_retry_layer(
        server: MockProviderServer) -> None:
    server.add_fault(Fault(status=500, times=2))
    config = RetryConfig(base_delay=0, max_delay=0)
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url, max_retries=2,
                              retry_config=config, tracing=False, cost_manager=None,
                              circuit_breaker_config=None) as c:
        layer = c.layer(RetryLayer)
        assert layer is not None and layer.strategy.config.max_attempts == 3
        reply = await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert reply.text and server.request_count == 3


def test_max_retries_must_be_a_non_negative_int() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigurationError):
            AsyncLLMClient("openai", api_key=KEY, max_retries=bad)  # type: ignore[arg-type]


# -- TLS: ssl= / verify= ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True)
    return cert, key


@pytest.fixture
async def tls_front(server: MockProviderServer,
                    certificate: tuple[Path, Path]) -> AsyncIterator[str]:
    """An HTTPS address on loopback whose bytes are piped to the plain embedded server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    host, port = server.base_url.split("//")[1].split("/")[0].split(":")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    front = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    tls_port = front.sockets[0].getsockname()[1]
    yield f"https://127.0.0.1:{tls_port}/v1"
    front.close()
    await front.wait_closed()


async def tls_chat(base_url: str, **options: object) -> str:
    async with AsyncLLMClient("openai", api_key=KEY, base_url=base_url, layers=[],
                              **options) as c:  # type: ignore[arg-type]
        return (await c.chat(model="gpt-4o-mini", messages=MSGS)).text


async def test_certificates_are_verified_by_default(tls_front: str) -> None:
    with pytest.raises(APIConnectionError):
        await tls_chat(tls_front)


async def test_verify_false_skips_the_check(tls_front: str) -> None:
    assert await tls_chat(tls_front, verify=False)
    assert await tls_chat(tls_front, ssl=False)


async def test_a_ca_bundle_path_or_a_context_is_trusted(
        tls_front: str, certificate: tuple[Path, Path]) -> None:
    cert = certificate[0]
    assert await tls_chat(tls_front, ssl=str(cert))
    assert await tls_chat(tls_front, verify=cert)
    context = ssl.create_default_context(cafile=str(cert))
    assert await tls_chat(tls_front, ssl=context)


def test_bad_ssl_options_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        AsyncLLMClient("openai", api_key=KEY, ssl=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match="not both"):
        AsyncLLMClient("openai", api_key=KEY, ssl=True, verify=False)


# -- proxies from the environment -------------------------------------------------------------


class RecordingProxy:
    """A loopback proxy that records the first line of each request: an absolute-URI request
    gets a canned chat completion, a CONNECT gets 403."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode()
        self.lines.append(line)
        length = 0
        for header in head.split(b"\r\n")[1:]:
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        if line.startswith("CONNECT"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        else:
            body = (b'{"id": "p1", "object": "chat.completion", "model": "gpt-4o-mini", '
                    b'"choices": [{"index": 0, "finish_reason": "stop", "message": '
                    b'{"role": "assistant", "content": "via the proxy"}}], '
                    b'"usage": {"prompt_tokens": 1, "completion_tokens": 3}}')
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                         b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[RecordingProxy]:
    recorder = RecordingProxy()
    recorder.server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    yield recorder
    recorder.server.close()
    await recorder.server.wait_closed()


async def test_http_proxy_from_the_environment_is_used(
        server: MockProviderServer, proxy: RecordingProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with client(server) as c:
        reply = await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert reply.text == "via the proxy"
    assert proxy.lines == [f"POST {server.base_url}/chat/completions HTTP/1.1"]
    assert server.request_count == 0


async def test_https_proxy_gets_a_connect(proxy: RecordingProxy,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    async with AsyncLLMClient("openai", api_key=KEY, base_url="https://127.0.0.1:9/v1",
                              layers=[]) as c:
        with pytest.raises(LLMError):  # the proxy refused the tunnel: a typed error
            await c.chat(model="gpt-4o-mini", messages=MSGS)
    assert proxy.lines == ["CONNECT 127.0.0.1:9 HTTP/1.1"]


async def test_no_proxy_and_trust_env_false_go_direct(
        server: MockProviderServer, proxy: RecordingProxy,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with client(server, trust_env=False) as c:
        assert (await c.chat(model="gpt-4o-mini", messages=MSGS)).text != "via the proxy"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with client(server) as c:
        assert (await c.chat(model="gpt-4o-mini", messages=MSGS)).text != "via the proxy"
    assert proxy.lines == [] and server.request_count == 2


# -- bring your own session -------------------------------------------------------------------


async def test_http_session_is_used_and_left_open(server: MockProviderServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with client(server, http_session=session) as c:
            assert c.transports["openai"].session is session  # type: ignore[attr-defined]
            assert (await c.chat(model="gpt-4o-mini", messages=MSGS)).text
        assert not session.closed  # the client does not close what it was given
        async with session.get(server.base_url.rsplit("/", 1)[0] + "/_mock/stats") as resp:
            assert resp.status < 500
    assert server.request_count == 1


# -- providers={...} --------------------------------------------------------------------------


async def test_providers_build_one_transport_each_and_route_by_prefix() -> None:
    async with MockProviderServer() as one, MockProviderServer() as two:
        async with AsyncLLMClient(
                "openai", api_key=KEY, base_url=one.base_url, layers=[],
                providers={"openrouter": {"api_key": "sk-or-other-key-0001",
                                          "base_url": two.base_url}}) as c:
            assert set(c.transports) == {"openai", "openrouter"}
            await c.chat(model="openrouter/openai/gpt-4o-mini", messages=MSGS)
            await c.chat(model="gpt-4o-mini", messages=MSGS)
        assert (one.request_count, two.request_count) == (1, 1)


def test_a_misspelled_provider_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"'base_ur' \(did you mean 'base_url'\?\)"):
        AsyncLLMClient("openai", api_key=KEY,
                       providers={"anthropic": {"base_ur": "http://127.0.0.1:1"}})
    with pytest.raises(ConfigurationError):
        AsyncLLMClient("openai", api_key=KEY, providers={"anthropic": "sk-ant"})  # type: ignore[dict-item]


# -- an unclosed client -----------------------------------------------------------------------


@pytest.fixture
def collected_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


async def test_an_unclosed_client_warns_once_naming_itself(
        server: MockProviderServer,
        collected_warnings: list[warnings.WarningMessage]) -> None:
    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        c = client(server)
        await c.chat(model="gpt-4o-mini", messages=MSGS)  # opens a session and a connection
        del c
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    resource = [w for w in collected_warnings if issubclass(w.category, ResourceWarning)]
    assert len(resource) == 1, [str(w.message) for w in resource]
    assert "AsyncLLMClient(provider='openai'" in str(resource[0].message)
    assert "never closed" in str(resource[0].message)
    assert errors == []  # no "Unclosed client session" / "Unclosed connector" either


async def test_a_closed_client_does_not_warn(
        server: MockProviderServer,
        collected_warnings: list[warnings.WarningMessage]) -> None:
    c = client(server)
    await c.chat(model="gpt-4o-mini", messages=MSGS)
    await c.aclose()
    del c
    gc.collect()
    assert not [w for w in collected_warnings if issubclass(w.category, ResourceWarning)]
